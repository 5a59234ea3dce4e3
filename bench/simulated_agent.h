// Simulated agents for the control-plane benchmarks: each is one real gRPC
// stream to the coordinator (a callback reactor, so ten thousand cost no
// threads) that starts and finishes every assigned task at once, and
// heartbeats when asked. A Timeline records when tasks reached an agent and
// when the agent got the durable acknowledgement of their finish.
#ifndef TASKGRID_BENCH_SIMULATED_AGENT_H_
#define TASKGRID_BENCH_SIMULATED_AGENT_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "taskgrid/v1/agent.grpc.pb.h"
#include "taskgrid/v1/task_service.grpc.pb.h"

namespace taskgrid::bench {

using Clock = std::chrono::steady_clock;

class Timeline {
 public:
  struct Times {
    Clock::time_point started, finished;
  };
  void Record(bool on) { recording_ = on; }
  void Started(const std::string& id) { Note(id, &Times::started); }
  void Finished(const std::string& id) { Note(id, &Times::finished); }

  // The times of `id` once its finish was acknowledged (waiting up to 10 s).
  std::optional<Times> Wait(const std::string& id) {
    absl::MutexLock lock(&mu_);
    auto finished = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      auto it = times_.find(id);
      return it != times_.end() && it->second.finished != Clock::time_point();
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&finished, &decltype(finished)::operator()),
                              absl::Seconds(10))) {
      return std::nullopt;
    }
    Times t = times_[id];
    times_.erase(id);
    return t;
  }

 private:
  void Note(const std::string& id, Clock::time_point Times::*field) {
    if (!recording_) return;
    const auto now = Clock::now();
    absl::MutexLock lock(&mu_);
    times_[id].*field = now;
  }

  std::atomic<bool> recording_{false};
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Times> times_ ABSL_GUARDED_BY(mu_);
};

// One client submitting `n` no-op tasks one at a time (the timeline must be
// recording): milliseconds from submit to started and to finished.
inline void SubmitOneAtATime(v1::TaskService::Stub& stub, Timeline& timeline, int n,
                             std::vector<double>& started_ms, std::vector<double>& finished_ms) {
  v1::SubmitRequest req;
  req.mutable_spec()->mutable_shell()->add_argv("true");
  for (int i = 0; i < n; ++i) {
    grpc::ClientContext ctx;
    v1::SubmitResponse resp;
    const auto t0 = Clock::now();
    if (!stub.Submit(&ctx, req, &resp).ok()) continue;
    if (auto t = timeline.Wait(resp.task().id())) {
      started_ms.push_back(std::chrono::duration<double, std::milli>(t->started - t0).count());
      finished_ms.push_back(std::chrono::duration<double, std::milli>(t->finished - t0).count());
    }
  }
}

// Counts shared by every simulated agent of a run.
struct AgentCounters {
  std::atomic<int64_t> welcomed{0};
  std::atomic<int64_t> assigned{0};  // Tasks that reached an agent.
  std::atomic<int64_t> acked{0};  // Finishes acknowledged as durable.
  std::atomic<int64_t> heartbeats{0};
};

// Starts on construction; Stop() cancels; destroy only after WaitDone().
class SimulatedAgent final
    : public grpc::ClientBidiReactor<v1::AgentBatch, v1::CoordinatorBatch> {
 public:
  SimulatedAgent(v1::AgentService::Stub& stub, const std::string& id, int slots,
                 AgentCounters& counters, Timeline& timeline,
                 const std::map<std::string, std::string>& labels = {})
      : counters_(counters), timeline_(timeline) {
    stub.async()->Connect(&ctx_, this);
    {
      absl::MutexLock lock(&mu_);
      v1::Hello* h = pending_.add_messages()->mutable_hello();
      h->set_agent_id(id);
      h->set_slots(static_cast<uint32_t>(slots));
      h->set_version("bench");
      h->mutable_labels()->insert(labels.begin(), labels.end());
    }
    Flush();
    StartRead(&in_);
    StartCall();
  }

  void Heartbeat() {
    {
      absl::MutexLock lock(&mu_);
      if (done_) return;
      pending_.add_messages()->mutable_heartbeat()->set_running_tasks(0);
      counters_.heartbeats.fetch_add(1, std::memory_order_relaxed);
    }
    Flush();
  }

  void Stop() { ctx_.TryCancel(); }

  void WaitDone() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
  }

 private:
  void OnReadDone(bool ok) override {
    if (!ok) return;
    {
      absl::MutexLock lock(&mu_);
      HandleLocked();
    }
    Flush();
    StartRead(&in_);
  }

  void HandleLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const v1::CoordinatorMessage& m : in_.messages()) {
      if (m.has_welcome()) {
        counters_.welcomed.fetch_add(1, std::memory_order_relaxed);
      } else if (m.has_assign()) {
        counters_.assigned.fetch_add(1, std::memory_order_relaxed);
        timeline_.Started(m.assign().task_id());
        v1::Started* s = pending_.add_messages()->mutable_started();
        s->set_task_id(m.assign().task_id());
        s->set_attempt(m.assign().attempt());
        s->set_pid(1);
        v1::Finished* f = pending_.add_messages()->mutable_finished();
        f->set_task_id(m.assign().task_id());
        f->set_attempt(m.assign().attempt());
      } else if (m.has_ack() && m.ack().finished()) {
        timeline_.Finished(m.ack().task_id());
        counters_.acked.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
    }
    if (ok) Flush();
  }

  void OnDone(const grpc::Status&) override {
    absl::MutexLock lock(&mu_);
    done_ = true;
  }

  // One write in flight; what arrives meanwhile goes out as the next batch.
  // StartWrite is called without the lock: gRPC may run OnWriteDone inline.
  void Flush() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || pending_.messages_size() == 0) return;
      out_.Swap(&pending_);
      pending_.Clear();
      writing_ = true;
    }
    StartWrite(&out_);
  }

  AgentCounters& counters_;
  Timeline& timeline_;
  grpc::ClientContext ctx_;
  v1::CoordinatorBatch in_;
  v1::AgentBatch out_;
  absl::Mutex mu_;
  v1::AgentBatch pending_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace taskgrid::bench

#endif  // TASKGRID_BENCH_SIMULATED_AGENT_H_
