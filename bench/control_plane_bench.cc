// Control-plane throughput: the real coordinator binary, simulated agents
// (bench/simulated_agent.h: each a real gRPC stream, finishing every task at
// once) and clients submitting in batches. A task counts once its agent got
// the acknowledgement of its finish, which the coordinator sends only after
// the final state is durable. Runs the same load on each store given, beside
// the machine's ceiling: a bare gRPC bidi echo of the same message sizes (one
// echoed item per task). Then, on one store, the latency: one task at a
// time, and at 10%, 50% and 90% of the throughput it measured.
//
//   control_plane_bench [--stores=memory,sqlite,postgres] [--tasks=100000]
//                       [--agents=8] [--slots=2000] [--submitters=4] [--batch=200]
//                       [--latency_store=sqlite]
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "bench/simulated_agent.h"
#include "services/common/testing/postgres_server.h"
#include "taskgrid/v1/agent.grpc.pb.h"
#include "taskgrid/v1/task_service.grpc.pb.h"

ABSL_FLAG(std::string, stores, "memory,sqlite,postgres", "Stores to measure, in order.");
ABSL_FLAG(int, tasks, 100000, "Tasks per store.");
ABSL_FLAG(int, agents, 8, "Simulated agents (one stream each).");
ABSL_FLAG(int, slots, 2000, "Slots per simulated agent.");
ABSL_FLAG(int, submitters, 4, "Concurrent submitting clients.");
ABSL_FLAG(int, batch, 200, "Tasks per SubmitBatch call (and items per echoed message).");
ABSL_FLAG(double, ceiling_seconds, 3, "Length of the echo ceiling measurement.");
ABSL_FLAG(std::string, latency_store, "sqlite",
          "Store whose latency is measured after its throughput: one task at a time, then at "
          "10%, 50% and 90% of the throughput measured.");
ABSL_FLAG(int, latency_tasks, 500, "Tasks submitted one at a time.");
ABSL_FLAG(double, latency_seconds, 3, "Length of each load level.");

namespace taskgrid {
namespace {

using bench::CpuSeconds;
using bench::ReadPort;
using bench::RssBytes;
using bench::Spawn;
using bench::AgentCounters;
using bench::Clock;
using bench::SimulatedAgent;
using bench::Timeline;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct Result {
  std::string store;
  double tasks_per_second = 0;
  double coordinator_cpu_us_per_task = 0;
  double coordinator_rss_bytes = 0;
  std::vector<bench::Figure> latency;
};

std::vector<bench::Figure> LatencyFigures(const std::string& prefix, std::vector<double> started,
                                          std::vector<double> finished) {
  std::vector<bench::Figure> f;
  for (const auto& [p, name] : std::vector<std::pair<double, std::string>>{
           {0.5, "p50"}, {0.99, "p99"}, {0.999, "p999"}}) {
    f.push_back({.name = prefix + ".submit_to_started_" + name,
                 .value = bench::Percentile(started, p), .unit = "ms", .lower_is_better = true});
    f.push_back({.name = prefix + ".submit_to_finished_" + name,
                 .value = bench::Percentile(finished, p), .unit = "ms", .lower_is_better = true});
  }
  return f;
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// One client submitting one task at a time: submit to started (the agent
// has the assignment) and to finished (the agent has the durable ack).
std::vector<bench::Figure> OneAtATime(v1::TaskService::Stub& stub, Timeline& timeline, int n) {
  std::vector<double> started, finished;
  bench::SubmitOneAtATime(stub, timeline, n, started, finished);
  auto f = LatencyFigures("latency.noop.one_at_a_time", started, finished);
  f[1].goal = 0.3;  // submit_to_finished_p50
  return f;
}

// Submits at `rate` tasks/s for `seconds` in small batches from 4 paced
// clients, then reports submit-to-started and submit-to-finished.
std::vector<bench::Figure> AtRate(v1::TaskService::Stub& stub, Timeline& timeline, double rate,
                                  double seconds, const std::string& prefix) {
  constexpr int kClients = 4;
  constexpr double kTick = 0.02;  // Each client submits every 20 ms.
  const int batch = std::max(1, static_cast<int>(rate * kTick / kClients + 0.5));
  absl::Mutex mu;
  std::vector<std::pair<std::string, Clock::time_point>> sent;
  std::vector<std::thread> clients;
  const auto start = Clock::now();
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      v1::SubmitBatchRequest req;
      for (int i = 0; i < batch; ++i) {
        req.add_requests()->mutable_spec()->mutable_shell()->add_argv("true");
      }
      auto next = start + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(kTick * c / kClients));
      while (Since(start) < seconds) {
        std::this_thread::sleep_until(next);
        next += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(kTick));
        grpc::ClientContext ctx;
        v1::SubmitBatchResponse resp;
        const auto t0 = Clock::now();
        if (!stub.SubmitBatch(&ctx, req, &resp).ok()) continue;
        absl::MutexLock lock(&mu);
        for (const auto& r : resp.results()) sent.emplace_back(r.response().task().id(), t0);
      }
    });
  }
  for (auto& t : clients) t.join();
  std::vector<double> started, finished;
  for (const auto& [id, t0] : sent) {
    if (auto t = timeline.Wait(id)) {
      started.push_back(Ms(t->started - t0));
      finished.push_back(Ms(t->finished - t0));
    }
  }
  std::fprintf(stderr, "%s: %.0f tasks/s offered, %zu tasks\n", prefix.c_str(), rate, sent.size());
  return LatencyFigures(prefix, started, finished);
}

Result RunStore(const std::string& store, const std::string& dir, bool latency) {
  const int tasks = absl::GetFlag(FLAGS_tasks);
  const int batch = absl::GetFlag(FLAGS_batch);
  const pid_t coordinator =
      Spawn({TASKGRID_COORDINATOR_BIN, "--grpc_address=127.0.0.1:0",
             "--metrics_address=", "--log_level=error", "--store=" + store,
             "--port_file=" + dir + "/ports", absl::StrCat("--max_retained_tasks=", tasks * 2)});
  const std::string address = absl::StrCat("127.0.0.1:", ReadPort(dir + "/ports"));
  std::filesystem::remove(dir + "/ports");

  auto agent_stub =
      v1::AgentService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  AgentCounters counters;
  Timeline timeline;
  std::vector<std::unique_ptr<SimulatedAgent>> agents;
  for (int a = 0; a < absl::GetFlag(FLAGS_agents); ++a) {
    agents.push_back(std::make_unique<SimulatedAgent>(*agent_stub, absl::StrCat("sim-", a),
                                                      absl::GetFlag(FLAGS_slots), counters,
                                                      timeline));
  }
  std::atomic<int64_t>& acked = counters.acked;
  while (counters.welcomed < absl::GetFlag(FLAGS_agents)) absl::SleepFor(absl::Milliseconds(5));

  auto stub =
      v1::TaskService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  v1::SubmitBatchRequest request;
  for (int i = 0; i < batch; ++i) {
    request.add_requests()->mutable_spec()->mutable_shell()->add_argv("true");
  }
  std::atomic<int> remaining{tasks / batch};
  std::atomic<int64_t> refused{0};
  const double cpu0 = CpuSeconds(coordinator);
  const auto start = Clock::now();
  std::vector<std::thread> submitters;
  for (int s = 0; s < absl::GetFlag(FLAGS_submitters); ++s) {
    submitters.emplace_back([&] {
      while (remaining.fetch_sub(1) > 0) {
        grpc::ClientContext ctx;
        v1::SubmitBatchResponse resp;
        if (!stub->SubmitBatch(&ctx, request, &resp).ok()) {
          refused += batch;
          continue;
        }
        for (const auto& r : resp.results()) refused += r.code() != 0;
      }
    });
  }
  for (auto& t : submitters) t.join();
  const int64_t total = static_cast<int64_t>(tasks / batch) * batch - refused;
  while (acked < total && Since(start) < 300) absl::SleepFor(absl::Milliseconds(1));
  const double seconds = Since(start);
  Result r;
  r.store = store.substr(0, store.find(':'));
  r.tasks_per_second = static_cast<double>(acked) / seconds;
  r.coordinator_cpu_us_per_task =
      (CpuSeconds(coordinator) - cpu0) * 1e6 / static_cast<double>(std::max<int64_t>(acked, 1));
  r.coordinator_rss_bytes = static_cast<double>(RssBytes(coordinator));
  if (refused > 0) std::fprintf(stderr, "%s: %ld submits refused\n", store.c_str(), refused.load());

  if (latency) {
    timeline.Record(true);
    r.latency = OneAtATime(*stub, timeline, absl::GetFlag(FLAGS_latency_tasks));
    for (int load : {10, 50, 90}) {
      auto f = AtRate(*stub, timeline, r.tasks_per_second * load / 100,
                      absl::GetFlag(FLAGS_latency_seconds), absl::StrCat("latency.noop.load", load));
      if (load == 10) f[2].goal = 2.0;  // submit_to_started_p99
      r.latency.insert(r.latency.end(), f.begin(), f.end());
    }
  }
  for (auto& a : agents) a->Stop();
  for (auto& a : agents) a->WaitDone();
  kill(coordinator, SIGTERM);
  waitpid(coordinator, nullptr, 0);
  return r;
}

// The ceiling: the same batches through a bare bidi stream that echoes each
// item, on as many streams as there are submitters.
class EchoService final : public v1::AgentService::CallbackService {
  grpc::ServerBidiReactor<v1::AgentBatch, v1::CoordinatorBatch>* Connect(
      grpc::CallbackServerContext*) override {
    class Echo final : public grpc::ServerBidiReactor<v1::AgentBatch, v1::CoordinatorBatch> {
     public:
      Echo() { StartRead(&in_); }
      void OnReadDone(bool ok) override {
        if (!ok) return Finish(grpc::Status::OK);
        out_.Clear();
        for (const auto& m : in_.messages()) {
          v1::Assign* a = out_.add_messages()->mutable_assign();
          a->set_task_id(m.started().task_id());
          a->set_attempt(m.started().attempt());
        }
        StartWrite(&out_);
      }
      void OnWriteDone(bool ok) override {
        if (!ok) return Finish(grpc::Status::OK);
        StartRead(&in_);
      }
      void OnDone() override { delete this; }

     private:
      v1::AgentBatch in_;
      v1::CoordinatorBatch out_;
    };
    return new Echo;
  }
};

double EchoCeiling() {
  EchoService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  auto stub = v1::AgentService::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  v1::AgentBatch batch;
  for (int i = 0; i < absl::GetFlag(FLAGS_batch); ++i) {
    v1::Started* s = batch.add_messages()->mutable_started();
    s->set_task_id("0f8a4c2e-5b7d-4e19-9a3c-6d2e8f1b7a90");
    s->set_attempt(1);
  }
  std::atomic<int64_t> items{0};
  const auto end =
      Clock::now() + std::chrono::duration<double>(absl::GetFlag(FLAGS_ceiling_seconds));
  const auto start = Clock::now();
  std::vector<std::thread> clients;
  for (int c = 0; c < absl::GetFlag(FLAGS_submitters); ++c) {
    clients.emplace_back([&] {
      grpc::ClientContext ctx;
      auto stream = stub->Connect(&ctx);
      v1::CoordinatorBatch echo;
      while (Clock::now() < end && stream->Write(batch) && stream->Read(&echo)) {
        items += echo.messages_size();
      }
      stream->WritesDone();
      stream->Finish().IgnoreError();
    });
  }
  for (auto& t : clients) t.join();
  const double rate = static_cast<double>(items) / Since(start);
  server->Shutdown();
  return rate;
}

int Main() {
  const double ceiling = EchoCeiling();
  char dir_template[] = "/tmp/taskgrid-bench-XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  std::unique_ptr<PostgresServer> postgres;
  std::vector<Result> results;
  for (const std::string& kind :
       std::vector<std::string>(absl::StrSplit(absl::GetFlag(FLAGS_stores), ','))) {
    std::string store = kind;
    if (kind == "sqlite") store = "sqlite:" + dir + "/bench.db";
    if (kind == "postgres") {
      postgres = PostgresServer::Start();
      if (postgres == nullptr || !postgres->CreateDatabase("bench")) return 1;
      store = postgres->Uri("bench");
    }
    results.push_back(RunStore(store, dir, kind == absl::GetFlag(FLAGS_latency_store)));
    std::fprintf(stderr, "%s: %.0f tasks/s\n", kind.c_str(), results.back().tasks_per_second);
  }
  postgres.reset();
  std::filesystem::remove_all(dir);

  std::vector<bench::Figure> figures;
  for (const Result& r : results) {
    figures.push_back({.name = absl::StrCat("control_plane.", r.store, ".tasks_per_second"),
                       .value = r.tasks_per_second, .unit = "tasks/s", .ceiling = ceiling,
                       .goal = 35000});
    figures.push_back({.name = absl::StrCat("control_plane.", r.store, ".coordinator_cpu_per_task"),
                       .value = r.coordinator_cpu_us_per_task, .unit = "us",
                       .lower_is_better = true});
  }
  for (const Result& r : results) figures.insert(figures.end(), r.latency.begin(), r.latency.end());
  bench::PrintFigures("control_plane", figures);
  return 0;
}

}  // namespace
}  // namespace taskgrid

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return taskgrid::Main();
}
