// Tests tasks' limits against the real cgroup v1 controllers beside cgroup
// v2: a memory hog is killed and named out of memory, peak memory is
// measured, forks past the pids limit fail, the CPU quota is set, a pooled
// cgroup takes each task's own limits, and no limit directory outlives its
// task or its run.
#include "services/agent/task_limits.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/agent/cgroup_fs.h"
#include "services/agent/posix_process_runner.h"
#include "services/agent/task_cgroups.h"
#include "services/agent/testing/process_collector.h"
#include "services/common/testing/test_util.h"

namespace taskgrid {
namespace {

using ::testing::HasSubstr;

class TaskLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    agent_id_ = absl::StrCat("limits-test-", getpid());
    absl::StatusOr<std::unique_ptr<TaskCgroups>> cgroups = TaskCgroups::Open("", agent_id_);
    if (!cgroups.ok()) GTEST_SKIP() << "no cgroup v2 here: " << cgroups.status();
    cgroups_ = std::move(*cgroups);
    if (cgroups_->enforced_limits().size() < 3) {
      GTEST_SKIP() << "no writable v1 memory, cpu and pids hierarchies here";
    }
    runner_ = std::make_unique<PosixProcessRunner>(std::nullopt, cgroups_.get());
  }
  void TearDown() override {
    runner_.reset();
    cgroups_.reset();
  }

  // This agent's directory in the v1 hierarchy of `controller`.
  std::string AgentDir(const char* controller) const {
    return absl::StrCat(cgroup_fs::OwnV1Dir(controller), "/taskgrid-", agent_id_);
  }
  std::string RunDir(const char* controller) const {
    return absl::StrCat(AgentDir(controller), "/",
                        std::filesystem::path(cgroups_->run_path()).filename().string());
  }
  // The one task directory in this run's `controller` hierarchy, once there is one.
  std::string TaskDir(const char* controller) const {
    std::vector<std::string> dirs;
    WaitFor([&] { return !(dirs = cgroup_fs::SubDirs(RunDir(controller))).empty(); });
    EXPECT_EQ(dirs.size(), 1u);
    return dirs.empty() ? "" : absl::StrCat(RunDir(controller), "/", dirs[0]);
  }

  std::unique_ptr<RunningProcess> Start(const std::string& script, const ProcessLimits& limits,
                                        Collector& outcome) {
    ProcessSpec spec;
    spec.argv = {"/bin/sh", "-c", script};
    spec.env = {"PATH=/usr/bin:/bin"};
    spec.name = "limited.1";
    spec.limits = limits;
    absl::StatusOr<std::unique_ptr<RunningProcess>> p =
        runner_->Start(spec, outcome.OnOutput(), outcome.OnExit());
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? std::move(*p) : nullptr;
  }

  std::string agent_id_;
  std::unique_ptr<TaskCgroups> cgroups_;
  std::unique_ptr<PosixProcessRunner> runner_;
};

// A shell variable as large as `bytes`: the shell holds it in memory.
std::string Hog(int64_t bytes) {
  return absl::StrCat("x=$(head -c ", bytes, " /dev/zero | tr '\\0' a); echo ${#x}");
}

TEST_F(TaskLimitsTest, AMemoryHogIsKilledAndNamedOutOfMemory) {
  Collector o;
  auto p = Start(Hog(200 << 20), {.memory_bytes = 32 << 20}, o);
  ASSERT_TRUE(o.WaitExit(absl::Seconds(60)));
  const ProcessExit exit = o.exit();
  EXPECT_TRUE(exit.oom_killed);
  EXPECT_THAT(exit.error, HasSubstr("out of memory"));
  EXPECT_THAT(exit.error, HasSubstr("32 MiB memory limit"));
  EXPECT_GT(exit.memory_peak_bytes, 16 << 20);
  EXPECT_LE(exit.memory_peak_bytes, 32 << 20);
  EXPECT_EQ(o.out(), "") << "the shell never got to print";
}

TEST_F(TaskLimitsTest, PeakMemoryOfTheWholeTreeIsMeasured) {
  Collector o;
  auto p = Start(Hog(40 << 20), {.memory_bytes = 512 << 20}, o);
  ASSERT_TRUE(o.WaitExit(absl::Seconds(60)));
  const ProcessExit exit = o.exit();
  EXPECT_FALSE(exit.oom_killed);
  EXPECT_EQ(exit.error, "");
  EXPECT_EQ(o.out(), absl::StrCat(40 << 20, "\n"));
  EXPECT_GE(exit.memory_peak_bytes, 40 << 20);
  EXPECT_LT(exit.memory_peak_bytes, 512 << 20);
}

TEST_F(TaskLimitsTest, ForksPastThePidsLimitFail) {
  Collector o;
  auto p = Start("echo started; sleep 0.3; for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait",
                 {.pids = 4}, o);
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(o.out(), "started"); }));
  EXPECT_EQ(cgroup_fs::ReadSmallFile(TaskDir("pids") + "/pids.max").value_or(""), "4\n");
  ASSERT_TRUE(o.WaitExit(absl::Seconds(30)));
  // The shell's fifth process at once is refused, and the shell gives up.
  EXPECT_THAT(o.err(), HasSubstr("fork"));
  EXPECT_NE(o.exit().exit_code, 0);
}

TEST_F(TaskLimitsTest, TheCpuLimitIsAQuotaOfTheKernelsScheduler) {
  Collector o;
  auto p = Start("sleep 0.5", {.cpus = 0.25}, o);
  EXPECT_EQ(cgroup_fs::ReadSmallFile(TaskDir("cpu") + "/cpu.cfs_quota_us").value_or(""),
            "25000\n");
  ASSERT_TRUE(o.WaitExit());
}

TEST_F(TaskLimitsTest, NoLimitDirectoryOutlivesItsTask) {
  for (int i = 0; i < 3; ++i) {
    Collector o;
    auto p = Start("true", {.memory_bytes = 64 << 20, .cpus = 1, .pids = 10}, o);
    ASSERT_TRUE(o.WaitExit());
    EXPECT_EQ(o.exit().error, "");
  }
  for (const char* controller : {"memory", "cpu", "pids"}) {
    EXPECT_TRUE(cgroup_fs::SubDirs(RunDir(controller)).empty()) << controller;
  }
  // A task without limits makes none: looked at while it runs.
  Collector o;
  auto p = Start("echo started; sleep 0.3", {}, o);
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(o.out(), "started"); }));
  EXPECT_TRUE(cgroup_fs::SubDirs(RunDir("memory")).empty());
  ASSERT_TRUE(o.WaitExit());
}

TEST_F(TaskLimitsTest, APooledCgroupTakesEachTasksOwnLimits) {
  // The same task cgroup, reused: limited, then not, then limited anew.
  std::vector<std::string> cgroups;
  for (int64_t memory : {64 << 20, 0, 128 << 20}) {
    Collector o;
    auto p = Start("grep '^0::' /proc/self/cgroup; sleep 0.2", {.memory_bytes = memory}, o);
    if (memory > 0) {
      EXPECT_EQ(cgroup_fs::ReadSmallFile(TaskDir("memory") + "/memory.limit_in_bytes")
                    .value_or(""),
                absl::StrCat(memory, "\n"));
    }
    ASSERT_TRUE(o.WaitExit());
    EXPECT_EQ(o.exit().error, "");
    EXPECT_EQ(o.exit().memory_peak_bytes > 0, memory > 0);
    cgroups.push_back(o.out());
  }
  EXPECT_EQ(cgroups[0], cgroups[2]) << "the emptied cgroup was not reused";
  EXPECT_TRUE(cgroup_fs::SubDirs(RunDir("memory")).empty());
}

TEST_F(TaskLimitsTest, TheSweepRemovesWhatADeadRunLeft) {
  const std::string dead = AgentDir("memory") + "/run-999999999-1";
  ASSERT_EQ(mkdir(dead.c_str(), 0755), 0);
  ASSERT_EQ(mkdir((dead + "/limit-0").c_str(), 0755), 0);
  cgroups_->SweepEarlierRuns();
  EXPECT_FALSE(std::filesystem::exists(dead));
  EXPECT_TRUE(std::filesystem::exists(RunDir("memory"))) << "this run's stays";
}

TEST(TaskLimitsWithoutCgroupsTest, ALimitIsRefusedRatherThanIgnored) {
  PosixProcessRunner runner(std::nullopt, nullptr);
  ProcessSpec spec;
  spec.argv = {"/bin/true"};
  spec.limits.memory_bytes = 64 << 20;
  Collector o;
  absl::StatusOr<std::unique_ptr<RunningProcess>> p =
      runner.Start(spec, o.OnOutput(), o.OnExit());
  EXPECT_TRUE(absl::IsFailedPrecondition(p.status())) << p.status();
  EXPECT_THAT(p.status().message(), HasSubstr("without cgroups"));
}

}  // namespace
}  // namespace taskgrid
