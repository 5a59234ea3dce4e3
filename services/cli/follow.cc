#include "services/cli/follow.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "services/cli/cli.h"
#include "services/common/proto_time.h"

namespace taskgrid::cli {
namespace {

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

void WriteRaw(int stream, absl::string_view data) {
  FILE* f = stream == 0 ? stdout : stderr;
  fwrite(data.data(), 1, data.size(), f);
  fflush(f);
}

// Reads a Watch until `on_event` returns true (done), resuming after the
// last cursor on a broken stream. Other errors end it.
absl::Status WatchUntil(const Context& ctx, v1::WatchRequest req,
                        const std::function<bool(const v1::TaskEvent&)>& on_event) {
  absl::Duration backoff = absl::Milliseconds(100);
  for (;;) {
    auto call = ctx.Call(absl::InfiniteDuration());
    auto reader = ctx.stub->Watch(call.get(), req);
    v1::WatchResponse batch;
    while (reader->Read(&batch)) {
      for (const v1::TaskEvent& e : batch.events()) {
        backoff = absl::Milliseconds(100);
        req.set_after_cursor(e.cursor());
        if (on_event(e)) {
          call->TryCancel();
          reader->Finish();
          return absl::OkStatus();
        }
      }
    }
    grpc::Status s = reader->Finish();
    if (s.error_code() != grpc::StatusCode::UNAVAILABLE &&
        s.error_code() != grpc::StatusCode::CANCELLED) {
      return FromGrpc(s);
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
}

// One target of a followed run: its output, a line at a time.
struct Target {
  std::string agent;
  uint32_t attempt = 0;
  std::unique_ptr<OutputSink> sink;
  std::string partial[2];  // The unfinished last line of each stream.
  bool done = false;
};

// Follows one run; see FollowRun. Not thread-safe.
class RunFollower {
 public:
  RunFollower(const Context& ctx, const v1::Run& run, bool show_progress)
      : ctx_(ctx), run_(run), show_progress_(show_progress) {
    for (const v1::RunTarget& row : run.targets()) {
      if (row.task_id().empty()) continue;
      Target& t = targets_[row.task_id()];
      t.agent = row.agent_id();
      width_ = std::max(width_, row.agent_id().size());
    }
  }

  absl::StatusOr<v1::Run> Follow(uint64_t after) {
    v1::WatchRequest req;
    req.set_run_id(run_.id());
    req.set_after_cursor(after);
    ShowProgress();
    absl::Status s = WatchUntil(ctx_, req, [this](const v1::TaskEvent& e) { return OnEvent(e); });
    ClearProgress();
    if (!s.ok()) return s;
    for (auto& [id, t] : targets_) FlushPartial(t);
    v1::GetRunRequest g;
    g.set_run_id(run_.id());
    v1::Run final_run;
    if (grpc::Status gs = ctx_.stub->GetRun(ctx_.Call().get(), g, &final_run); !gs.ok()) {
      return FromGrpc(gs);
    }
    return final_run;
  }

 private:
  // Returns true once the run is final.
  bool OnEvent(const v1::TaskEvent& e) {
    switch (e.type()) {
      case v1::EVENT_TYPE_RESYNC:
        return Resync();
      case v1::EVENT_TYPE_TASK_LOG: {
        auto it = targets_.find(e.task_id());
        if (it == targets_.end()) return false;
        SinkOf(e.task_id(), it->second, e.attempt()).OnChunk(e.output());
        return false;
      }
      case v1::EVENT_TYPE_TASK_STATUS:
        OnTargetStatus(e.task());
        return false;
      case v1::EVENT_TYPE_RUN_STATUS:
        run_.mutable_counts()->CopyFrom(e.run().counts());
        run_.set_status(e.run().status());
        ShowProgress();
        return IsFinal(e.run().status());
      default:
        return false;
    }
  }

  // Our cursor fell out of the coordinator's log: read what we missed, the
  // ends of targets included. Returns true once the run is final.
  bool Resync() {
    v1::GetRunRequest g;
    g.set_run_id(run_.id());
    v1::Run now;
    if (!ctx_.stub->GetRun(ctx_.Call().get(), g, &now).ok()) return false;
    for (const v1::RunTarget& row : now.targets()) {
      auto it = targets_.find(row.task_id());
      if (it == targets_.end() || it->second.done) continue;
      v1::GetRequest get;
      get.set_task_id(row.task_id());
      v1::Task task;
      if (IsFinal(row.status()) && ctx_.stub->Get(ctx_.Call().get(), get, &task).ok()) {
        OnTargetStatus(task);
      } else {
        SinkOf(row.task_id(), it->second, it->second.attempt).CatchUp(0);
        SinkOf(row.task_id(), it->second, it->second.attempt).CatchUp(1);
      }
    }
    *run_.mutable_counts() = now.counts();
    run_.set_status(now.status());
    ShowProgress();
    return IsFinal(now.status());
  }

  void OnTargetStatus(const v1::Task& task) {
    auto it = targets_.find(task.id());
    if (it == targets_.end() || !IsFinal(task.status()) || it->second.done) return;
    Target& t = it->second;
    t.done = true;
    OutputSink& sink = SinkOf(task.id(), t, task.attempt());
    sink.CatchUp(0, task.stdout().total_bytes());
    sink.CatchUp(1, task.stderr().total_bytes());
    FlushPartial(t);
    if (task.status() == v1::TASK_STATUS_SUCCEEDED) return;
    if (ctx_.json) return;  // The final run has every row.
    ClearProgress();
    std::cerr << absl::StrFormat("%-*s  [%s: %s]\n", width_, t.agent, StatusName(task.status()),
                                 task.status_reason());
    ShowProgress();
  }

  // The target's sink for `attempt`: a retry writes its output afresh.
  OutputSink& SinkOf(const std::string& task_id, Target& t, uint32_t attempt) {
    if (t.sink == nullptr || attempt > t.attempt) {
      if (t.sink != nullptr) FlushPartial(t);
      t.attempt = std::max(t.attempt, attempt);
      t.sink = std::make_unique<OutputSink>(
          ctx_, task_id,
          [this, &t](int stream, absl::string_view data) { Lines(t, stream, data); });
    }
    return *t.sink;
  }

  void Lines(Target& t, int stream, absl::string_view data) {
    std::string& partial = t.partial[stream];
    for (;;) {
      const size_t nl = data.find('\n');
      if (nl == absl::string_view::npos) {
        partial.append(data.data(), data.size());
        return;
      }
      partial.append(data.data(), nl);
      WriteLine(t, stream, partial);
      partial.clear();
      data.remove_prefix(nl + 1);
    }
  }

  void FlushPartial(Target& t) {
    for (int s = 0; s < 2; ++s) {
      if (t.partial[s].empty()) continue;
      WriteLine(t, s, t.partial[s]);
      t.partial[s].clear();
    }
  }

  void WriteLine(const Target& t, int stream, const std::string& line) {
    if (ctx_.json) {
      google::protobuf::Struct out;
      auto& f = *out.mutable_fields();
      f["type"].set_string_value("output");
      f["agentId"].set_string_value(t.agent);
      f["stream"].set_string_value(stream == 0 ? "stdout" : "stderr");
      f["line"].set_string_value(line);
      std::cout << Json(out) << "\n" << std::flush;
      return;
    }
    ClearProgress();
    WriteRaw(stream, absl::StrFormat("%-*s  %s\n", width_, t.agent, line));
    ShowProgress();
  }

  void ShowProgress() {
    if (!show_progress_) return;
    const v1::RunCounts& c = run_.counts();
    const int failed = c.failed() + c.timed_out() + c.lost();
    const std::string line = absl::StrFormat(
        "[run %s] %d/%d done  %d running  %d waiting  %d failed%s", run_.id().substr(0, 8),
        c.succeeded() + failed + c.cancelled(), c.targets() - c.skipped(), c.running(), c.waiting(),
        failed, c.skipped() ? absl::StrCat("  ", c.skipped(), " skipped") : "");
    std::cerr << "\r\033[K\033[2m" << line << "\033[0m" << std::flush;
    progress_shown_ = true;
  }

  void ClearProgress() {
    if (!progress_shown_) return;
    std::cerr << "\r\033[K" << std::flush;
    progress_shown_ = false;
  }

  const Context& ctx_;
  v1::Run run_;
  const bool show_progress_;
  bool progress_shown_ = false;
  size_t width_ = 0;
  std::map<std::string, Target> targets_;  // By task id.
};

}  // namespace

std::unique_ptr<grpc::ClientContext> Context::Call(absl::Duration timeout) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!api_key.empty()) ctx->AddMetadata("x-api-key", api_key);
  if (timeout != absl::InfiniteDuration())
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return ctx;
}

int Fail(const std::string& what) {
  std::cerr << "taskgrid: " << what << "\n";
  return kExitError;
}

int Fail(const grpc::Status& s) {
  return Fail(s.error_code() == grpc::StatusCode::UNAVAILABLE
                  ? "coordinator unavailable: " + s.error_message()
                  : s.error_message());
}

std::string Json(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = false;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

std::string StatusName(v1::TaskStatus s) {
  return absl::AsciiStrToLower(v1::TaskStatus_Name(s).substr(sizeof("TASK_STATUS_") - 1));
}

int ExitCodeOf(const v1::Task& t) {
  switch (t.status()) {
    case v1::TASK_STATUS_SUCCEEDED:
      return 0;
    case v1::TASK_STATUS_FAILED:
      if (t.exit().signal() != 0) return 128 + t.exit().signal();
      return t.exit().exit_code() != 0 ? t.exit().exit_code() : kExitError;
    case v1::TASK_STATUS_TIMED_OUT:
      return kExitTimedOut;
    case v1::TASK_STATUS_CANCELLED:
      return kExitCancelled;
    default:
      return kExitError;
  }
}

// ---------------------------------------------------------------- OutputSink

OutputSink::OutputSink(const Context& ctx, std::string task_id, Writer writer)
    : ctx_(ctx), task_id_(std::move(task_id)), writer_(writer ? std::move(writer) : WriteRaw) {}

void OutputSink::OnChunk(const v1::OutputChunk& c) {
  const int i = c.stream() == v1::OUTPUT_STREAM_STDERR ? 1 : 0;
  // A gap, or a marker of bytes the stream does not carry: fetch what is held.
  CatchUp(i, c.offset() + c.dropped_bytes());
  const int64_t end = c.offset() + static_cast<int64_t>(c.data().size());
  if (end <= next_[i] || c.offset() > next_[i]) return;
  writer_(i, absl::string_view(c.data()).substr(static_cast<size_t>(next_[i] - c.offset())));
  next_[i] = end;
}

void OutputSink::CatchUp(int i, int64_t until) {
  while (next_[i] < until) {
    v1::GetOutputRequest req;
    req.set_task_id(task_id_);
    req.set_stream(i == 0 ? v1::OUTPUT_STREAM_STDOUT : v1::OUTPUT_STREAM_STDERR);
    req.set_offset(next_[i]);
    v1::GetOutputResponse resp;
    if (!ctx_.stub->GetOutput(ctx_.Call().get(), req, &resp).ok()) return;
    if (resp.offset() > next_[i]) {
      writer_(i, absl::StrFormat("\n[taskgrid: %d bytes of output dropped]\n",
                                 resp.offset() - next_[i]));
      next_[i] = resp.offset();
    }
    if (resp.data().empty()) return;
    writer_(i, resp.data());
    next_[i] += static_cast<int64_t>(resp.data().size());
  }
}

// ---------------------------------------------------------------- following

absl::StatusOr<v1::Task> Follow(const Context& ctx, const std::string& task_id, uint64_t after,
                                bool show_progress) {
  OutputSink sink(ctx, task_id);
  v1::TaskStatus shown = v1::TASK_STATUS_UNSPECIFIED;
  std::string shown_reason;
  absl::StatusOr<v1::Task> result = absl::UnknownError("the stream ended early");
  v1::WatchRequest req;
  req.set_task_id(task_id);
  req.set_after_cursor(after);
  absl::Status s = WatchUntil(ctx, req, [&](const v1::TaskEvent& e) {
    v1::Task task;
    if (e.type() == v1::EVENT_TYPE_RESYNC) {
      // Our cursor fell out of the coordinator's log: read state instead.
      v1::GetRequest g;
      g.set_task_id(task_id);
      if (grpc::Status gs = ctx.stub->Get(ctx.Call().get(), g, &task); !gs.ok()) {
        result = FromGrpc(gs);
        return true;
      }
      sink.CatchUp(0);
      sink.CatchUp(1);
    } else if (e.type() == v1::EVENT_TYPE_TASK_LOG) {
      sink.OnChunk(e.output());
      return false;
    } else if (e.has_task()) {
      task = e.task();
    } else {
      return false;
    }
    // A new state, or a waiting task's new reason (TASK_WAITING).
    if (show_progress && (task.status() != shown || task.waiting_reason() != shown_reason)) {
      shown = task.status();
      shown_reason = task.waiting_reason();
      std::string line = StatusName(shown);
      if (shown == v1::TASK_STATUS_QUEUED) line += ": " + task.waiting_reason();
      if (shown == v1::TASK_STATUS_DISPATCHED) line += " to " + task.agent_id();
      if (IsFinal(shown) && !task.status_reason().empty()) line += ": " + task.status_reason();
      std::cerr << "\033[2m[taskgrid " << task_id.substr(0, 8) << "] " << line << "\033[0m\n";
    }
    if (!IsFinal(task.status())) return false;
    sink.CatchUp(0, task.stdout().total_bytes());
    sink.CatchUp(1, task.stderr().total_bytes());
    result = std::move(task);
    return true;
  });
  if (!s.ok()) return s;
  return result;
}

absl::StatusOr<v1::Run> FollowRun(const Context& ctx, const v1::Run& run, uint64_t after,
                                  bool show_progress) {
  return RunFollower(ctx, run, show_progress).Follow(after);
}

CancelOnSignal::CancelOnSignal(std::string what, std::function<void()> cancel) {
  thread_ = std::thread([what = std::move(what), cancel = std::move(cancel)] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    for (int count = 0;;) {
      int sig = 0;
      sigwait(&set, &sig);
      if (sig == SIGUSR1) return;  // Destructor: stop waiting.
      if (++count > 1) _exit(kExitCancelled);
      std::cerr << "\ntaskgrid: cancelling " << what << " (Ctrl-C again to detach)\n";
      cancel();
    }
  });
}

CancelOnSignal::~CancelOnSignal() {
  pthread_kill(thread_.native_handle(), SIGUSR1);
  thread_.join();
}

}  // namespace taskgrid::cli
