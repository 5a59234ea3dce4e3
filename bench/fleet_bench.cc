// Fleet runs: the real coordinator binary (SQLite store) with 1,000 simulated
// agents (bench/simulated_agent.h: each a real gRPC stream that starts and
// finishes what it is assigned at once), and runs over all of them. At
// max_concurrency 100%: the time from SubmitRun to every target having
// reached its agent, to the run being final (as a Watch of the run sees it),
// and the coordinator's CPU per run and per target. At 10%: the time to the
// run being final, which releases each next target as one finishes. The
// ceiling is the machine's own fan-out: the same simulated agents on a bare
// gRPC server that writes one assignment down every stream at once, timed
// until all have arrived.
//
//   fleet_bench [--agents=1000] [--rounds=3]
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "bench/simulated_agent.h"
#include "taskgrid/v1/task_service.grpc.pb.h"

ABSL_FLAG(int, agents, 1000, "Simulated agents, each a target of the run.");
ABSL_FLAG(int, rounds, 3, "Runs (and ceiling measurements); medians are reported.");
ABSL_FLAG(std::string, store, "", "The coordinator's --store (default: SQLite in a scratch directory).");

namespace taskgrid {
namespace {

using bench::AgentCounters;
using bench::Clock;
using bench::CpuSeconds;
using bench::Figure;
using bench::Percentile;
using bench::SimulatedAgent;
using bench::Timeline;

constexpr int kAgentsPerConnection = 64;

double MillisSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// Waits (up to 60 s) until `counter` reaches `target`, leaving the cores to
// the processes measured.
bool AwaitCount(const std::atomic<int64_t>& counter, int64_t target) {
  const auto start = Clock::now();
  while (counter < target) {
    if (MillisSince(start) > 60'000) return false;
    absl::SleepFor(absl::Microseconds(50));
  }
  return true;
}

// Reads the run's events after `cursor` until its RUN_STATUS is final.
v1::TaskStatus AwaitFinal(v1::TaskService::Stub& stub, const std::string& run_id,
                          uint64_t cursor) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::WatchRequest req;
  req.set_run_id(run_id);
  req.set_after_cursor(cursor);
  req.add_types(v1::EVENT_TYPE_RUN_STATUS);
  auto reader = stub.Watch(&ctx, req);
  v1::WatchResponse batch;
  while (reader->Read(&batch)) {
    for (const v1::TaskEvent& e : batch.events()) {
      if (e.has_run() && e.run().status() >= v1::TASK_STATUS_SUCCEEDED) {
        ctx.TryCancel();
        reader->Finish().IgnoreError();
        return e.run().status();
      }
    }
  }
  reader->Finish().IgnoreError();
  return v1::TASK_STATUS_UNSPECIFIED;
}

struct RunTimes {
  double submit_ms = 0, started_ms = 0, final_ms = 0, cpu_ms = 0;
  bool ok = false;
};

// One run over every agent at `concurrency`.
RunTimes RunOnce(v1::TaskService::Stub& stub, AgentCounters& counters, pid_t coordinator, int n,
                 const std::string& concurrency) {
  RunTimes t;
  v1::SubmitRunRequest req;
  v1::TaskSpec* task = req.mutable_spec()->mutable_task();
  task->mutable_shell()->set_command("uptime");
  (*task->mutable_selector())["role"] = "fleet";
  req.mutable_spec()->set_max_concurrency(concurrency);
  const int64_t target = counters.assigned + n;
  const double cpu0 = CpuSeconds(coordinator);
  const auto start = Clock::now();
  grpc::ClientContext ctx;
  v1::SubmitRunResponse resp;
  if (grpc::Status s = stub.SubmitRun(&ctx, req, &resp); !s.ok()) {
    std::fprintf(stderr, "SubmitRun: %s\n", s.error_message().c_str());
    return t;
  }
  t.submit_ms = MillisSince(start);
  if (resp.run().counts().targets() != n) {
    std::fprintf(stderr, "the run has %d targets, not %d\n", resp.run().counts().targets(), n);
  }
  if (!AwaitCount(counters.assigned, target)) {
    std::fprintf(stderr, "not every target started\n");
    return t;
  }
  t.started_ms = MillisSince(start);
  const v1::TaskStatus status = AwaitFinal(stub, resp.run().id(), resp.cursor());
  t.final_ms = MillisSince(start);
  t.cpu_ms = (CpuSeconds(coordinator) - cpu0) * 1e3;
  t.ok = status == v1::TASK_STATUS_SUCCEEDED;
  std::fprintf(stderr, "max_concurrency %s: %s, started %.0f ms, final %.0f ms, cpu %.0f ms\n",
               concurrency.c_str(), v1::TaskStatus_Name(status).c_str(), t.started_ms, t.final_ms,
               t.cpu_ms);
  return t;
}

// `n` simulated agents on `address`, spread over connections as a fleet's
// would be; waits until each is welcomed.
class Fleet {
 public:
  Fleet(const std::string& address, int n) {
    const int connections = (n + kAgentsPerConnection - 1) / kAgentsPerConnection;
    for (int c = 0; c < connections; ++c) {
      grpc::ChannelArguments args;
      args.SetInt("taskgrid.bench.connection", c);  // Distinct args: a connection each.
      stubs_.push_back(v1::AgentService::NewStub(
          grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args)));
    }
    for (int a = 0; a < n; ++a) {
      agents_.push_back(std::make_unique<SimulatedAgent>(
          *stubs_[a % connections], absl::StrCat("fleet-", a), 4, counters, timeline_,
          std::map<std::string, std::string>{{"role", "fleet"}}));
    }
    if (!AwaitCount(counters.welcomed, n)) std::fprintf(stderr, "not every agent was welcomed\n");
  }
  ~Fleet() {
    for (auto& a : agents_) a->Stop();
    for (auto& a : agents_) a->WaitDone();
  }
  AgentCounters counters;

 private:
  Timeline timeline_;
  std::vector<std::unique_ptr<v1::AgentService::Stub>> stubs_;
  std::vector<std::unique_ptr<SimulatedAgent>> agents_;
};

// The ceiling's server: welcomes each agent, then on Broadcast writes one
// assignment down every stream.
class FanOutService final : public v1::AgentService::CallbackService {
 public:
  class Stream final : public grpc::ServerBidiReactor<v1::AgentBatch, v1::CoordinatorBatch> {
   public:
    explicit Stream(FanOutService& service) : service_(service) { StartRead(&in_); }
    void Send(const v1::CoordinatorBatch& batch) {
      absl::MutexLock lock(&mu_);
      if (writing_ || done_) return;
      writing_ = true;
      out_ = batch;
      StartWrite(&out_);
    }

   private:
    void OnReadDone(bool ok) override {
      if (!ok) {
        absl::MutexLock lock(&mu_);
        done_ = true;
        if (!writing_) Finish(grpc::Status::OK);
        return;
      }
      if (in_.messages_size() > 0 && in_.messages(0).has_hello() && !welcomed_) {
        welcomed_ = true;
        service_.Add(this);
        v1::CoordinatorBatch welcome;
        welcome.add_messages()->mutable_welcome();
        Send(welcome);
      }
      StartRead(&in_);
    }
    void OnWriteDone(bool) override {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (done_) Finish(grpc::Status::OK);
    }
    void OnDone() override {
      service_.Remove(this);
      delete this;
    }

    FanOutService& service_;
    v1::AgentBatch in_;
    bool welcomed_ = false;
    absl::Mutex mu_;
    v1::CoordinatorBatch out_ ABSL_GUARDED_BY(mu_);
    bool writing_ ABSL_GUARDED_BY(mu_) = false;
    bool done_ ABSL_GUARDED_BY(mu_) = false;
  };

  grpc::ServerBidiReactor<v1::AgentBatch, v1::CoordinatorBatch>* Connect(
      grpc::CallbackServerContext*) override {
    return new Stream(*this);
  }
  void Broadcast(int round) {
    absl::MutexLock lock(&mu_);
    for (Stream* s : streams_) {
      v1::CoordinatorBatch batch;
      v1::Assign* a = batch.add_messages()->mutable_assign();
      a->set_task_id(absl::StrCat("0f8a4c2e-5b7d-4e19-9a3c-", round, "-", uintptr_t(s)));
      a->set_attempt(1);
      a->mutable_spec()->mutable_shell()->set_command("uptime");
      (*a->mutable_spec()->mutable_selector())["role"] = "fleet";
      s->Send(batch);
    }
  }

 private:
  void Add(Stream* s) {
    absl::MutexLock lock(&mu_);
    streams_.push_back(s);
  }
  void Remove(Stream* s) {
    absl::MutexLock lock(&mu_);
    std::erase(streams_, s);
  }
  absl::Mutex mu_;
  std::vector<Stream*> streams_ ABSL_GUARDED_BY(mu_);
};

// Milliseconds for one assignment to reach each of `n` agents, per round.
std::vector<double> FanOutCeiling(int n, int rounds) {
  FanOutService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  std::vector<double> ms;
  {
    Fleet fleet(absl::StrCat("127.0.0.1:", port), n);
    for (int r = 0; r < rounds; ++r) {
      const int64_t target = fleet.counters.assigned + n;
      const auto start = Clock::now();
      service.Broadcast(r);
      if (AwaitCount(fleet.counters.assigned, target)) ms.push_back(MillisSince(start));
      absl::SleepFor(absl::Milliseconds(200));  // Let the agents' replies drain.
    }
  }
  server->Shutdown();
  return ms;
}

int Main() {
  const int n = absl::GetFlag(FLAGS_agents);
  const int rounds = absl::GetFlag(FLAGS_rounds);
  const double ceiling = Percentile(FanOutCeiling(n, rounds), 0.5);

  char tmpl[] = "/tmp/taskgrid-fleet-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const pid_t coordinator = bench::Spawn(
      {TASKGRID_COORDINATOR_BIN, "--grpc_address=127.0.0.1:0", "--metrics_address=",
       "--log_level=error", "--port_file=" + dir + "/ports", "--data_dir=" + dir,
       "--heartbeat_ttl=120s", absl::StrCat("--store=", absl::GetFlag(FLAGS_store))});
  const std::string address = absl::StrCat("127.0.0.1:", bench::ReadPort(dir + "/ports"));
  std::vector<double> started_ms, finished_ms, submit_ms, cpu_ms, tenth_ms;
  {
    Fleet fleet(address, n);
    auto stub =
        v1::TaskService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
    for (int r = 0; r < rounds; ++r) {
      absl::SleepFor(absl::Milliseconds(300));  // The previous run's acknowledgements settle.
      const RunTimes all = RunOnce(*stub, fleet.counters, coordinator, n, "100%");
      if (!all.ok) break;
      submit_ms.push_back(all.submit_ms);
      started_ms.push_back(all.started_ms);
      finished_ms.push_back(all.final_ms);
      cpu_ms.push_back(all.cpu_ms);
      absl::SleepFor(absl::Milliseconds(300));
      const RunTimes tenth = RunOnce(*stub, fleet.counters, coordinator, n, "10%");
      if (!tenth.ok) break;
      tenth_ms.push_back(tenth.final_ms);
    }
  }
  kill(coordinator, SIGTERM);
  waitpid(coordinator, nullptr, 0);
  std::filesystem::remove_all(dir);
  const double cpu = Percentile(cpu_ms, 0.5);
  bench::PrintFigures(
      "fleet",
      {{.name = "fleet.submit_to_all_started", .value = Percentile(started_ms, 0.5), .unit = "ms",
        .ceiling = ceiling, .goal = 1000, .lower_is_better = true},
       {.name = "fleet.submit_to_run_final", .value = Percentile(finished_ms, 0.5), .unit = "ms",
        .lower_is_better = true},
       {.name = "fleet.max_concurrency_10pct.submit_to_run_final",
        .value = Percentile(tenth_ms, 0.5), .unit = "ms", .lower_is_better = true},
       {.name = "fleet.submit_reply", .value = Percentile(submit_ms, 0.5), .unit = "ms",
        .lower_is_better = true},
       {.name = "fleet.coordinator_cpu_per_run", .value = cpu, .unit = "ms",
        .lower_is_better = true},
       {.name = "fleet.coordinator_cpu_per_target", .value = cpu * 1e3 / n, .unit = "us",
        .lower_is_better = true}});
  return 0;
}

}  // namespace
}  // namespace taskgrid

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return taskgrid::Main();
}
