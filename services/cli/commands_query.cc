// Reading and managing what exists: get, list, runs, cancel, delete,
// logs, watch, agents, stats, audit.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <iostream>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "services/cli/commands.h"
#include "services/common/enum_names.h"
#include "services/common/proto_time.h"
#include "services/common/task_resources.h"

namespace taskgrid::cli {
namespace {

void PrintTask(const v1::Task& t) {
  std::cout << "id:          " << t.id() << "\n"
            << "status:      " << StatusName(t.status());
  if (!t.status_reason().empty()) std::cout << " (" << t.status_reason() << ")";
  std::cout << "\n";
  if (!t.waiting_reason().empty()) std::cout << "waiting:     " << t.waiting_reason() << "\n";
  std::cout << "command:     " << CommandLine(t.spec()) << "\n"
            << "type:        " << t.spec().type() << "\n"
            << "priority:    " << PriorityName(t.spec().priority()) << "\n"
            << "agent:       " << (t.agent_id().empty() ? "-" : t.agent_id()) << "\n"
            << "attempt:     " << t.attempt() << "\n"
            << "created:     " << FormatTime(t.created_at()) << "\n"
            << "started:     " << FormatTime(t.started_at()) << "\n"
            << "finished:    " << FormatTime(t.finished_at()) << "\n";
  if (t.has_exit()) {
    std::cout << "exit:        code " << t.exit().exit_code();
    if (t.exit().signal()) std::cout << ", signal " << t.exit().signal();
    std::cout << ", cpu " << absl::FormatDuration(FromProto(t.exit().cpu_time())) << ", max rss "
              << t.exit().max_rss_bytes() / 1024 << " KiB";
    if (t.exit().memory_peak_bytes() > 0) {
      std::cout << ", peak memory " << FormatBytes(t.exit().memory_peak_bytes());
    }
    std::cout << (t.exit().oom_killed() ? ", out of memory\n" : "\n");
    if (!t.exit().error().empty()) std::cout << "error:       " << t.exit().error() << "\n";
    if (!t.exit().container_id().empty())
      std::cout << "container:   " << t.exit().container_id() << "\n";
  }
  if (t.progress() > 0)
    std::cout << "progress:    " << t.progress() << "% " << t.progress_message() << "\n";
  std::cout << "output:      stdout " << t.stdout().total_bytes() << " B, stderr "
            << t.stderr().total_bytes() << " B\n";
}

std::string DescribeEvent(const v1::TaskEvent& e) {
  std::string type = Lower(v1::EventType_Name(e.type()), 11);
  std::string line = absl::StrCat(e.cursor(), " ", FormatTime(e.time()), " ", type);
  if (!e.task_id().empty()) absl::StrAppend(&line, " task=", e.task_id());
  if (!e.agent_id().empty()) absl::StrAppend(&line, " agent=", e.agent_id());
  if (e.has_task() && e.type() != v1::EVENT_TYPE_TASK_LOG) {
    absl::StrAppend(&line, " status=", StatusName(e.task().status()));
  }
  if (e.has_output()) {
    absl::StrAppend(&line, " ",
                    e.output().stream() == v1::OUTPUT_STREAM_STDERR ? "stderr" : "stdout",
                    " offset=", e.output().offset(), " bytes=", e.output().data().size());
  }
  if (e.has_progress()) absl::StrAppend(&line, " progress=", e.progress().percent());
  return line;
}

}  // namespace

int CmdGet(Context& ctx, const ParsedArgs& a) {
  if (a.positional.size() != 1) return Usage("get: give one task id");
  v1::GetRequest req;
  req.set_task_id(a.positional[0]);
  v1::Task t;
  grpc::Status s = ctx.stub->Get(ctx.Call().get(), req, &t);
  if (!s.ok()) return Fail(s);
  if (ctx.json) {
    std::cout << Json(t) << "\n";
  } else {
    PrintTask(t);
  }
  return 0;
}

int CmdList(Context& ctx, const ParsedArgs& a) {
  v1::ListRequest req;
  for (absl::string_view s : absl::StrSplit(a.Get("status"), ',', absl::SkipEmpty())) {
    auto st = ParseStatus(s);
    if (!st.ok()) return Usage(std::string(st.status().message()));
    req.add_status(*st);
  }
  for (absl::string_view s : absl::StrSplit(a.Get("priority"), ',', absl::SkipEmpty())) {
    auto p = ParsePriority(s);
    if (!p.ok()) return Usage(std::string(p.status().message()));
    req.add_priority(*p);
  }
  if (a.Has("type")) req.add_type(a.Get("type"));
  if (a.flags.count("tag")) {
    for (const auto& t : a.flags.at("tag")) req.add_tags(t);
  }
  req.set_agent_id(a.Get("agent"));
  if (a.Has("limit")) {
    int limit;
    if (!absl::SimpleAtoi(a.Get("limit"), &limit)) return Usage("--limit: not a number");
    req.set_page_size(limit);
  }
  req.set_page_token(a.Get("page-token"));
  v1::ListResponse resp;
  grpc::Status s = ctx.stub->List(ctx.Call().get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (ctx.json) {
    std::cout << Json(resp) << "\n";
    return 0;
  }
  std::cout << absl::StrFormat("%-36s  %-10s  %-8s  %-12s  %-19s  %s\n", "TASK ID", "STATUS",
                               "PRIORITY", "AGENT", "CREATED", "COMMAND");
  for (const auto& t : resp.tasks()) {
    std::string cmd = CommandLine(t.spec());
    if (cmd.size() > 50) cmd = cmd.substr(0, 47) + "...";
    std::cout << absl::StrFormat("%-36s  %-10s  %-8s  %-12s  %-19s  %s\n", t.id(),
                                 StatusName(t.status()), PriorityName(t.spec().priority()),
                                 t.agent_id().empty() ? "-" : t.agent_id(),
                                 FormatTime(t.created_at()).substr(0, 19), cmd);
  }
  std::cout << resp.tasks_size() << " of " << resp.total() << " tasks";
  if (!resp.next_page_token().empty())
    std::cout << " (next: --page-token " << resp.next_page_token() << ")";
  std::cout << "\n";
  return 0;
}

// `runs`: the newest runs, or one run with a row per target.
int CmdRuns(Context& ctx, const ParsedArgs& a) {
  if (a.positional.size() > 1) return Usage("runs: give at most one run id");
  if (a.positional.empty()) {
    v1::ListRunsRequest req;
    req.set_page_token(a.Get("page-token"));
    if (a.Has("limit")) {
      int limit;
      if (!absl::SimpleAtoi(a.Get("limit"), &limit)) return Usage("--limit: not a number");
      req.set_page_size(limit);
    }
    v1::ListRunsResponse resp;
    grpc::Status s = ctx.stub->ListRuns(ctx.Call().get(), req, &resp);
    if (!s.ok()) return Fail(s);
    if (ctx.json) {
      std::cout << Json(resp) << "\n";
      return 0;
    }
    std::cout << absl::StrFormat("%-36s  %-10s  %-7s  %-7s  %-7s  %-6s  %-7s  %-19s  %s\n",
                                 "RUN ID", "STATUS", "TARGETS", "DONE", "RUNNING", "FAILED",
                                 "SKIPPED", "CREATED", "COMMAND");
    for (const v1::Run& r : resp.runs()) {
      const v1::RunCounts& c = r.counts();
      const int failed = c.failed() + c.timed_out() + c.lost();
      std::cout << absl::StrFormat("%-36s  %-10s  %-7d  %-7d  %-7d  %-6d  %-7d  %-19s  %s\n",
                                   r.id(), StatusName(r.status()), c.targets() - c.skipped(),
                                   c.succeeded() + failed + c.cancelled(), c.running(), failed,
                                   c.skipped(), FormatTime(r.created_at()).substr(0, 19),
                                   CommandLine(r.spec().task()).substr(0, 50));
    }
    if (!resp.next_page_token().empty()) {
      std::cout << "(more: --page-token " << resp.next_page_token() << ")\n";
    }
    return 0;
  }
  v1::GetRunRequest req;
  req.set_run_id(a.positional[0]);
  v1::Run r;
  grpc::Status s = ctx.stub->GetRun(ctx.Call().get(), req, &r);
  if (!s.ok()) return Fail(s);
  if (ctx.json) {
    std::cout << Json(r) << "\n";
    return 0;
  }
  std::cout << "id:          " << r.id() << "\n"
            << "status:      " << StatusName(r.status());
  if (!r.status_reason().empty()) std::cout << " (" << r.status_reason() << ")";
  std::cout << "\n";
  if (!r.waiting_reason().empty()) std::cout << "waiting:     " << r.waiting_reason() << "\n";
  std::cout << "command:     " << CommandLine(r.spec().task()) << "\n"
            << "selector:    "
            << absl::StrJoin(std::map<std::string, std::string>(r.spec().task().selector().begin(),
                                                                r.spec().task().selector().end()),
                             ",", absl::PairFormatter("="))
            << "\n"
            << "concurrency: "
            << (r.concurrency_limit() ? absl::StrCat(r.concurrency_limit()) : "all")
            << "   max errors: " << (r.error_limit() ? absl::StrCat(r.error_limit()) : "none")
            << "\n"
            << "created:     " << FormatTime(r.created_at()) << "\n"
            << "finished:    " << FormatTime(r.finished_at()) << "\n";
  if (r.has_first_failure()) {
    const v1::RunFailure& f = r.first_failure();
    std::cout << "first failure: " << f.agent_id() << " " << StatusName(f.status()) << " ("
              << f.reason() << ")\n";
    for (const std::string* tail : {&f.stdout_tail(), &f.stderr_tail()}) {
      if (!tail->empty()) std::cout << *tail << (tail->back() == '\n' ? "" : "\n");
    }
  }
  std::cout << absl::StrFormat("\n%-24s  %-10s  %-4s  %-10s  %-36s  %s\n", "AGENT", "STATUS",
                               "EXIT", "DURATION", "TASK ID", "REASON");
  for (const v1::RunTarget& t : r.targets()) {
    std::cout << absl::StrFormat(
        "%-24s  %-10s  %-4s  %-10s  %-36s  %s\n", t.agent_id(),
        t.skipped() ? "skipped" : StatusName(t.status()),
        IsFinal(t.status()) && t.has_duration() ? absl::StrCat(t.exit_code()) : "-",
        t.has_duration()
            ? absl::FormatDuration(absl::Trunc(FromProto(t.duration()), absl::Milliseconds(1)))
            : "-",
        t.task_id().empty() ? "-" : t.task_id(), t.reason());
  }
  return 0;
}

int CmdCancel(Context& ctx, const ParsedArgs& a) {
  if (a.positional.size() != 1) return Usage("cancel: give one task or run id");
  v1::CancelRequest req;
  req.set_task_id(a.positional[0]);
  req.set_reason(a.Get("reason"));
  v1::Task t;
  grpc::Status s = ctx.stub->Cancel(ctx.Call().get(), req, &t);
  if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
    v1::CancelRunRequest run_req;
    run_req.set_run_id(a.positional[0]);
    run_req.set_reason(a.Get("reason"));
    v1::Run run;
    grpc::Status rs = ctx.stub->CancelRun(ctx.Call().get(), run_req, &run);
    if (rs.error_code() == grpc::StatusCode::NOT_FOUND) {
      return Fail("no task or run " + a.positional[0]);
    }
    if (!rs.ok()) return Fail(rs);
    std::cout << (ctx.json ? Json(run) : "cancelled run " + run.id()) << "\n";
    return 0;
  }
  if (!s.ok()) return Fail(s);
  std::cout << (ctx.json ? Json(t) : "cancelled " + t.id()) << "\n";
  return 0;
}

int CmdDelete(Context& ctx, const ParsedArgs& a) {
  if (a.positional.size() != 1) return Usage("delete: give one task id");
  v1::DeleteRequest req;
  req.set_task_id(a.positional[0]);
  v1::DeleteResponse resp;
  grpc::Status s = ctx.stub->Delete(ctx.Call().get(), req, &resp);
  if (!s.ok()) return Fail(s);
  std::cout << (ctx.json ? "{}" : "deleted " + a.positional[0]) << "\n";
  return 0;
}

int CmdLogs(Context& ctx, const ParsedArgs& a) {
  if (a.positional.size() != 1) return Usage("logs: give one task id");
  const std::string& id = a.positional[0];
  if (a.Has("follow")) {
    // From cursor 0: replays what the log still holds, else resyncs.
    auto t = Follow(ctx, id, 0, false);
    return t.ok() ? 0 : Fail(std::string(t.status().message()));
  }
  v1::GetRequest g;
  g.set_task_id(id);
  v1::Task t;
  grpc::Status s = ctx.stub->Get(ctx.Call().get(), g, &t);
  if (!s.ok()) return Fail(s);
  OutputSink sink(ctx, id);
  sink.CatchUp(0, t.stdout().total_bytes());
  sink.CatchUp(1, t.stderr().total_bytes());
  return 0;
}

int CmdWatch(Context& ctx, const ParsedArgs& a) {
  v1::WatchRequest req;
  req.set_task_id(a.Get("task"));
  req.set_agent_id(a.Get("agent"));
  req.set_run_id(a.Get("run"));
  for (absl::string_view t : absl::StrSplit(a.Get("types"), ',', absl::SkipEmpty())) {
    v1::EventType type;
    std::string name = absl::StrCat("EVENT_TYPE_", absl::AsciiStrToUpper(t));
    absl::StrReplaceAll({{":", "_"}}, &name);
    if (!v1::EventType_Parse(name, &type))
      return Usage(absl::StrCat("--types: unknown type \"", t, "\""));
    req.add_types(type);
  }
  if (a.Has("after")) {
    uint64_t after;
    if (!absl::SimpleAtoi(a.Get("after"), &after)) return Usage("--after: not a cursor");
    req.set_after_cursor(after);
  }
  auto call = ctx.Call(absl::InfiniteDuration());
  auto reader = ctx.stub->Watch(call.get(), req);
  v1::WatchResponse batch;
  while (reader->Read(&batch)) {
    for (const v1::TaskEvent& e : batch.events()) {
      std::cout << (ctx.json ? Json(e) : DescribeEvent(e)) << "\n";
    }
    std::cout.flush();
  }
  grpc::Status s = reader->Finish();
  return s.ok() ? 0 : Fail(s);
}

int CmdAgents(Context& ctx, const ParsedArgs& a) {
  v1::ListAgentsResponse resp;
  grpc::Status s = ctx.stub->ListAgents(ctx.Call().get(), v1::ListAgentsRequest(), &resp);
  if (!s.ok()) return Fail(s);
  if (ctx.json) {
    std::cout << Json(resp) << "\n";
    return 0;
  }
  std::cout << absl::StrFormat("%-16s  %-9s  %-7s  %-6s  %-19s  %s\n", "AGENT", "STATE", "SLOTS",
                               "LOAD", "LAST HEARTBEAT", "LABELS");
  for (const auto& ag : resp.agents()) {
    std::map<std::string, std::string> labels(ag.labels().begin(), ag.labels().end());
    std::cout << absl::StrFormat("%-16s  %-9s  %3d/%-3d  %-6.2f  %-19s  %s\n", ag.agent_id(),
                                 ag.connected() ? "connected" : "offline", ag.running_tasks(),
                                 ag.slots(), ag.load1(),
                                 FormatTime(ag.last_heartbeat()).substr(0, 19),
                                 absl::StrJoin(labels, ",", absl::PairFormatter("=")));
  }
  return 0;
}

int CmdStats(Context& ctx, const ParsedArgs& a) {
  v1::StatsResponse resp;
  grpc::Status s = ctx.stub->Stats(ctx.Call().get(), v1::StatsRequest(), &resp);
  if (!s.ok()) return Fail(s);
  if (ctx.json) {
    std::cout << Json(resp) << "\n";
    return 0;
  }
  std::cout << "total:        " << resp.total() << "\n"
            << absl::StrFormat("success rate: %.1f%%\n", resp.success_rate() * 100)
            << absl::StrFormat("execution:    mean %.3fs  p50 %.3fs  p99 %.3fs\n",
                               resp.avg_execution_time(), resp.p50_execution_time(),
                               resp.p99_execution_time());
  std::map<std::string, int64_t> by_status(resp.by_status().begin(), resp.by_status().end());
  std::cout << "by status:    " << absl::StrJoin(by_status, " ", absl::PairFormatter("=")) << "\n";
  std::map<std::string, int64_t> by_priority(resp.by_priority().begin(), resp.by_priority().end());
  std::cout << "by priority:  " << absl::StrJoin(by_priority, " ", absl::PairFormatter("="))
            << "\n";
  std::map<std::string, int64_t> by_type(resp.by_type().begin(), resp.by_type().end());
  std::cout << "by type:      " << absl::StrJoin(by_type, " ", absl::PairFormatter("=")) << "\n";
  return 0;
}

int CmdAudit(Context& ctx, const ParsedArgs& a) {
  v1::ListAuditRequest req;
  req.set_actor(a.Get("actor"));
  req.set_action(a.Get("action"));
  if (a.Has("since")) {
    auto d = ParseDurationFlag("since", a.Get("since"));
    if (!d.ok()) return Usage(std::string(d.status().message()));
    *req.mutable_since() = ToProto(absl::Now() - FromProto(*d));
  }
  int64_t limit = 0;
  if (a.Has("limit") && (!absl::SimpleAtoi(a.Get("limit"), &limit) || limit <= 0)) {
    return Usage("--limit: must be a positive number");
  }
  req.set_limit(static_cast<int32_t>(std::min<int64_t>(limit, 1000)));
  for (int64_t printed = 0;;) {
    v1::ListAuditResponse resp;
    grpc::Status s = ctx.stub->ListAudit(ctx.Call().get(), req, &resp);
    if (!s.ok()) return Fail(s);
    for (const v1::AuditEntry& e : resp.entries()) {
      if (limit > 0 && printed++ == limit) return 0;
      if (ctx.json) {
        std::cout << Json(e) << "\n";
      } else {
        std::cout << absl::StrFormat("%s  %-18s  %-18s  %-36s  %-17s  %s%s\n", FormatTime(e.time()),
                                     e.actor(), e.action(), e.target(), e.outcome(), e.peer(),
                                     e.detail().empty() ? "" : "  (" + e.detail() + ")");
      }
    }
    if (resp.next_after_seq() == 0) return 0;
    req.set_after_seq(resp.next_after_seq());
  }
}

}  // namespace taskgrid::cli
