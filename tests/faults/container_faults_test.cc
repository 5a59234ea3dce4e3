// Container tasks end to end with real binaries and a real dockerd: from the
// CLI and the REST API, a run timeout, and an agent killed with SIGKILL in
// the middle of a container task, which must leave no orphan container:
// re-adopted with its output whole when the coordinator still wants it,
// stopped and removed when it does not.
#include <gmock/gmock.h>
#include <sys/wait.h>

#include <cstdio>

#include "absl/strings/match.h"

#include "services/common/testing/docker_daemon.h"
#include "tests/faults/fault_cluster.h"

namespace taskgrid {
namespace {

using ::testing::HasSubstr;

class ContainerFaultsTest : public FaultCluster {
 protected:
  void SetUp() override {
    std::string why;
    daemon_ = SharedDockerDaemon(why);
    TASKGRID_REQUIRE_DOCKER(daemon_, why);
    FaultCluster::SetUp();
    StartCoordinator();
  }

  ChildProcess& StartDockerAgent() {
    return StartAgent("box", 4, "", {"--docker_socket=" + daemon_->socket()});
  }

  std::string SubmitContainer(const std::string& script, absl::Duration timeout) {
    v1::SubmitRequest req;
    v1::DockerSpec* d = req.mutable_spec()->mutable_docker();
    d->set_image(DockerDaemon::kImage);
    for (const char* a : {"sh", "-c"}) d->add_command(a);
    d->add_command(script);
    req.mutable_spec()->mutable_timeout()->set_seconds(absl::ToInt64Seconds(timeout));
    req.mutable_spec()->mutable_kill_grace()->set_seconds(1);
    v1::SubmitResponse resp;
    const grpc::Status s = client_->Submit(req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.task().id();
  }

  // Whether any container (running or not) carries the task's label.
  bool HasContainerOf(const std::string& task_id) {
    return absl::StrContains(daemon_->Containers(), task_id);
  }

  // Runs a command line; its stdout and exit code.
  static std::pair<std::string, int> Shell(const std::string& command) {
    std::string out;
    FILE* f = popen(command.c_str(), "r");
    if (f == nullptr) return {"", -1};
    char buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof(buf), f)) > 0;) out.append(buf, n);
    const int status = pclose(f);
    return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
  }

  DockerDaemon* daemon_ = nullptr;
};

TEST_F(ContainerFaultsTest, FromTheCliAndTheRestApiLikeAnyOtherTask) {
  StartDockerAgent();
  ASSERT_TRUE(WaitAgents(1));
  const std::string cli = absl::StrCat(TASKGRID_CLI_BIN, " --coordinator=", address_, " ");

  // The CLI streams the container's output and exits with its code.
  auto [out, code] = Shell(cli + "run --image taskgrid-test --memory 32m -- sh -c "
                                 "'echo hi; cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
                                 "exit 3' 2>/dev/null </dev/null");
  EXPECT_EQ(out, "hi\n33554432\n");
  EXPECT_EQ(code, 3);
  std::tie(out, code) = Shell(cli + "run --image no-such-image -- true 2>&1 </dev/null");
  EXPECT_EQ(code, 125);
  EXPECT_THAT(out, HasSubstr("image \"no-such-image\" is not on agent box"));
  std::tie(out, code) = Shell(cli + "docker ps --agent box 2>&1");
  EXPECT_EQ(code, 0) << out;
  std::tie(out, code) = Shell(cli + "docker stop nothing-here --agent box 2>&1");
  EXPECT_EQ(code, 125);
  EXPECT_THAT(out, HasSubstr("no such container \"nothing-here\""));
  std::tie(out, code) = Shell(cli + "docker stop nothing-here 2>&1");
  EXPECT_EQ(code, 2) << "usage: the agent must be named";

  // nodelink's REST route through a real gateway.
  const int http_port = FreeLoopbackPort();
  ChildProcess gateway({TASKGRID_GATEWAY_BIN, "--coordinator=" + address_,
                        absl::StrCat("--http_address=127.0.0.1:", http_port),
                        "--metrics_address=", "--log_level=warn"});
  ASSERT_TRUE(gateway.Start());
  std::string answer;
  ASSERT_TRUE(WaitFor([&] {
    answer = Shell(absl::StrCat(
                       "curl -s -XPOST -H 'Content-Type: application/json' "
                       "http://127.0.0.1:", http_port,
                       "/tasks/docker -d '{\"agent_id\":\"box\",\"operation\":\"run\",\"image\":"
                       "\"taskgrid-test\",\"command\":[\"echo\",\"over rest\"]}'"))
                 .first;
    return absl::StrContains(answer, "task_id");
  }));
  const size_t at = answer.find(R"("task_id":")") + 11;
  const std::string id = answer.substr(at, answer.find('"', at) - at);
  const WatchedTask w = Watch(id);
  EXPECT_EQ(w.final_status, v1::TASK_STATUS_SUCCEEDED);
  EXPECT_EQ(w.out[0], "over rest\n");
  EXPECT_EQ(Get(id).spec().type(), "docker");
}

TEST_F(ContainerFaultsTest, RunTimeoutStopsAndRemovesTheContainer) {
  StartDockerAgent();
  ASSERT_TRUE(WaitAgents(1));
  const std::string id = SubmitContainer("echo started; sleep 600", absl::Seconds(2));
  const v1::Task t = WaitFinal(id);
  EXPECT_EQ(t.status(), v1::TASK_STATUS_TIMED_OUT);
  EXPECT_TRUE(WaitFor([&] { return !HasContainerOf(id); }, absl::Seconds(20)))
      << daemon_->Containers();
}

TEST_F(ContainerFaultsTest, AgentKilledMidRunReadoptsItsContainerWithWholeOutput) {
  ChildProcess& agent = StartDockerAgent();
  ASSERT_TRUE(WaitAgents(1));
  const std::string id =
      SubmitContainer("for i in $(seq 1 40); do echo line $i; sleep 0.1; done; exit 7",
                      absl::Seconds(60));
  WaitTask(id, [](const v1::Task& t) { return t.stdout().total_bytes() > 20; },
           absl::Seconds(20));
  agent.Kill(SIGKILL);  // The container outlives it, in dockerd.
  EXPECT_TRUE(HasContainerOf(id));
  agent.Start();
  const WatchedTask w = Watch(id);
  EXPECT_EQ(w.final_status, v1::TASK_STATUS_FAILED);
  EXPECT_EQ(Get(id).exit().exit_code(), 7);
  std::string expected;
  for (int i = 1; i <= 40; ++i) absl::StrAppend(&expected, "line ", i, "\n");
  EXPECT_EQ(w.out[0], expected) << "every line once, in order, across the agent's death";
  EXPECT_TRUE(w.contiguous);
  EXPECT_TRUE(WaitFor([&] { return !HasContainerOf(id); }, absl::Seconds(20)))
      << daemon_->Containers();
}

TEST_F(ContainerFaultsTest, ContainerOfATaskTheCoordinatorGaveUpOnIsRemoved) {
  ChildProcess& agent = StartDockerAgent();
  ASSERT_TRUE(WaitAgents(1));
  const std::string id = SubmitContainer("echo up; sleep 600", absl::Seconds(120));
  WaitTask(id, [](const v1::Task& t) { return t.stdout().total_bytes() > 0; }, absl::Seconds(20));
  agent.Kill(SIGKILL);
  // Past the heartbeat TTL (2 s here) the task is lost, honestly.
  EXPECT_EQ(WaitFinal(id).status(), v1::TASK_STATUS_LOST);
  ASSERT_TRUE(HasContainerOf(id));
  agent.Start();
  EXPECT_TRUE(WaitFor([&] { return !HasContainerOf(id); }, absl::Seconds(30)))
      << "the restarted agent must stop and remove what nobody wants: " << daemon_->Containers();
  EXPECT_EQ(Get(id).status(), v1::TASK_STATUS_LOST) << "final states stay final";
}

}  // namespace
}  // namespace taskgrid
