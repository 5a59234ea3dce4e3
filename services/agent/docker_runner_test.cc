// DockerRunner against a real dockerd started by the test (no fake of the
// Engine API): output and exit codes, limits seen from inside, cancel,
// kept containers and the operations on them, errors, and adoption.
#include "services/agent/docker_runner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/common/testing/docker_daemon.h"
#include "services/common/testing/test_util.h"

namespace taskgrid {
namespace {

using ::testing::HasSubstr;

// What one container operation printed and how it ended.
class Outcome {
 public:
  OutputCallback OnOutput() {
    return [this](StdStream s, absl::string_view d) {
      absl::MutexLock lock(&mu_);
      out_[s == StdStream::kStderr ? 1 : 0].append(d.data(), d.size());
    };
  }
  ExitCallback OnExit() {
    return [this](const ProcessExit& x) {
      absl::MutexLock lock(&mu_);
      EXPECT_FALSE(exited_) << "on_exit ran twice";
      exit_ = x;
      exited_ = true;
    };
  }
  bool WaitExit(absl::Duration timeout = absl::Seconds(60)) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&exited_), timeout);
  }
  bool WaitStdout(const std::string& text, absl::Duration timeout = absl::Seconds(30)) {
    return WaitFor([&] { return absl::StrContains(out(), text); }, timeout);
  }
  std::string out() const {
    absl::MutexLock lock(&mu_);
    return out_[0];
  }
  std::string err() const {
    absl::MutexLock lock(&mu_);
    return out_[1];
  }
  ProcessExit exit() const {
    absl::MutexLock lock(&mu_);
    return exit_;
  }

 private:
  mutable absl::Mutex mu_;
  std::string out_[2] ABSL_GUARDED_BY(mu_);
  ProcessExit exit_ ABSL_GUARDED_BY(mu_);
  bool exited_ ABSL_GUARDED_BY(mu_) = false;
};

class DockerRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    daemon_ = SharedDockerDaemon(why);
    TASKGRID_REQUIRE_DOCKER(daemon_, why);
    mounts_ = std::filesystem::temp_directory_path() / absl::StrCat("tg_mounts_", getpid());
    std::filesystem::create_directories(mounts_ / "data");
    std::ofstream(mounts_ / "data" / "hello.txt") << "from the host\n";
    DockerOptions o;
    o.socket = daemon_->socket();
    o.agent_id = "agent-under-test";
    o.mount_prefixes = {mounts_.string()};
    runner_ = std::make_unique<DockerRunner>(o, &metrics_);
  }
  void TearDown() override {
    if (!mounts_.empty()) std::filesystem::remove_all(mounts_);
  }

  static v1::DockerSpec Run(std::vector<std::string> command) {
    v1::DockerSpec spec;
    spec.set_image(DockerDaemon::kImage);
    for (auto& c : command) spec.add_command(std::move(c));
    return spec;
  }
  static v1::DockerSpec On(v1::DockerSpec::Operation op, const std::string& container) {
    v1::DockerSpec spec;
    spec.set_operation(op);
    spec.set_container(container);
    return spec;
  }

  // Runs `spec` to its end.
  std::unique_ptr<Outcome> Finish(const v1::DockerSpec& spec, const std::string& task = "t1") {
    auto o = std::make_unique<Outcome>();
    auto p = runner_->Start(task, 1, spec, o->OnOutput(), o->OnExit());
    EXPECT_TRUE(o->WaitExit()) << "no exit";
    return o;
  }

  bool ContainerExists(const std::string& id) {
    return !id.empty() && absl::StrContains(daemon_->Containers(), id);
  }

  DockerDaemon* daemon_ = nullptr;
  std::filesystem::path mounts_;
  prometheus::Registry registry_;
  AgentMetrics metrics_{registry_};
  std::unique_ptr<DockerRunner> runner_;
};

TEST_F(DockerRunnerTest, RunStreamsBothStreamsAndTheExitCodeThenRemovesTheContainer) {
  ASSERT_TRUE(runner_->Probe().ok());
  auto o = Finish(Run({"sh", "-c", "echo out; echo err >&2; seq 1 20000; exit 3"}));
  // Whole and once: a follow that ends early must be caught up, not repeated.
  std::string expected = "out\n";
  for (int i = 1; i <= 20000; ++i) absl::StrAppend(&expected, i, "\n");
  EXPECT_EQ(o->out().size(), expected.size());
  EXPECT_TRUE(o->out() == expected) << "the output is not what the container wrote";
  EXPECT_EQ(o->err(), "err\n");
  EXPECT_EQ(o->exit().exit_code, 3);
  EXPECT_EQ(o->exit().signal, 0);
  EXPECT_EQ(o->exit().error, "");
  ASSERT_FALSE(o->exit().container_id.empty());
  EXPECT_FALSE(ContainerExists(o->exit().container_id));
  EXPECT_EQ(metrics_.container_operations.Add({{"operation", "run"}, {"outcome", "ok"}}).Value(),
            1);
  EXPECT_EQ(metrics_.containers_running.Value(), 0);
}

TEST_F(DockerRunnerTest, LimitsEnvUserDirAndNetworkApplyInsideTheContainer) {
  v1::DockerSpec spec = Run(
      {"sh", "-c",
       "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
       "/sys/fs/cgroup/cpu/cpu.cfs_quota_us; echo env=$GREETING task=$TASKGRID_TASK_ID; id -u; "
       "pwd; ls /sys/class/net"});
  spec.set_memory_bytes(64 << 20);
  spec.set_pids_limit(20);
  spec.set_cpus(0.5);
  (*spec.mutable_env())["GREETING"] = "hi";
  spec.set_user("1234");
  spec.set_working_dir("/tmp");
  auto o = Finish(spec, "limits-task");
  EXPECT_EQ(o->out(), "67108864\n20\n50000\nenv=hi task=limits-task\n1234\n/tmp\nlo\n")
      << o->err();
  EXPECT_EQ(o->exit().exit_code, 0);
}

TEST_F(DockerRunnerTest, MountsOnlyFromTheAllowList) {
  v1::DockerSpec spec = Run({"sh", "-c", "cat /in/hello.txt; touch /in/x 2>/dev/null || echo ro"});
  auto* m = spec.add_mounts();
  m->set_source((mounts_ / "data").string());
  m->set_target("/in");
  m->set_read_only(true);
  auto o = Finish(spec);
  EXPECT_EQ(o->out(), "from the host\nro\n");

  m->set_source("/etc");
  o = Finish(spec);
  EXPECT_EQ(o->exit().exit_code, 125);
  EXPECT_THAT(o->exit().error, HasSubstr("\"/etc\" is not under a path agent agent-under-test"));
  // A symlink out of the allowed tree is judged by where it leads.
  std::filesystem::create_symlink("/etc", mounts_ / "escape");
  m->set_source((mounts_ / "escape").string());
  o = Finish(spec);
  EXPECT_THAT(o->exit().error, HasSubstr("is not under a path"));
  m->set_source((mounts_ / "missing").string());
  o = Finish(spec);
  EXPECT_THAT(o->exit().error, HasSubstr("does not exist"));
}

TEST_F(DockerRunnerTest, TerminateStopsWithGraceThenKillsAndRemoves) {
  // A container that exits on SIGTERM.
  Outcome polite;
  auto p = runner_->Start(
      "polite", 1,
      Run({"sh", "-c", "trap 'echo bye; exit 0' TERM; echo up; while true; do sleep 0.1; done"}),
      polite.OnOutput(), polite.OnExit());
  ASSERT_TRUE(polite.WaitStdout("up\n"));
  p->Terminate(absl::Seconds(20));
  ASSERT_TRUE(polite.WaitExit(absl::Seconds(15))) << "SIGTERM did not stop it";
  EXPECT_EQ(polite.out(), "up\nbye\n");
  EXPECT_EQ(polite.exit().exit_code, 0);
  EXPECT_FALSE(ContainerExists(polite.exit().container_id));

  // One that ignores it: SIGKILL after the grace.
  Outcome stubborn;
  auto q = runner_->Start("stubborn", 1,
                          Run({"sh", "-c", "trap '' TERM; echo up; while true; do sleep 0.1; done"}),
                          stubborn.OnOutput(), stubborn.OnExit());
  ASSERT_TRUE(stubborn.WaitStdout("up\n"));
  q->Terminate(absl::Seconds(1));
  ASSERT_TRUE(stubborn.WaitExit(absl::Seconds(30)));
  EXPECT_EQ(stubborn.exit().signal, SIGKILL);
  EXPECT_FALSE(ContainerExists(stubborn.exit().container_id));

  // Destroying a running one kills and removes it too.
  Outcome dropped;
  auto r = runner_->Start("dropped", 1, Run({"sh", "-c", "echo up; sleep 600"}),
                          dropped.OnOutput(), dropped.OnExit());
  ASSERT_TRUE(dropped.WaitStdout("up\n"));
  r.reset();
  EXPECT_TRUE(dropped.WaitExit(absl::ZeroDuration()));
  EXPECT_FALSE(ContainerExists(dropped.exit().container_id));
}

TEST_F(DockerRunnerTest, KeptContainerCanBeStartedFollowedStoppedInspectedListedAndRemoved) {
  using Spec = v1::DockerSpec;
  const std::string name = absl::StrCat("tg-kept-", getpid());
  v1::DockerSpec spec = Run({"sh", "-c", "echo hello; exec sleep 600"});
  spec.set_keep(true);
  spec.set_name(name);
  Outcome first;
  auto p = runner_->Start("kept", 1, spec, first.OnOutput(), first.OnExit());
  ASSERT_TRUE(first.WaitStdout("hello\n"));
  p->Terminate(absl::ZeroDuration());
  ASSERT_TRUE(first.WaitExit());
  ASSERT_TRUE(ContainerExists(first.exit().container_id)) << "keep: the container stays";

  EXPECT_EQ(Finish(On(Spec::DOCKER_OPERATION_START, name))->out(), "started " + name + "\n");
  EXPECT_EQ(Finish(On(Spec::DOCKER_OPERATION_START, name))->out(),
            name + " is already running\n");
  EXPECT_THAT(Finish(On(Spec::DOCKER_OPERATION_INSPECT, name))->out(),
              HasSubstr(R"("Running":true)"));

  // Follow its logs while it is stopped: the follow ends with the container.
  v1::DockerSpec logs = On(Spec::DOCKER_OPERATION_LOGS, name);
  logs.set_follow(true);
  Outcome followed;
  auto f = runner_->Start("logs", 1, logs, followed.OnOutput(), followed.OnExit());
  ASSERT_TRUE(followed.WaitStdout("hello\nhello\n"));
  v1::DockerSpec stop = On(Spec::DOCKER_OPERATION_STOP, name);
  stop.mutable_stop_timeout()->set_seconds(1);
  EXPECT_EQ(Finish(stop)->out(), "stopped " + name + "\n");
  ASSERT_TRUE(followed.WaitExit(absl::Seconds(20))) << "the follow did not end with the container";
  EXPECT_EQ(followed.out(), "hello\nhello\n");
  EXPECT_EQ(followed.exit().exit_code, 0);

  logs.set_follow(false);
  logs.set_tail(1);
  EXPECT_EQ(Finish(logs)->out(), "hello\n");
  EXPECT_THAT(Finish(On(Spec::DOCKER_OPERATION_INSPECT, name))->out(),
              HasSubstr(R"("Running":false)"));
  v1::DockerSpec list;
  list.set_operation(Spec::DOCKER_OPERATION_LIST);
  EXPECT_THAT(Finish(list)->out(), HasSubstr(absl::StrCat(R"("name":")", name, R"(")")));
  EXPECT_EQ(Finish(On(Spec::DOCKER_OPERATION_REMOVE, name))->out(), "removed " + name + "\n");
  EXPECT_FALSE(ContainerExists(first.exit().container_id));
  auto gone = Finish(On(Spec::DOCKER_OPERATION_INSPECT, name));
  EXPECT_EQ(gone->exit().exit_code, 125);
  EXPECT_THAT(gone->exit().error, HasSubstr("no such container"));
}

TEST_F(DockerRunnerTest, ErrorsNameTheirCause) {
  v1::DockerSpec spec = Run({"true"});
  spec.set_image("no-such-image:1.0");
  auto o = Finish(spec);
  EXPECT_EQ(o->exit().exit_code, 125);
  EXPECT_THAT(o->exit().error, HasSubstr("image \"no-such-image:1.0\" is not on agent"));

  o = Finish(Run({"no-such-command"}));
  EXPECT_EQ(o->exit().exit_code, 127);
  EXPECT_THAT(o->exit().error, HasSubstr("executable file not found"));
  EXPECT_FALSE(ContainerExists(o->exit().container_id));

  spec = Run({"true"});
  spec.set_network("host");
  o = Finish(spec);
  EXPECT_THAT(o->exit().error, HasSubstr("network \"host\" is not allowed on agent"));

  spec = Run({"true"});
  spec.set_memory_bytes(1000);  // Below Docker's minimum; the coordinator refuses it first.
  o = Finish(spec);
  EXPECT_EQ(o->exit().exit_code, 125);
  EXPECT_THAT(o->exit().error, HasSubstr("Minimum memory limit"));

  const std::string name = absl::StrCat("tg-taken-", getpid());
  spec = Run({"sleep", "600"});
  spec.set_name(name);
  Outcome holder;
  auto p = runner_->Start("holder", 1, spec, holder.OnOutput(), holder.OnExit());
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(daemon_->Containers(), name); }));
  o = Finish(spec);
  EXPECT_THAT(o->exit().error, HasSubstr("is already in use"));
  p.reset();

  // Containers not created by this agent are not its to touch.
  daemon_->Api(absl::StrCat("-XPOST -H 'Content-Type: application/json' -d '{\"Image\":\"",
                            DockerDaemon::kImage, "\",\"Cmd\":[\"true\"]}' ",
                            "'http://x/v1.41/containers/create?name=foreign-", getpid(), "'"));
  o = Finish(On(v1::DockerSpec::DOCKER_OPERATION_REMOVE, absl::StrCat("foreign-", getpid())));
  EXPECT_THAT(o->exit().error, HasSubstr("was not created by agent agent-under-test"));
  EXPECT_THAT(daemon_->Containers(), HasSubstr(absl::StrCat("foreign-", getpid())));

  // No registry answers here: a pull fails at once, saying why.
  v1::DockerSpec pull;
  pull.set_operation(v1::DockerSpec::DOCKER_OPERATION_PULL);
  pull.set_image("127.0.0.1:1/busybox:1.36");
  o = Finish(pull);
  EXPECT_EQ(o->exit().exit_code, 125);
  EXPECT_THAT(o->exit().error, HasSubstr("pull 127.0.0.1:1/busybox:1.36"));
  EXPECT_THAT(o->exit().error, HasSubstr("connection refused"));
  EXPECT_EQ(metrics_.image_pulls.Add({{"outcome", "error"}}).Value(), 1);
}

TEST_F(DockerRunnerTest, AdoptFollowsAFoundContainerFromTheDeliveredOffsets) {
  // A container an earlier agent process started for attempt 2 of a task.
  const std::string created = daemon_->Api(absl::StrCat(
      "-XPOST -H 'Content-Type: application/json' -d '{\"Image\":\"", DockerDaemon::kImage,
      "\",\"Cmd\":[\"sh\",\"-c\",\"echo first; sleep 1; echo second; echo e >&2; exit 4\"],"
      "\"Labels\":{\"taskgrid.agent_id\":\"agent-under-test\",\"taskgrid.task_id\":\"old-task\","
      "\"taskgrid.attempt\":\"2\",\"taskgrid.keep\":\"false\"}}' "
      "http://x/v1.41/containers/create"));
  const std::string id = created.substr(created.find(":\"") + 2, 64);
  daemon_->Api("-XPOST http://x/v1.41/containers/" + id + "/start");

  auto owned = runner_->FindOwned();
  ASSERT_TRUE(owned.ok()) << owned.status();
  ASSERT_EQ(owned->size(), 1u);
  EXPECT_EQ((*owned)[0].task_id, "old-task");
  EXPECT_EQ((*owned)[0].attempt, 2u);
  EXPECT_TRUE((*owned)[0].running());

  Outcome o;
  auto p = runner_->Adopt((*owned)[0], /*skip_stdout=*/6, /*skip_stderr=*/0, o.OnOutput(),
                          o.OnExit());
  ASSERT_TRUE(o.WaitExit());
  EXPECT_EQ(o.out(), "second\n") << "\"first\\n\" was delivered before the restart";
  EXPECT_EQ(o.err(), "e\n");
  EXPECT_EQ(o.exit().exit_code, 4);
  EXPECT_FALSE(ContainerExists(id));
  EXPECT_THAT(runner_->FindOwned().value(), ::testing::IsEmpty());

  // Created but never started (the agent died in between): reported, removed.
  daemon_->Api(absl::StrCat(
      "-XPOST -H 'Content-Type: application/json' -d '{\"Image\":\"", DockerDaemon::kImage,
      "\",\"Cmd\":[\"true\"],\"Labels\":{\"taskgrid.agent_id\":\"agent-under-test\","
      "\"taskgrid.task_id\":\"unstarted\",\"taskgrid.attempt\":\"1\"}}' "
      "http://x/v1.41/containers/create"));
  owned = runner_->FindOwned();
  ASSERT_EQ(owned->size(), 1u);
  EXPECT_EQ((*owned)[0].state, "created");
  Outcome never;
  auto q = runner_->Adopt((*owned)[0], 0, 0, never.OnOutput(), never.OnExit());
  ASSERT_TRUE(never.WaitExit());
  EXPECT_EQ(never.exit().exit_code, 125);
  EXPECT_THAT(never.exit().error, HasSubstr("restarted before it started the container"));
  EXPECT_THAT(runner_->FindOwned().value(), ::testing::IsEmpty());
}

TEST(DockerRunnerWithoutDaemonTest, AMissingSocketIsAClearFailureNotAHang) {
  prometheus::Registry registry;
  AgentMetrics metrics(registry);
  DockerOptions o;
  o.socket = "/nonexistent/docker.sock";
  o.agent_id = "a";
  DockerRunner runner(o, &metrics);
  EXPECT_EQ(runner.Probe().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(runner.Probe().message()), HasSubstr("Docker is not running"));
  v1::DockerSpec spec;
  spec.set_image("busybox");
  Outcome out;
  auto p = runner.Start("t", 1, spec, out.OnOutput(), out.OnExit());
  ASSERT_TRUE(out.WaitExit(absl::Seconds(10)));
  EXPECT_EQ(out.exit().exit_code, 125);
  EXPECT_THAT(out.exit().error, HasSubstr("cannot connect to /nonexistent/docker.sock"));
}

TEST(DockerStreamDemuxerTest, SplitsFramesAcrossAnyBoundary) {
  const std::string stream = std::string("\x01\0\0\0\0\0\0\x03out", 11) +
                             std::string("\x02\0\0\0\0\0\0\x04" "err!", 12) +
                             std::string("\x01\0\0\0\0\0\0\x01" "x", 9);
  for (size_t step : {1u, 2u, 5u, 13u, 100u}) {
    std::string got[3];
    DockerStreamDemuxer d([&](int s, absl::string_view data) { got[s].append(data.data(), data.size()); });
    for (size_t i = 0; i < stream.size(); i += step) d.Feed(absl::string_view(stream).substr(i, step));
    EXPECT_EQ(got[1], "outx") << step;
    EXPECT_EQ(got[2], "err!") << step;
  }
}

}  // namespace
}  // namespace taskgrid
