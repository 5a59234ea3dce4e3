// Tests tasks' cgroups against the real cgroup v2 hierarchy: a task's whole
// tree, including what left its session or daemonized, dies on exit and on
// terminate; its CPU is counted whole; a restarted agent kills what an
// earlier run left and spares a live one.
#include "services/agent/task_cgroups.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "services/agent/posix_process_runner.h"
#include "services/agent/testing/process_collector.h"
#include "services/common/testing/test_util.h"

namespace taskgrid {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

class TaskCgroupsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    agent_id_ = absl::StrCat("cgroups-test-", getpid());
    absl::StatusOr<std::unique_ptr<TaskCgroups>> cgroups = TaskCgroups::Open("", agent_id_);
    if (!cgroups.ok()) GTEST_SKIP() << "no cgroup v2 here: " << cgroups.status();
    cgroups_ = std::move(*cgroups);
    runner_ = std::make_unique<PosixProcessRunner>(std::nullopt, cgroups_.get());
  }
  void TearDown() override {
    runner_.reset();
    if (cgroups_ == nullptr) return;
    const std::string agent_dir = std::filesystem::path(cgroups_->run_path()).parent_path();
    cgroups_.reset();
    rmdir(agent_dir.c_str());
  }

  std::unique_ptr<RunningProcess> Start(const std::string& script, const std::string& name,
                                        Collector& outcome) {
    ProcessSpec spec;
    spec.argv = {"/bin/sh", "-c", script};
    spec.env = {"PATH=/usr/bin:/bin"};
    spec.name = name;
    absl::StatusOr<std::unique_ptr<RunningProcess>> p =
        runner_->Start(spec, outcome.OnOutput(), outcome.OnExit());
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? std::move(*p) : nullptr;
  }

  // Whether this kernel keeps user attributes on cgroups (5.7 and later).
  bool UserXattrs() {
    const std::string& run = cgroups_->run_path();
    return setxattr(run.c_str(), "user.taskgrid.probe", "1", 1, 0) == 0 &&
           removexattr(run.c_str(), "user.taskgrid.probe") == 0;
  }

  // Whether every cgroup of this run is empty: nothing of any task is left.
  bool RunIsEmpty() {
    for (const auto& e : std::filesystem::directory_iterator(cgroups_->run_path())) {
      if (e.is_directory() && TaskCgroup(e.path(), UniqueFd()).Populated()) return false;
    }
    return true;
  }

  std::string agent_id_;
  std::unique_ptr<TaskCgroups> cgroups_;
  std::unique_ptr<PosixProcessRunner> runner_;
};

TEST_F(TaskCgroupsTest, TheProcessIsInItsCgroupBeforeItRuns) {
  Collector o;
  auto p = Start("cat /proc/self/cgroup", "t1.1", o);
  ASSERT_TRUE(o.WaitExit());
  const std::string run_dir = std::filesystem::path(cgroups_->run_path()).filename();
  const size_t at = o.out().find(absl::StrCat("/", run_dir, "/"));
  ASSERT_NE(at, std::string::npos) << o.out();
  const std::string cgroup = std::filesystem::path(o.out().substr(0, o.out().find('\n', at)))
                                 .filename();
  // Labelled with the task attempt, and empty once it is over.
  if (UserXattrs()) {
    EXPECT_EQ(TaskCgroups::TaskOf(cgroups_->run_path() + "/" + cgroup), "t1.1");
  }
  EXPECT_TRUE(RunIsEmpty());
}

TEST_F(TaskCgroupsTest, AReusedCgroupCountsOnlyItsNewTasksCpu) {
  Collector busy;
  auto p1 = Start("i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; cat /proc/self/cgroup",
                  "busy.1", busy);
  ASSERT_TRUE(busy.WaitExit(absl::Seconds(60)));
  ASSERT_GE(busy.exit().cpu_time, absl::Milliseconds(200));
  Collector idle;
  auto p2 = Start("exec cat /proc/self/cgroup", "idle.1", idle);
  ASSERT_TRUE(idle.WaitExit());
  EXPECT_EQ(idle.out(), busy.out()) << "the emptied cgroup was not reused";
  EXPECT_LT(idle.exit().cpu_time, absl::Milliseconds(100));
  const std::string path = idle.out().substr(idle.out().find("::") + 2);
  const std::string cgroup = std::filesystem::path(path.substr(0, path.size() - 1)).filename();
  if (UserXattrs()) {
    EXPECT_EQ(TaskCgroups::TaskOf(cgroups_->run_path() + "/" + cgroup), "idle.1");
  }
}

TEST_F(TaskCgroupsTest, AnIdleCgroupSomethingMovedIntoIsNotReused) {
  Collector first;
  auto p1 = Start("exec cat /proc/self/cgroup", "first.1", first);
  ASSERT_TRUE(first.WaitExit());
  const std::string line = first.out().substr(first.out().find("::") + 2);
  const std::string idle =
      cgroups_->run_path() + "/" +
      std::filesystem::path(line.substr(0, line.size() - 1)).filename().string();
  // A process of the agent's user moves itself into the idle cgroup.
  UniqueFd procs(open((idle + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(procs.valid());
  ProcessSpec spec;
  spec.argv = {"/bin/sleep", "1000"};
  absl::StatusOr<SpawnedProcess> squatter = SpawnProcess(spec, std::nullopt, {procs.get()});
  ASSERT_TRUE(squatter.ok()) << squatter.status();
  Collector second;
  auto p2 = Start("exec cat /proc/self/cgroup", "second.1", second);
  ASSERT_TRUE(second.WaitExit());
  EXPECT_NE(second.out(), first.out());
  EXPECT_TRUE(WaitFor([&] { return ProcessGone(squatter->pid); }));
  waitpid(squatter->pid, nullptr, 0);
}

TEST_F(TaskCgroupsTest, ASessionLeaderChildDiesWhenTheMainProcessExits) {
  Collector o;
  auto p = Start("setsid sleep 1000 & echo $!; sleep 0.2", "t2.1", o);
  ASSERT_TRUE(o.WaitExit());
  EXPECT_EQ(o.exit().exit_code, 0);
  EXPECT_EQ(o.exit().survivors, 0);
  const std::vector<pid_t> pids = ParsePids(o.out());
  ASSERT_THAT(pids, SizeIs(1));
  EXPECT_TRUE(ProcessGone(pids[0]));
  EXPECT_TRUE(RunIsEmpty());
}

TEST_F(TaskCgroupsTest, ADoubleForkedDaemonDiesOnTerminate) {
  Collector o;
  // The daemon's parent exits at once, so it is re-parented and in a session
  // of its own: nothing but the cgroup still ties it to the task.
  auto p = Start("(setsid sh -c 'echo $$; exec sleep 1000' &); sleep 1000", "t3.1", o);
  ASSERT_TRUE(WaitFor([&] { return ParsePids(o.out()).size() == 1; }));
  const pid_t daemon = ParsePids(o.out())[0];
  ASSERT_FALSE(ProcessGone(daemon));
  p->Terminate(absl::Seconds(5));
  ASSERT_TRUE(o.WaitExit());
  EXPECT_EQ(o.exit().signal, SIGTERM);
  EXPECT_TRUE(WaitFor([&] { return ProcessGone(daemon); }, absl::Seconds(1)));
  EXPECT_TRUE(RunIsEmpty());
}

TEST_F(TaskCgroupsTest, AForkLoopIgnoringTermIsKilledWhole) {
  Collector o;
  // Forks new sessions as fast as it can and ignores SIGTERM: a process
  // group kill always misses the newest; the cgroup's kill does not.
  auto p = Start("trap '' TERM; while :; do setsid sh -c 'echo $$; exec sleep 1000' & done",
                 "t4.1", o);
  ASSERT_TRUE(WaitFor([&] { return ParsePids(o.out()).size() >= 20; }));
  p->Terminate(absl::Milliseconds(100));
  ASSERT_TRUE(o.WaitExit());
  EXPECT_EQ(o.exit().signal, SIGKILL);
  EXPECT_EQ(o.exit().survivors, 0);
  for (pid_t pid : ParsePids(o.out())) EXPECT_TRUE(ProcessGone(pid)) << pid;
  EXPECT_TRUE(RunIsEmpty());
}

TEST_F(TaskCgroupsTest, CpuOfProcessesTheMainProcessNeverWaitedForIsCounted) {
  Collector o;
  // The background loop's CPU (about 0.4 s) is not in the main process's
  // wait4 usage: it is still running (sleeping) when the main process exits,
  // which meanwhile waits on a FIFO at no cost.
  const std::string fifo = absl::StrCat(::testing::TempDir(), "/cgroups-test-", getpid());
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  auto p = Start(absl::StrCat("(i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo >", fifo,
                              "; exec sleep 1000) & read line <", fifo),
                 "t5.1", o);
  ASSERT_TRUE(o.WaitExit(absl::Seconds(60)));
  EXPECT_EQ(o.exit().exit_code, 0);
  EXPECT_GE(o.exit().cpu_time, absl::Milliseconds(200));
  unlink(fifo.c_str());
}

TEST_F(TaskCgroupsTest, SweepKillsWhatADeadRunLeftAndSparesALiveOne) {
  // A run directory named after a process that no longer exists, as an
  // agent killed with SIGKILL leaves it (its guardian killed too).
  const std::string agent_dir = std::filesystem::path(cgroups_->run_path()).parent_path();
  // Its task-0 held the attempt old.1; its task-1 was idle.
  const std::string dead_run = agent_dir + "/run-999999999-1";
  ASSERT_EQ(mkdir(dead_run.c_str(), 0755), 0);
  ASSERT_EQ(mkdir((dead_run + "/task-0").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((dead_run + "/task-1").c_str(), 0755), 0);
  const bool labelled =
      setxattr((dead_run + "/task-0").c_str(), "user.taskgrid.task", "old.1", 5, 0) == 0;
  UniqueFd procs(open((dead_run + "/task-0/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(procs.valid());
  ProcessSpec spec;
  spec.argv = {"/bin/sh", "-c", "setsid sleep 1000 & exec sleep 1000"};
  spec.env = {"PATH=/usr/bin:/bin"};
  absl::StatusOr<SpawnedProcess> orphan = SpawnProcess(spec, std::nullopt, {procs.get()});
  ASSERT_TRUE(orphan.ok()) << orphan.status();
  const TaskCgroup old(dead_run + "/task-0", UniqueFd());
  ASSERT_TRUE(WaitFor([&] { return old.Pids().size() == 2; }));
  // And a task of this run, which must survive the sweep.
  Collector o;
  auto live = Start("echo up; exec sleep 1000", "live.1", o);
  ASSERT_TRUE(WaitFor([&] { return o.out() == "up\n"; }));

  const std::vector<TaskCgroups::Swept> swept = cgroups_->SweepEarlierRuns();
  ASSERT_THAT(swept, SizeIs(1));
  EXPECT_EQ(swept[0].name, labelled ? "old.1" : "task-0");
  EXPECT_EQ(swept[0].processes, 2);
  EXPECT_TRUE(ProcessGone(orphan->pid));
  EXPECT_FALSE(std::filesystem::exists(dead_run));
  EXPECT_FALSE(o.exited());
  waitpid(orphan->pid, nullptr, 0);
}

TEST(TaskCgroupsOpenTest, ARelativeRootIsAnError) {
  absl::StatusOr<std::unique_ptr<TaskCgroups>> cgroups = TaskCgroups::Open("relative", "x");
  if (cgroups.status().code() == absl::StatusCode::kFailedPrecondition) GTEST_SKIP();
  EXPECT_EQ(cgroups.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(cgroups.status().message(), HasSubstr("cgroup_root"));
}

}  // namespace
}  // namespace taskgrid
