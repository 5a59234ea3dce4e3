// Control-plane throughput: the real coordinator binary, simulated agents
// (many agents in this process, each on its own real gRPC stream, finishing
// every task at once) and clients submitting in batches. A task counts once
// its agent got the acknowledgement of its finish, which the coordinator
// sends only after the final state is durable. Runs the same load on each
// store given, and beside it the machine's ceiling: a bare gRPC bidi echo of
// the same message sizes (one echoed item per task). Prints one JSON object.
//
//   control_plane_bench [--stores=memory,sqlite,postgres] [--tasks=200000]
//                       [--agents=8] [--slots=2000] [--submitters=4] [--batch=200]
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
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "services/common/testing/postgres_server.h"
#include "taskgrid/v1/agent.grpc.pb.h"
#include "taskgrid/v1/task_service.grpc.pb.h"

ABSL_FLAG(std::string, stores, "memory,sqlite,postgres", "Stores to measure, in order.");
ABSL_FLAG(int, tasks, 200000, "Tasks per store.");
ABSL_FLAG(int, agents, 8, "Simulated agents (one stream each).");
ABSL_FLAG(int, slots, 2000, "Slots per simulated agent.");
ABSL_FLAG(int, submitters, 4, "Concurrent submitting clients.");
ABSL_FLAG(int, batch, 200, "Tasks per SubmitBatch call (and items per echoed message).");
ABSL_FLAG(double, ceiling_seconds, 3, "Length of the echo ceiling measurement.");

namespace taskgrid {
namespace {

using bench::CpuSeconds;
using bench::ReadPort;
using bench::RssBytes;
using bench::Spawn;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// One simulated agent: starts and finishes every assigned task at once and
// counts the coordinator's durable acknowledgements of those finishes.
void RunAgent(const std::string& address, const std::string& id, int slots,
              std::atomic<int64_t>& acked, std::atomic<bool>& stop) {
  auto stub =
      v1::AgentService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  auto stream = stub->Connect(&ctx);
  v1::AgentBatch hello;
  v1::Hello* h = hello.add_messages()->mutable_hello();
  h->set_agent_id(id);
  h->set_slots(static_cast<uint32_t>(slots));
  h->set_version("bench");
  stream->Write(hello);
  std::thread canceller([&] {
    while (!stop) absl::SleepFor(absl::Milliseconds(20));
    ctx.TryCancel();
  });
  v1::CoordinatorBatch in;
  v1::AgentBatch out;
  while (stream->Read(&in)) {
    out.Clear();
    for (const v1::CoordinatorMessage& m : in.messages()) {
      if (m.has_assign()) {
        v1::Started* s = out.add_messages()->mutable_started();
        s->set_task_id(m.assign().task_id());
        s->set_attempt(m.assign().attempt());
        s->set_pid(1);
        v1::Finished* f = out.add_messages()->mutable_finished();
        f->set_task_id(m.assign().task_id());
        f->set_attempt(m.assign().attempt());
      } else if (m.has_ack() && m.ack().finished()) {
        acked.fetch_add(1, std::memory_order_relaxed);
      }
    }
    if (out.messages_size() > 0 && !stream->Write(out)) break;
  }
  canceller.join();
}

struct Result {
  std::string store;
  double tasks_per_second = 0;
  double coordinator_cpu_us_per_task = 0;
  double coordinator_rss_bytes = 0;
};

Result RunStore(const std::string& store, const std::string& dir) {
  const int tasks = absl::GetFlag(FLAGS_tasks);
  const int batch = absl::GetFlag(FLAGS_batch);
  const pid_t coordinator =
      Spawn({TASKGRID_COORDINATOR_BIN, "--grpc_address=127.0.0.1:0",
             "--metrics_address=", "--log_level=error", "--store=" + store,
             "--port_file=" + dir + "/ports", absl::StrCat("--max_retained_tasks=", tasks * 2)});
  const std::string address = absl::StrCat("127.0.0.1:", ReadPort(dir + "/ports"));
  std::filesystem::remove(dir + "/ports");

  std::atomic<int64_t> acked{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> agents;
  for (int a = 0; a < absl::GetFlag(FLAGS_agents); ++a) {
    agents.emplace_back(RunAgent, address, absl::StrCat("sim-", a), absl::GetFlag(FLAGS_slots),
                        std::ref(acked), std::ref(stop));
  }
  absl::SleepFor(absl::Milliseconds(300));  // Agents connected.

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
  stop = true;
  for (auto& t : agents) t.join();
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
    results.push_back(RunStore(store, dir));
    std::fprintf(stderr, "%s: %.0f tasks/s\n", kind.c_str(), results.back().tasks_per_second);
  }
  postgres.reset();
  std::filesystem::remove_all(dir);

  double memory_rate = 0;
  for (const Result& r : results) {
    if (r.store == "memory") memory_rate = r.tasks_per_second;
  }
  std::vector<std::string> rows;
  for (const Result& r : results) {
    rows.push_back(absl::StrFormat(
        "    {\"store\": \"%s\", \"tasks_per_second\": %.0f, \"ratio_to_ceiling\": %.3f, "
        "\"ratio_to_memory_store\": %.3f, \"coordinator_cpu_us_per_task\": %.1f, "
        "\"coordinator_rss_mib\": %.1f}",
        r.store, r.tasks_per_second, r.tasks_per_second / ceiling,
        memory_rate > 0 ? r.tasks_per_second / memory_rate : 0.0, r.coordinator_cpu_us_per_task,
        r.coordinator_rss_bytes / (1 << 20)));
  }
  std::printf(
      "{\n  \"benchmark\": \"control_plane\",\n  \"tasks\": %d, \"agents\": %d, \"submitters\": "
      "%d, "
      "\"batch\": %d,\n  \"ceiling_grpc_bidi_echo_items_per_second\": %.0f,\n"
      "  \"goal_tasks_per_second\": 35000,\n  \"results\": [\n%s\n  ]\n}\n",
      absl::GetFlag(FLAGS_tasks), absl::GetFlag(FLAGS_agents), absl::GetFlag(FLAGS_submitters),
      absl::GetFlag(FLAGS_batch), ceiling, absl::StrJoin(rows, ",\n").c_str());
  return 0;
}

}  // namespace
}  // namespace taskgrid

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return taskgrid::Main();
}
