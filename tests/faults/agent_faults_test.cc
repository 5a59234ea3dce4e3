// Agent faults: the real coordinator and agent binaries; an agent killed with
// SIGKILL mid-task, the agent-coordinator link cut and restored through a
// proxy the test controls, an Assign lost in the link as the coordinator is
// killed, and a thousand agents reconnecting at once.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "services/agent/agent.h"
#include "services/agent/posix_process_runner.h"
#include "tests/faults/fault_cluster.h"
#include "tests/faults/tcp_proxy.h"

namespace taskgrid {
namespace {

using AgentFaultsTest = FaultCluster;

bool IsRunning(const v1::Task& t) { return t.status() == v1::TASK_STATUS_RUNNING; }

int LinesIn(const std::filesystem::path& file) {
  std::ifstream in(file);
  int n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

// Proves: a task whose agent dies is lost within the heartbeat TTL, and with
// a retry policy runs again exactly once more, elsewhere, to one final state
// with only the new attempt's output.
TEST_F(AgentFaultsTest, AgentKilledMidTaskRunsExactlyOnceMore) {
  StartCoordinator();
  StartAgent("kill-a1", 1);
  StartAgent("kill-a2", 1);
  ASSERT_TRUE(WaitAgents(2));
  const std::filesystem::path runs = dir_ / "runs";
  const std::string id =
      Submit(absl::StrCat("echo run >> ", runs.string(), "; echo start; sleep 2; echo end"),
             absl::Seconds(60), /*max_attempts=*/3);
  const v1::Task running = WaitTask(id, IsRunning, absl::Seconds(20));
  ASSERT_TRUE(IsRunning(running)) << running.DebugString();
  const int victim = running.agent_id() == "kill-a1" ? 0 : 1;
  const absl::Time killed_at = absl::Now();
  agents_[victim]->Kill(SIGKILL);

  const WatchedTask w = Watch(id);
  const v1::Task t = Get(id);
  EXPECT_EQ(t.status(), v1::TASK_STATUS_SUCCEEDED) << t.DebugString();
  EXPECT_EQ(t.attempt(), 2u);
  EXPECT_NE(t.agent_id(), running.agent_id());
  std::printf("lost task running again %.2f s after the kill (heartbeat TTL 2 s)\n",
              absl::ToDoubleSeconds(absl::Now() - killed_at));
  EXPECT_EQ(w.running_attempts, (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(std::count_if(w.statuses.begin(), w.statuses.end(), IsFinalStatus), 1);
  EXPECT_EQ(w.out[0], "start\nend\n");
  EXPECT_TRUE(w.contiguous);
  int64_t dropped = 0;
  EXPECT_EQ(client_->ReadOutput(id, v1::OUTPUT_STREAM_STDOUT, &dropped), "start\nend\n");
  EXPECT_EQ(LinesIn(runs), 2) << "the command ran a number of times other than twice";
}

// Proves: without a retry policy the same fault ends the task LOST, once,
// within the TTL, and the agent coming back does not revive it.
TEST_F(AgentFaultsTest, AgentKilledWithoutRetryIsLostOnce) {
  StartCoordinator();
  ChildProcess& agent = StartAgent("lost-a1", 1);
  ASSERT_TRUE(WaitAgents(1));
  const std::string id = Submit("echo start; sleep 30");
  ASSERT_TRUE(IsRunning(WaitTask(id, IsRunning, absl::Seconds(20))));
  agent.Kill(SIGKILL);
  const v1::Task lost = WaitFinal(id, absl::Seconds(20));
  EXPECT_EQ(lost.status(), v1::TASK_STATUS_LOST) << lost.DebugString();
  ASSERT_TRUE(agent.Start());
  ASSERT_TRUE(WaitAgents(1));
  EXPECT_EQ(Get(id).status(), v1::TASK_STATUS_LOST);
  EXPECT_EQ(Get(id).attempt(), 1u);
}

// Proves: cutting the agent's link twice mid-task loses and repeats nothing:
// the agent reconnects with backoff, resends what was not acknowledged, and
// a watcher sees every byte once, in order.
TEST_F(AgentFaultsTest, LinkCutAndRestoredLosesAndRepeatsNothing) {
  StartCoordinator({"--heartbeat_ttl=30s"});
  TcpProxy proxy(port_);
  StartAgent("link-a1", 2, absl::StrCat("127.0.0.1:", proxy.port()));
  ASSERT_TRUE(WaitAgents(1));
  const std::string id = Submit(
      "for i in $(seq 1 80); do echo line-$i; echo err-$i >&2; sleep 0.05; done; "
      "head -c 3000000 /dev/zero | tr '\\0' x");
  WatchedTask w;
  std::thread watcher([&] { w = Watch(id); });
  ASSERT_TRUE(IsRunning(WaitTask(id, IsRunning, absl::Seconds(20))));
  for (int cut = 0; cut < 2; ++cut) {
    absl::SleepFor(absl::Milliseconds(700));
    proxy.Cut();
    EXPECT_TRUE(WaitAgents(0, absl::Seconds(10))) << "coordinator did not notice the cut";
    absl::SleepFor(absl::Milliseconds(800));  // The task keeps writing meanwhile.
    proxy.Restore();
    EXPECT_TRUE(WaitAgents(1, absl::Seconds(20))) << "agent did not reconnect";
  }
  watcher.join();

  std::string out, err;
  for (int i = 1; i <= 80; ++i) {
    absl::StrAppend(&out, "line-", i, "\n");
    absl::StrAppend(&err, "err-", i, "\n");
  }
  out += std::string(3000000, 'x');
  const v1::Task t = WaitFinal(id);
  EXPECT_EQ(t.status(), v1::TASK_STATUS_SUCCEEDED) << t.DebugString();
  EXPECT_EQ(t.attempt(), 1u);
  EXPECT_GE(proxy.accepted(), 3);
  EXPECT_TRUE(w.contiguous) << "a byte was missed or repeated";
  EXPECT_EQ(w.out[0].size(), out.size());
  EXPECT_TRUE(w.out[0] == out) << "stdout differs";
  EXPECT_EQ(w.out[1], err);
  int64_t dropped = 0;
  EXPECT_EQ(client_->ReadOutput(id, v1::OUTPUT_STREAM_STDERR, &dropped), err);
}

// Proves: a task dispatched just before the coordinator is killed, whose
// Assign never reached the agent, runs once after the restart instead of
// being lost: the agent, the same process as before, does not hold it, so
// it never ran.
TEST_F(AgentFaultsTest, DispatchLostInACoordinatorCrashRunsOnceAfterTheRestart) {
  StartCoordinator({"--heartbeat_ttl=30s"});
  TcpProxy proxy(port_);
  StartAgent("crash-a1", 2, absl::StrCat("127.0.0.1:", proxy.port()));
  ASSERT_TRUE(WaitAgents(1));
  const std::string marker = (dir_ / "runs").string();
  proxy.DropDownstream(true);
  const std::string id = Submit("echo run >> " + marker + "; echo ran");
  // The Assign leaves only once the dispatch is durable; it is lost in the link.
  ASSERT_TRUE(WaitFor([&] { return proxy.dropped_bytes() > 0; }, absl::Seconds(10)));
  ASSERT_EQ(Get(id).status(), v1::TASK_STATUS_DISPATCHED);
  coordinator_->Kill(SIGKILL);
  proxy.Cut();
  proxy.DropDownstream(false);
  ASSERT_TRUE(coordinator_->Start());
  proxy.Restore();
  const v1::Task t = WaitFinal(id);
  EXPECT_EQ(t.status(), v1::TASK_STATUS_SUCCEEDED) << t.DebugString();
  EXPECT_EQ(t.attempt(), 2u);
  EXPECT_EQ(t.undelivered(), 1u);
  EXPECT_EQ(LinesIn(marker), 1);  // It ran once.
  int64_t dropped = 0;
  EXPECT_EQ(client_->ReadOutput(id, v1::OUTPUT_STREAM_STDOUT, &dropped), "ran\n");
}

// Proves: when a coordinator restart drops a thousand agents at once (real
// Agent objects in this process, sharing one connection), their jittered
// backoff brings them all back while the coordinator keeps answering
// clients. The Get latencies are printed as evidence; the test
// asserts only that every Get was answered.
TEST_F(AgentFaultsTest, ReconnectStormOfAThousandAgents) {
  constexpr int kAgents = 1000;
  spdlog::set_level(spdlog::level::warn);  // A thousand agents log each connection.
  StartCoordinator({"--heartbeat_interval=5s", "--heartbeat_ttl=60s"});
  PosixProcessRunner runner;
  std::vector<std::unique_ptr<Agent>> agents;
  for (int i = 0; i < kAgents; ++i) {
    AgentOptions o;
    o.coordinator_address = address_;
    o.agent_id = absl::StrCat("storm-", i);
    o.slots = 1;
    o.spool_dir = dir_.string();
    o.reconnect_min = absl::Milliseconds(100);
    o.reconnect_max = absl::Seconds(2);
    agents.push_back(std::make_unique<Agent>(o, runner, nullptr));
    agents.back()->Start();
  }
  ASSERT_TRUE(WaitAgents(kAgents, absl::Seconds(60)));
  const std::string id = Submit("echo probe");
  ASSERT_EQ(WaitFinal(id).status(), v1::TASK_STATUS_SUCCEEDED);

  coordinator_->Kill(SIGKILL);
  ASSERT_TRUE(coordinator_->Start());
  ASSERT_TRUE(WaitFor([&] { return client_->Unfinished() == 0; }, absl::Seconds(20)));
  std::vector<double> ms;
  int connected = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  for (int round = 0; (connected < kAgents || round < 200) && absl::Now() < deadline; ++round) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::GetRequest req;
    req.set_task_id(id);
    v1::Task t;
    const absl::Time start = absl::Now();
    const grpc::Status s = client_->stub().Get(&ctx, req, &t);
    ASSERT_TRUE(s.ok()) << "Get during the storm: " << s.error_message();
    ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
    absl::SleepFor(absl::Milliseconds(10));
    if (round % 20 == 0) connected = client_->ConnectedAgents();
  }
  EXPECT_EQ(connected, kAgents) << "not every agent reconnected within 60 s";
  std::sort(ms.begin(), ms.end());
  std::printf("storm: %zu Gets while %d agents reconnected: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
              ms.size(), kAgents, ms[ms.size() / 2], ms[ms.size() * 99 / 100], ms.back());
  agents.clear();
}

}  // namespace
}  // namespace taskgrid
