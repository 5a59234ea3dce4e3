// End-to-end throughput and latency of one coordinator and one agent (the
// real binaries on 127.0.0.1) running /bin/true, beside the machine's own
// ceiling: how fast it can posix_spawn /bin/true with no taskgrid at all;
// and one task at a time, submit to started and to finished as a Watch
// client sees them. Per task: each process's CPU and context switches, and
// the messages and stream reads/writes between coordinator and agent.
//
//   throughput_bench [--seconds=5] [--clients=32] [--slots=32] [--latency_tasks=300]
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "taskgrid/v1/task_service.grpc.pb.h"

ABSL_FLAG(double, seconds, 5, "Length of each throughput measurement.");
ABSL_FLAG(int, clients, 32, "Concurrent submitting clients.");
ABSL_FLAG(int, slots, 32, "Agent slots.");
ABSL_FLAG(int, latency_tasks, 300, "Sequential tasks for the idle latency measurement.");

extern char** environ;

namespace taskgrid {
namespace {

using bench::ContextSwitches;
using bench::CpuSeconds;
using bench::Percentile;
using bench::Spawn;

using Clock = std::chrono::steady_clock;

double SpawnCeiling(double seconds, int threads) {
  std::atomic<int64_t> count{0};
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  std::vector<std::thread> workers;
  const auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      char arg0[] = "/bin/true";
      char* argv[] = {arg0, nullptr};
      while (Clock::now() < end) {
        pid_t pid;
        if (posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ) != 0) continue;
        waitpid(pid, nullptr, 0);
        count.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (auto& w : workers) w.join();
  return static_cast<double>(count.load()) /
         std::chrono::duration<double>(Clock::now() - start).count();
}

// Messages, and batches (one stream read or write each), between the
// coordinator and its agents, both ways.
double AgentMessages(int metrics_port) {
  return bench::ScrapeCounter(metrics_port, "coordinator_agent_messages_received_total") +
         bench::ScrapeCounter(metrics_port, "coordinator_agent_messages_sent_total");
}
double AgentBatches(int metrics_port) {
  return bench::ScrapeCounter(metrics_port, "coordinator_agent_batches_received_total") +
         bench::ScrapeCounter(metrics_port, "coordinator_agent_batches_sent_total");
}

// Store transactions (each one fsync with the SQLite store at sync=full).
double StoreCommits(int metrics_port) {
  return bench::ScrapeCounter(metrics_port, "coordinator_store_commit_seconds_count");
}

// Follows every task status event and lets clients wait for their task.
class Tracker {
 public:
  void OnEvent(const v1::TaskEvent& e) {
    const auto now = Clock::now();
    absl::MutexLock lock(&mu_);
    State& s = tasks_[e.task_id()];
    if (e.task().status() == v1::TASK_STATUS_RUNNING && !s.started) {
      s.started = true;
      s.started_at = now;
    }
    if (e.task().status() >= v1::TASK_STATUS_SUCCEEDED) {
      s.done = true;
      s.finished_at = now;
      s.succeeded = e.task().status() == v1::TASK_STATUS_SUCCEEDED;
    }
  }
  struct State {
    bool started = false, done = false, succeeded = false;
    Clock::time_point started_at, finished_at;
  };

  // Waits until the task is final (or 30 s).
  State Wait(const std::string& id) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return tasks_[id].done; };
    mu_.AwaitWithTimeout(absl::Condition(&done, &decltype(done)::operator()), absl::Seconds(30));
    State s = tasks_[id];
    tasks_.erase(id);
    return s;
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, State> tasks_ ABSL_GUARDED_BY(mu_);
};

int Main() {
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const double ceiling = SpawnCeiling(seconds, absl::GetFlag(FLAGS_clients));

  char dir_template[] = "/tmp/taskgrid-bench-XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  const pid_t coordinator = Spawn({TASKGRID_COORDINATOR_BIN, "--grpc_address=127.0.0.1:0",
                                   "--metrics_address=127.0.0.1:0", "--log_level=error",
                                   "--port_file=" + dir + "/ports", "--data_dir=" + dir});
  const int port = bench::ReadPort(dir + "/ports");
  int grpc_port = 0, metrics_port = 0;  // --port_file: the gRPC port, then the metrics one
  std::ifstream(dir + "/ports") >> grpc_port >> metrics_port;
  const std::string address = absl::StrCat("127.0.0.1:", port);
  const pid_t agent = Spawn({TASKGRID_AGENT_BIN, "--coordinator=" + address, "--agent_id=bench",
                             "--metrics_address=", "--log_level=error",
                             absl::StrCat("--slots=", absl::GetFlag(FLAGS_slots))});
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto stub = v1::TaskService::NewStub(channel);
  for (int i = 0; i < 200; ++i) {
    v1::ListAgentsResponse agents;
    grpc::ClientContext ctx;
    if (stub->ListAgents(&ctx, {}, &agents).ok() && agents.agents_size() == 1 &&
        agents.agents(0).connected()) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(25));
  }

  Tracker tracker;
  grpc::ClientContext watch_ctx;
  v1::WatchRequest watch;
  watch.add_types(v1::EVENT_TYPE_TASK_STATUS);
  auto reader = stub->Watch(&watch_ctx, watch);
  std::thread watcher([&] {
    v1::WatchResponse batch;
    while (reader->Read(&batch)) {
      for (const v1::TaskEvent& e : batch.events()) tracker.OnEvent(e);
    }
  });

  v1::SubmitRequest request;
  request.mutable_spec()->mutable_shell()->add_argv("/bin/true");
  auto submit = [&](v1::TaskService::Stub& s) {
    v1::SubmitResponse resp;
    grpc::ClientContext ctx;
    if (!s.Submit(&ctx, request, &resp).ok()) return std::string();
    return resp.task().id();
  };

  // Idle latency: one task at a time, from submit to the start and to the
  // final state as a Watch client sees them.
  std::vector<double> started_ms, finished_ms;
  for (int i = 0; i < absl::GetFlag(FLAGS_latency_tasks); ++i) {
    const auto t0 = Clock::now();
    const Tracker::State s = tracker.Wait(submit(*stub));
    if (!s.succeeded) continue;
    started_ms.push_back(std::chrono::duration<double, std::milli>(s.started_at - t0).count());
    finished_ms.push_back(std::chrono::duration<double, std::milli>(s.finished_at - t0).count());
  }

  // Throughput: each client submits, waits for the end, repeats.
  const double coordinator_cpu0 = CpuSeconds(coordinator), agent_cpu0 = CpuSeconds(agent);
  const double self_cpu0 = CpuSeconds(getpid());
  const int64_t coordinator_cs0 = ContextSwitches(coordinator), agent_cs0 = ContextSwitches(agent);
  const double messages0 = AgentMessages(metrics_port), writes0 = AgentBatches(metrics_port);
  const double commits0 = StoreCommits(metrics_port);
  std::atomic<int64_t> completed{0}, failed{0};
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  std::vector<std::thread> clients;
  const auto start = Clock::now();
  for (int c = 0; c < absl::GetFlag(FLAGS_clients); ++c) {
    clients.emplace_back([&] {
      while (Clock::now() < end) {
        const std::string id = submit(*stub);
        if (id.empty() || !tracker.Wait(id).succeeded) {
          failed.fetch_add(1);
        } else {
          completed.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  const double throughput = static_cast<double>(completed.load()) / elapsed;
  const double per_task_us = 1e6 / std::max<int64_t>(1, completed.load());
  const double coordinator_us = (CpuSeconds(coordinator) - coordinator_cpu0) * per_task_us;
  const double agent_us = (CpuSeconds(agent) - agent_cpu0) * per_task_us;
  const double clients_us = (CpuSeconds(getpid()) - self_cpu0) * per_task_us;
  const double per_task = per_task_us / 1e6;
  const double coordinator_cs =
      static_cast<double>(ContextSwitches(coordinator) - coordinator_cs0) * per_task;
  const double agent_cs = static_cast<double>(ContextSwitches(agent) - agent_cs0) * per_task;
  const double messages = (AgentMessages(metrics_port) - messages0) * per_task;
  const double writes = (AgentBatches(metrics_port) - writes0) * per_task;
  const double commits = (StoreCommits(metrics_port) - commits0) * per_task;

  watch_ctx.TryCancel();
  watcher.join();
  kill(agent, SIGTERM);
  waitpid(agent, nullptr, 0);
  kill(coordinator, SIGTERM);
  waitpid(coordinator, nullptr, 0);
  std::filesystem::remove_all(dir);

  if (failed > 0) std::fprintf(stderr, "%lld tasks failed\n", static_cast<long long>(failed));
  bench::PrintFigures(
      "throughput",
      {{.name = "shell.tasks_per_second", .value = throughput, .unit = "tasks/s",
        .ceiling = ceiling, .goal_ratio = 0.85},
       {.name = "shell.coordinator_cpu_per_task", .value = coordinator_us, .unit = "us",
        .lower_is_better = true},
       {.name = "shell.agent_cpu_per_task", .value = agent_us, .unit = "us",
        .lower_is_better = true},
       {.name = "shell.clients_cpu_per_task", .value = clients_us, .unit = "us",
        .lower_is_better = true},
       {.name = "shell.coordinator_context_switches_per_task", .value = coordinator_cs,
        .unit = "switches", .lower_is_better = true},
       {.name = "shell.agent_context_switches_per_task", .value = agent_cs, .unit = "switches",
        .lower_is_better = true},
       {.name = "shell.agent_stream_messages_per_task", .value = messages, .unit = "messages",
        .lower_is_better = true},
       {.name = "shell.agent_stream_writes_per_task", .value = writes, .unit = "writes",
        .lower_is_better = true},
       {.name = "shell.store_commits_per_task", .value = commits, .unit = "commits",
        .lower_is_better = true},
       {.name = "shell.one_at_a_time.submit_to_started_p50", .value = Percentile(started_ms, 0.5),
        .unit = "ms", .lower_is_better = true},
       {.name = "shell.one_at_a_time.submit_to_started_p99", .value = Percentile(started_ms, 0.99),
        .unit = "ms", .lower_is_better = true},
       {.name = "shell.one_at_a_time.submit_to_finished_p50",
        .value = Percentile(finished_ms, 0.5), .unit = "ms", .goal = 1.0, .lower_is_better = true},
       {.name = "shell.one_at_a_time.submit_to_finished_p99",
        .value = Percentile(finished_ms, 0.99), .unit = "ms", .lower_is_better = true}});
  return 0;
}

}  // namespace
}  // namespace taskgrid

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  // Debian's Abseil tracks every lock for deadlock cycles, a graph lookup per
  // acquisition; lock order is checked by the Clang thread-safety build.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return taskgrid::Main();
}
