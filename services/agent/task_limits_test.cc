// Tests tasks' limits against the real cgroup v1 controllers beside cgroup
// v2: a memory hog is killed and named out of memory, peak memory is
// measured, a fork bomb meets its pids limit, the CPU quota is set, and no
// limit directory outlives its task or its run.
#include "services/agent/task_limits.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
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
    for (const char* controller : {"memory", "cpu", "pids"}) {
      if (cgroup_fs::V1Mount(controller).empty()) {
        GTEST_SKIP() << "no v1 " << controller << " hierarchy here";
      }
    }
    agent_id_ = absl::StrCat("limits-test-", getpid());
    absl::StatusOr<std::unique_ptr<TaskCgroups>> cgroups = TaskCgroups::Open("", agent_id_);
    if (!cgroups.ok()) GTEST_SKIP() << "no cgroup v2 here: " << cgroups.status();
    cgroups_ = std::move(*cgroups);
    runner_ = std::make_unique<PosixProcessRunner>(std::nullopt, cgroups_.get());
  }
  void TearDown() override {
    runner_.reset();
    cgroups_.reset();
  }

  // This agent's directory in the v1 hierarchy of `controller`.
  std::string AgentDir(const char* controller) const {
    const std::string own = cgroup_fs::OwnV1Path(controller);
    return absl::StrCat(cgroup_fs::V1Mount(controller), own == "/" ? "" : own, "/taskgrid-",
                        agent_id_);
  }
  std::string RunDir(const char* controller) const {
    return absl::StrCat(AgentDir(controller), "/",
                        std::filesystem::path(cgroups_->run_path()).filename().string());
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

TEST_F(TaskLimitsTest, AForkBombMeetsItsPidsLimit) {
  Collector o;
  auto p = Start("for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.3 & done; wait; echo done",
                 {.pids = 4}, o);
  ASSERT_TRUE(o.WaitExit(absl::Seconds(30)));
  EXPECT_THAT(o.err(), HasSubstr("fork"));
}

TEST_F(TaskLimitsTest, TheCpuLimitIsAQuotaOfTheKernelsScheduler) {
  Collector o;
  auto p = Start("grep -E '^[0-9]+:([^:]*,)?cpu(,[^:]*)?:' /proc/self/cgroup | cut -d: -f3; "
                 "sleep 0.5",
                 {.cpus = 0.25}, o);
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(o.out(), "\n"); }));
  const std::string path =
      absl::StrCat(cgroup_fs::V1Mount("cpu"), absl::StripAsciiWhitespace(o.out()));
  EXPECT_THAT(path, HasSubstr(RunDir("cpu")));
  EXPECT_EQ(cgroup_fs::ReadSmallFile(path + "/cpu.cfs_quota_us").value_or(""), "25000\n");
  ASSERT_TRUE(o.WaitExit());
}

TEST_F(TaskLimitsTest, NoLimitDirectoryOutlivesItsTask) {
  for (int i = 0; i < 3; ++i) {
    Collector o;
    auto p = Start("true", {.memory_bytes = 64 << 20, .cpus = 1, .pids = 10}, o);
    ASSERT_TRUE(o.WaitExit());
  }
  for (const char* controller : {"memory", "cpu", "pids"}) {
    EXPECT_TRUE(cgroup_fs::SubDirs(RunDir(controller)).empty()) << controller;
  }
  // A task without limits makes none.
  Collector o;
  auto p = Start("true", {}, o);
  ASSERT_TRUE(o.WaitExit());
  EXPECT_TRUE(cgroup_fs::SubDirs(RunDir("memory")).empty());
}

TEST_F(TaskLimitsTest, TheSweepRemovesWhatADeadRunLeft) {
  const std::string dead = AgentDir("memory") + "/run-1-1";
  ASSERT_EQ(mkdir(dead.c_str(), 0755), 0);
  ASSERT_EQ(mkdir((dead + "/task-0").c_str(), 0755), 0);
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
