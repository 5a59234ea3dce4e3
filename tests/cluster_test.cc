// Cross-service tests: a real coordinator (gRPC on 127.0.0.1, port 0), real
// agents running real processes, a real client stub. Time-based behaviour
// (timeouts, the heartbeat TTL) runs on a FakeClock the test advances.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "services/agent/agent.h"
#include "services/agent/posix_process_runner.h"
#include "services/common/testing/fake_clock.h"
#include "services/common/testing/test_util.h"
#include "services/coordinator/coordinator.h"
#include "taskgrid/v1/task_service.grpc.pb.h"

extern char** environ;

namespace taskgrid {
namespace {

using ::testing::HasSubstr;

// Collects a task's output from Watch events, checking offsets are
// contiguous: nothing lost, nothing repeated.
struct WatchedOutput {
  std::string out[2];
  bool contiguous = true;
  v1::TaskStatus final_status = v1::TASK_STATUS_UNSPECIFIED;
};

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CoordinatorOptions o;
    o.grpc_address = "127.0.0.1:0";
    o.metrics_address = "";
    o.tick_interval = absl::ZeroDuration();  // The test ticks.
    o.registry.heartbeat_ttl = absl::Seconds(15);
    auto c = Coordinator::Start(o, clock_);
    ASSERT_TRUE(c.ok()) << c.status();
    coordinator_ = std::move(*c);
    address_ = absl::StrCat("127.0.0.1:", coordinator_->grpc_port());
    stub_ =
        v1::TaskService::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    agents_.clear();
    for (pid_t pid : agent_pids_) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    coordinator_.reset();
  }

  Agent& StartAgent(const std::string& id, uint32_t slots = 4, ProcessRunner* runner = nullptr) {
    AgentOptions o;
    o.coordinator_address = address_;
    o.agent_id = id;
    o.slots = slots;
    o.reconnect_min = absl::Milliseconds(20);
    o.reconnect_max = absl::Milliseconds(200);
    auto agent = std::make_unique<Agent>(o, runner ? *runner : runner_, nullptr);
    agent->Start();
    Agent& ref = *agent;
    agents_.push_back(std::move(agent));
    EXPECT_TRUE(WaitFor([&] { return ref.connected(); }));
    return ref;
  }

  pid_t StartAgentProcess(const std::string& id) {
    const std::string coordinator_flag = "--coordinator=" + address_;
    const std::string id_flag = "--agent_id=" + id;
    std::vector<const char*> argv = {
        TASKGRID_AGENT_BIN,   coordinator_flag.c_str(), id_flag.c_str(),
        "--metrics_address=", "--log_level=warn",       nullptr};
    pid_t pid = 0;
    EXPECT_EQ(posix_spawn(&pid, TASKGRID_AGENT_BIN, nullptr, nullptr,
                          const_cast<char* const*>(argv.data()), environ),
              0);
    agent_pids_.push_back(pid);
    EXPECT_TRUE(WaitFor([&] { return AgentConnected(id); }));
    return pid;
  }

  bool AgentConnected(const std::string& id) {
    v1::ListAgentsResponse resp;
    grpc::ClientContext ctx;
    stub_->ListAgents(&ctx, v1::ListAgentsRequest(), &resp);
    for (const auto& a : resp.agents()) {
      if (a.agent_id() == id) return a.connected();
    }
    return false;
  }

  v1::SubmitResponse Submit(const std::string& command, absl::Duration timeout = absl::Minutes(5)) {
    v1::SubmitRequest req;
    req.mutable_spec()->mutable_shell()->set_command(command);
    req.mutable_spec()->mutable_timeout()->set_seconds(absl::ToInt64Seconds(timeout));
    v1::SubmitResponse resp;
    grpc::ClientContext ctx;
    grpc::Status s = stub_->Submit(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  v1::Task Get(const std::string& id) {
    v1::GetRequest req;
    req.set_task_id(id);
    v1::Task t;
    grpc::ClientContext ctx;
    stub_->Get(&ctx, req, &t);
    return t;
  }

  bool WaitForStatus(const std::string& id, v1::TaskStatus status,
                     absl::Duration timeout = absl::Seconds(20)) {
    return WaitFor([&] { return Get(id).status() == status; }, timeout);
  }

  // Follows the task's events from `after` until it is final.
  WatchedOutput Watch(const std::string& id, uint64_t after) {
    WatchedOutput w;
    v1::WatchRequest req;
    req.set_task_id(id);
    req.set_after_cursor(after);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto reader = stub_->Watch(&ctx, req);
    v1::WatchResponse batch;
    while (reader->Read(&batch)) {
      for (const v1::TaskEvent& e : batch.events()) {
        if (e.type() == v1::EVENT_TYPE_TASK_LOG) {
          const int i = e.output().stream() == v1::OUTPUT_STREAM_STDERR ? 1 : 0;
          if (e.output().offset() != static_cast<int64_t>(w.out[i].size())) w.contiguous = false;
          w.out[i] += e.output().data();
        } else if (e.type() == v1::EVENT_TYPE_RESYNC) {
          w.contiguous = false;
        } else if (e.has_task() && IsFinal(e.task().status())) {
          w.final_status = e.task().status();
          ctx.TryCancel();
        }
      }
    }
    return w;
  }

  std::string OutputOf(const std::string& id) {
    std::string all;
    for (;;) {
      v1::GetOutputRequest req;
      req.set_task_id(id);
      req.set_stream(v1::OUTPUT_STREAM_STDOUT);
      req.set_offset(static_cast<int64_t>(all.size()));
      v1::GetOutputResponse resp;
      grpc::ClientContext ctx;
      if (!stub_->GetOutput(&ctx, req, &resp).ok() || resp.data().empty()) return all;
      all += resp.data();
    }
  }

  FakeClock clock_;
  PosixProcessRunner runner_;
  std::unique_ptr<Coordinator> coordinator_;
  std::string address_;
  std::unique_ptr<v1::TaskService::Stub> stub_;
  std::vector<std::unique_ptr<Agent>> agents_;
  std::vector<pid_t> agent_pids_;
};

std::string Numbers(int n) {
  std::string s;
  for (int i = 1; i <= n; ++i) absl::StrAppend(&s, i, "\n");
  return s;
}

TEST_F(ClusterTest, TenMegabytesArriveByteExactAndInOrder) {
  StartAgent("a1");
  // seq 1 1400000 prints about 10.2 MB.
  auto resp = Submit("seq 1 1400000; echo done >&2");
  WatchedOutput w = Watch(resp.task().id(), resp.cursor());
  EXPECT_EQ(w.final_status, v1::TASK_STATUS_SUCCEEDED);
  EXPECT_TRUE(w.contiguous);
  const std::string expected = Numbers(1400000);
  ASSERT_GT(expected.size(), 10'000'000u);
  EXPECT_EQ(w.out[0].size(), expected.size());
  EXPECT_TRUE(w.out[0] == expected);
  EXPECT_EQ(w.out[1], "done\n");
  v1::Task t = Get(resp.task().id());
  EXPECT_EQ(t.stdout().total_bytes(), static_cast<int64_t>(expected.size()));
  EXPECT_GT(t.stdout().dropped_bytes(), 0);  // Beyond the 4 MiB retention cap.
}

TEST_F(ClusterTest, ReplayFromACursorIsByteExact) {
  StartAgent("a1");
  // All events are in the log before the watch starts, so replies fill
  // whole batches (1 MiB) back to back.
  auto resp = Submit("seq 1 400000");
  ASSERT_TRUE(WaitForStatus(resp.task().id(), v1::TASK_STATUS_SUCCEEDED));
  WatchedOutput w = Watch(resp.task().id(), resp.cursor());
  EXPECT_TRUE(w.contiguous);
  EXPECT_TRUE(w.out[0] == Numbers(400000));
  EXPECT_EQ(w.final_status, v1::TASK_STATUS_SUCCEEDED);
}

TEST_F(ClusterTest, CancelKillsTheWholeProcessTree) {
  Agent& agent = StartAgent("a1");
  auto resp = Submit("sleep 1000 & echo $!; sleep 1000 & echo $!; wait");
  const std::string id = resp.task().id();
  ASSERT_TRUE(WaitFor([&] {
    const std::string out = OutputOf(id);
    return std::count(out.begin(), out.end(), '\n') == 2;
  })) << "output so far: "
      << OutputOf(id) << " task: " << Get(id).DebugString();
  std::vector<pid_t> pids = ParsePids(OutputOf(id));
  ASSERT_EQ(pids.size(), 2u) << OutputOf(id);
  const pid_t shell = static_cast<pid_t>(Get(id).pid());
  ASSERT_GT(shell, 0);
  v1::CancelRequest cancel;
  cancel.set_task_id(id);
  v1::Task after;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->Cancel(&ctx, cancel, &after).ok());
  EXPECT_EQ(after.status(), v1::TASK_STATUS_CANCELLED);
  pids.push_back(shell);
  for (pid_t pid : pids) {
    EXPECT_TRUE(WaitFor([&] { return ProcessGone(pid); })) << "pid " << pid << " survived";
  }
  EXPECT_TRUE(WaitFor([&] { return agent.held_tasks() == 0; }));
  EXPECT_EQ(Get(id).status(), v1::TASK_STATUS_CANCELLED);  // Still final.
  EXPECT_EQ(Get(id).exit().signal(), SIGTERM);
}

// The real runner, each spawn held until the test opens the gate.
class GatedRunner final : public ProcessRunner {
 public:
  absl::StatusOr<std::unique_ptr<RunningProcess>> Start(const ProcessSpec& spec,
                                                        OutputCallback on_output,
                                                        ExitCallback on_exit) override {
    {
      absl::MutexLock lock(&mu_);
      ++waiting_;
      mu_.Await(absl::Condition(&open_));
      --waiting_;
    }
    return inner_.Start(spec, std::move(on_output), std::move(on_exit));
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }
  bool waiting() {
    absl::MutexLock lock(&mu_);
    return waiting_ > 0;
  }

 private:
  PosixProcessRunner inner_;
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
};

// A spawn runs without the agent's lock; a cancel that arrives meanwhile
// kills the process as soon as it exists.
TEST_F(ClusterTest, ACancelDuringTheSpawnKillsTheProcessOnceItExists) {
  GatedRunner gated;
  Agent& agent = StartAgent("a1", 4, &gated);
  const std::string id = Submit("exec sleep 1000").task().id();
  ASSERT_TRUE(WaitFor([&] { return gated.waiting(); }));
  EXPECT_EQ(agent.held_tasks(), 1u);  // Takes the lock: free while it spawns.
  v1::CancelRequest cancel;
  cancel.set_task_id(id);
  v1::Task after;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->Cancel(&ctx, cancel, &after).ok());
  gated.Open();
  EXPECT_TRUE(WaitFor([&] { return Get(id).exit().signal() == SIGTERM; })) << Get(id).DebugString();
  EXPECT_TRUE(WaitFor([&] { return agent.held_tasks() == 0; }));
  EXPECT_EQ(Get(id).status(), v1::TASK_STATUS_CANCELLED);
  agent.Stop();  // Before the runner goes.
}

TEST_F(ClusterTest, RunTimeoutKillsTheTask) {
  Agent& agent = StartAgent("a1");
  auto resp = Submit("exec sleep 1000", absl::Seconds(10));
  const std::string id = resp.task().id();
  ASSERT_TRUE(WaitForStatus(id, v1::TASK_STATUS_RUNNING));
  const pid_t pid = static_cast<pid_t>(Get(id).pid());
  clock_.Advance(absl::Seconds(9));
  coordinator_->registry().Tick();
  EXPECT_EQ(Get(id).status(), v1::TASK_STATUS_RUNNING);
  clock_.Advance(absl::Seconds(1));
  coordinator_->registry().Tick();
  EXPECT_EQ(Get(id).status(), v1::TASK_STATUS_TIMED_OUT);
  EXPECT_TRUE(WaitFor([&] { return ProcessGone(pid); }));
  EXPECT_TRUE(WaitFor([&] { return agent.held_tasks() == 0; }));
}

TEST_F(ClusterTest, QueueTimeoutNeverRunsLater) {
  v1::SubmitRequest req;
  req.mutable_spec()->mutable_shell()->set_command("touch /tmp/taskgrid-must-not-run");
  (*req.mutable_spec()->mutable_selector())["role"] = "gpu";
  req.mutable_spec()->mutable_queue_timeout()->set_seconds(30);
  v1::SubmitResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->Submit(&ctx, req, &resp).ok());
  const std::string id = resp.task().id();
  EXPECT_THAT(Get(id).waiting_reason(), HasSubstr("role=gpu"));
  clock_.Advance(absl::Seconds(30));
  coordinator_->registry().Tick();
  EXPECT_EQ(Get(id).status(), v1::TASK_STATUS_TIMED_OUT);
  StartAgent("gpu-1");
  EXPECT_EQ(Get(id).attempt(), 0u);
  EXPECT_EQ(Get(id).status(), v1::TASK_STATUS_TIMED_OUT);
}

TEST_F(ClusterTest, AgentKilledMidTaskMakesTheTaskLostWithinTheTtl) {
  const pid_t agent = StartAgentProcess("doomed");
  auto resp = Submit("exec sleep 1000");
  const std::string id = resp.task().id();
  ASSERT_TRUE(WaitForStatus(id, v1::TASK_STATUS_RUNNING));
  const pid_t child = static_cast<pid_t>(Get(id).pid());
  kill(agent, SIGKILL);
  waitpid(agent, nullptr, 0);
  agent_pids_.clear();
  ASSERT_TRUE(WaitFor([&] { return !AgentConnected("doomed"); }));
  clock_.Advance(absl::Seconds(14));
  coordinator_->registry().Tick();
  EXPECT_EQ(Get(id).status(), v1::TASK_STATUS_RUNNING);
  clock_.Advance(absl::Seconds(1));
  coordinator_->registry().Tick();
  EXPECT_EQ(Get(id).status(), v1::TASK_STATUS_LOST);
  // The agent's cgroup guardian killed the task with the agent.
  EXPECT_TRUE(WaitFor([&] { return ProcessGone(child); }));
}

TEST_F(ClusterTest, ReconnectKeepsTheRunningTaskWithoutLosingOrRepeatingOutput) {
  Agent& agent = StartAgent("a1");
  auto resp = Submit("for i in $(seq 1 300); do echo line $i; sleep 0.005; done");
  const std::string id = resp.task().id();
  std::thread watcher_thread;
  WatchedOutput w;
  watcher_thread = std::thread([&] { w = Watch(id, resp.cursor()); });
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(OutputOf(id), "line 50\n"); }));
  agent.DropConnectionForTesting();
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(OutputOf(id), "line 120\n"); }));
  agent.DropConnectionForTesting();
  watcher_thread.join();
  EXPECT_EQ(w.final_status, v1::TASK_STATUS_SUCCEEDED);
  std::string expected;
  for (int i = 1; i <= 300; ++i) absl::StrAppend(&expected, "line ", i, "\n");
  EXPECT_TRUE(w.contiguous);
  EXPECT_EQ(w.out[0], expected);
  EXPECT_EQ(OutputOf(id), expected);
  EXPECT_EQ(Get(id).attempt(), 1u);
}

TEST_F(ClusterTest, ProgressLinesReportProgress) {
  StartAgent("a1");
  auto resp = Submit(
      "echo '::progress 40 compiling'; printf '::prog'; printf 'ress 75 linking\\n'; echo done");
  const std::string id = resp.task().id();
  std::vector<std::pair<int, std::string>> seen;
  v1::WatchRequest req;
  req.set_task_id(id);
  req.set_after_cursor(resp.cursor());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto reader = stub_->Watch(&ctx, req);
  v1::WatchResponse batch;
  bool final = false;
  while (!final && reader->Read(&batch)) {
    for (const v1::TaskEvent& e : batch.events()) {
      if (e.type() == v1::EVENT_TYPE_TASK_PROGRESS) {
        EXPECT_EQ(e.progress().percent(), e.task().progress());
        seen.emplace_back(e.progress().percent(), e.progress().message());
      }
      final |= e.has_task() && IsFinal(e.task().status());
    }
  }
  ctx.TryCancel();
  EXPECT_THAT(
      seen, ::testing::ElementsAre(std::make_pair(40, "compiling"), std::make_pair(75, "linking")));
  EXPECT_EQ(Get(id).progress(), 75);
  EXPECT_THAT(OutputOf(id), HasSubstr("::progress 40 compiling\n"));  // Output is untouched.
}

TEST_F(ClusterTest, StoppedAgentKillsItsTasksAndReportsThem) {
  const pid_t agent = StartAgentProcess("leaving");
  auto resp = Submit("exec sleep 1000");
  const std::string id = resp.task().id();
  ASSERT_TRUE(WaitForStatus(id, v1::TASK_STATUS_RUNNING));
  const pid_t child = static_cast<pid_t>(Get(id).pid());
  kill(agent, SIGTERM);
  int status = 0;
  waitpid(agent, &status, 0);
  agent_pids_.clear();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(ProcessGone(child));
  v1::Task t = Get(id);
  EXPECT_EQ(t.status(), v1::TASK_STATUS_FAILED);
  EXPECT_THAT(t.status_reason(), HasSubstr("agent was stopping"));
}

TEST_F(ClusterTest, ServesGrpcHealth) {
  auto health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST(CoordinatorSafetyTest, RefusesPublicAddressWithoutCredentials) {
  CoordinatorOptions o;
  o.grpc_address = "0.0.0.0:0";
  o.metrics_address = "";
  EXPECT_THAT(Coordinator::Start(o), StatusIs(absl::StatusCode::kFailedPrecondition));
  o.insecure = true;
  EXPECT_TRUE(Coordinator::Start(o).ok());
}

TEST(CoordinatorSafetyTest, KeysAndTokensAreEnforced) {
  CoordinatorOptions o;
  o.grpc_address = "127.0.0.1:0";
  o.metrics_address = "";
  o.api_keys = "reader:read,writer:submit";
  o.agent_tokens = "agent-secret";
  auto c = Coordinator::Start(o);
  ASSERT_TRUE(c.ok());
  const std::string address = absl::StrCat("127.0.0.1:", (*c)->grpc_port());
  auto stub =
      v1::TaskService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  v1::SubmitRequest req;
  req.mutable_spec()->mutable_shell()->set_command("true");
  v1::SubmitResponse resp;
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(stub->Submit(&ctx, req, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("x-api-key", "reader");
    EXPECT_EQ(stub->Submit(&ctx, req, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer writer");
    EXPECT_TRUE(stub->Submit(&ctx, req, &resp).ok());
  }
  PosixProcessRunner runner;
  AgentOptions ao;
  ao.coordinator_address = address;
  ao.agent_id = "intruder";
  ao.token = "wrong";
  Agent intruder(ao, runner, nullptr);
  intruder.Start();
  ao.agent_id = "friend";
  ao.token = "agent-secret";
  Agent friendly(ao, runner, nullptr);
  friendly.Start();
  EXPECT_TRUE(WaitFor([&] { return friendly.connected(); }));
  EXPECT_FALSE(intruder.connected());
}

}  // namespace
}  // namespace taskgrid
