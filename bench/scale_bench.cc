// Scale and growth: the real coordinator binary (SQLite store) with 10,000
// simulated agents connected (each its own gRPC stream, 64 per connection)
// and then 1,000,000 retained tasks. Measures the coordinator's RSS per
// connected agent, its CPU per heartbeat, its RSS per retained finished task,
// the throughput with the whole fleet; then, with 8 of the agents, at 1k,
// 10k, 100k and 1M retained tasks, the throughput of a fixed batch and
// one-at-a-time submit-to-finished latency: the cost of a task must not grow
// with history.
//
//   scale_bench [--agents=10000] [--tasks=1000000] [--chunk=20000]
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
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "bench/simulated_agent.h"
#include "taskgrid/v1/task_service.grpc.pb.h"

ABSL_FLAG(int, agents, 10000, "Simulated agents kept connected.");
ABSL_FLAG(int, tasks, 1000000, "Retained tasks at the last growth step.");
ABSL_FLAG(int, chunk, 20000, "Tasks whose throughput is measured at each growth step.");
ABSL_FLAG(int, probes, 300, "One-at-a-time tasks at each growth step.");
ABSL_FLAG(double, heartbeat_seconds, 10, "Length of the heartbeat cost measurement.");

namespace taskgrid {
namespace {

using bench::AgentCounters;
using bench::Clock;
using bench::CpuSeconds;
using bench::Figure;
using bench::Percentile;
using bench::RssBytes;
using bench::SimulatedAgent;
using bench::Timeline;

constexpr int kAgentsPerConnection = 64;
constexpr size_t kGrowthAgents = 8;
constexpr absl::Duration kHeartbeat = absl::Seconds(2);

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Submits `n` no-op tasks in batches of 500 from 4 clients and waits until
// every finish is acknowledged; returns tasks/s.
double SubmitAll(v1::TaskService::Stub& stub, AgentCounters& counters, int64_t n) {
  constexpr int kBatch = 500;
  const int64_t target = counters.acked + n;
  std::atomic<int64_t> remaining{n};
  const auto start = Clock::now();
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&] {
      for (;;) {
        const int64_t take = std::min<int64_t>(kBatch, remaining.fetch_sub(kBatch));
        if (take <= 0) return;
        v1::SubmitBatchRequest req;
        for (int64_t i = 0; i < take; ++i) {
          req.add_requests()->mutable_spec()->mutable_shell()->add_argv("true");
        }
        grpc::ClientContext ctx;
        v1::SubmitBatchResponse resp;
        if (!stub.SubmitBatch(&ctx, req, &resp).ok()) std::fprintf(stderr, "batch refused\n");
      }
    });
  }
  for (auto& t : clients) t.join();
  while (counters.acked < target && Since(start) < 600) absl::SleepFor(absl::Milliseconds(2));
  return static_cast<double>(n) / Since(start);
}

int Main() {
  const int agent_count = absl::GetFlag(FLAGS_agents);
  const int64_t tasks = absl::GetFlag(FLAGS_tasks);
  char tmpl[] = "/tmp/taskgrid-scale-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const pid_t coordinator = bench::Spawn(
      {TASKGRID_COORDINATOR_BIN, "--grpc_address=127.0.0.1:0", "--metrics_address=",
       "--log_level=error", "--port_file=" + dir + "/ports", "--data_dir=" + dir,
       "--heartbeat_interval=2s", "--heartbeat_ttl=30s",
       absl::StrCat("--max_retained_tasks=", tasks * 2)});
  const std::string address = absl::StrCat("127.0.0.1:", bench::ReadPort(dir + "/ports"));
  absl::SleepFor(absl::Milliseconds(300));
  const int64_t rss_empty = RssBytes(coordinator);

  // Agents, spread over connections as a fleet's would be.
  std::vector<std::unique_ptr<v1::AgentService::Stub>> stubs;
  const int connections = (agent_count + kAgentsPerConnection - 1) / kAgentsPerConnection;
  for (int c = 0; c < connections; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("taskgrid.bench.connection", c);  // Distinct args: a connection each.
    stubs.push_back(v1::AgentService::NewStub(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args)));
  }
  AgentCounters counters;
  Timeline timeline;
  std::vector<std::unique_ptr<SimulatedAgent>> agents;
  const auto connect_start = Clock::now();
  for (int a = 0; a < agent_count; ++a) {
    agents.push_back(std::make_unique<SimulatedAgent>(*stubs[a % connections],
                                                      absl::StrCat("scale-", a), 100, counters,
                                                      timeline));
  }
  while (counters.welcomed < agent_count && Since(connect_start) < 120) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  const double connect_seconds = Since(connect_start);
  std::fprintf(stderr, "%lld agents welcomed in %.1f s\n",
               static_cast<long long>(counters.welcomed.load()), connect_seconds);
  std::atomic<bool> stop{false};
  auto beat = [&] {
    while (!stop) {
      const absl::Time next = absl::Now() + kHeartbeat;
      for (auto& a : agents) a->Heartbeat();
      while (!stop && absl::Now() < next) absl::SleepFor(absl::Milliseconds(20));
    }
  };
  std::thread heartbeats(beat);
  absl::SleepFor(absl::Seconds(3));
  const int64_t rss_agents = RssBytes(coordinator);

  // Heartbeat cost: the coordinator's CPU while agents only heartbeat.
  const double cpu0 = CpuSeconds(coordinator);
  const int64_t beats0 = counters.heartbeats;
  absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_heartbeat_seconds)));
  const double heartbeat_us = (CpuSeconds(coordinator) - cpu0) * 1e6 /
                              static_cast<double>(std::max<int64_t>(1, counters.heartbeats - beats0));

  // Growth: a fixed chunk's throughput and one-at-a-time latency at each
  // step of retained history.
  auto stub =
      v1::TaskService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  std::vector<Figure> figures = {
      {.name = "scale.agents_connected", .value = static_cast<double>(counters.welcomed),
       .unit = "agents", .goal = static_cast<double>(agent_count)},
      {.name = "scale.agents_connect_seconds", .value = connect_seconds, .unit = "s",
       .lower_is_better = true},
      {.name = "scale.rss_per_connected_agent",
       .value = static_cast<double>(rss_agents - rss_empty) / agent_count, .unit = "B",
       .goal = 100 * 1024, .lower_is_better = true},
      {.name = "scale.cpu_per_heartbeat", .value = heartbeat_us, .unit = "us",
       .lower_is_better = true}};
  timeline.Record(false);
  const double fleet_rate = SubmitAll(*stub, counters, absl::GetFlag(FLAGS_chunk));
  figures.push_back({.name = "scale.tasks_per_second_with_all_agents", .value = fleet_rate,
                     .unit = "tasks/s"});
  // Growth runs on the first kGrowthAgents agents alone, so that filling a
  // million tasks is not paced by the fleet's heartbeats.
  stop = true;
  heartbeats.join();
  for (size_t a = kGrowthAgents; a < agents.size(); ++a) agents[a]->Stop();
  for (size_t a = kGrowthAgents; a < agents.size(); ++a) agents[a]->WaitDone();
  agents.resize(kGrowthAgents);
  stop = false;
  heartbeats = std::thread(beat);
  for (int connected = -1; connected != static_cast<int>(kGrowthAgents);) {
    grpc::ClientContext ctx;
    v1::ListAgentsResponse list;
    connected = 0;
    if (stub->ListAgents(&ctx, {}, &list).ok()) {
      for (const auto& a : list.agents()) connected += a.connected();
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  const int64_t rss_before_tasks = RssBytes(coordinator);
  int64_t retained = absl::GetFlag(FLAGS_chunk);
  timeline.Record(true);
  for (int64_t step : {int64_t{1000}, int64_t{10000}, int64_t{100000}, int64_t{1000000}}) {
    if (step > tasks) break;
    if (retained < step) SubmitAll(*stub, counters, step - retained);
    retained = step;
    timeline.Record(false);
    const double rate = SubmitAll(*stub, counters, absl::GetFlag(FLAGS_chunk));
    timeline.Record(true);
    std::vector<double> started, ms;
    bench::SubmitOneAtATime(*stub, timeline, absl::GetFlag(FLAGS_probes), started, ms);
    retained += absl::GetFlag(FLAGS_chunk) + absl::GetFlag(FLAGS_probes);
    std::fprintf(stderr, "%lld retained: %.0f tasks/s, p99 %.2f ms\n",
                 static_cast<long long>(step), rate, Percentile(ms, 0.99));
    const std::string prefix = absl::StrCat("growth.retained_", step);
    figures.push_back({.name = prefix + ".tasks_per_second", .value = rate, .unit = "tasks/s"});
    figures.push_back({.name = prefix + ".submit_to_finished_p50", .value = Percentile(ms, 0.5),
                       .unit = "ms", .lower_is_better = true});
    figures.push_back({.name = prefix + ".submit_to_finished_p99", .value = Percentile(ms, 0.99),
                       .unit = "ms", .lower_is_better = true});
  }
  figures.push_back({.name = "scale.rss_per_retained_task",
                     .value = static_cast<double>(RssBytes(coordinator) - rss_before_tasks) /
                              static_cast<double>(std::max<int64_t>(1, retained)),
                     .unit = "B", .goal = 1024, .lower_is_better = true});

  stop = true;
  heartbeats.join();
  for (auto& a : agents) a->Stop();
  for (auto& a : agents) a->WaitDone();
  kill(coordinator, SIGTERM);
  waitpid(coordinator, nullptr, 0);
  std::filesystem::remove_all(dir);
  bench::PrintFigures("scale", figures);
  return 0;
}

}  // namespace
}  // namespace taskgrid

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return taskgrid::Main();
}
