// Hostile tasks: commands that ignore SIGTERM, fork grandchildren, close
// their stdout early, write 100 MB without a newline, or exit while their
// children keep the pipe open, run through the real coordinator and agent
// binaries. Each is reported correctly and nothing is left running.
#include <gtest/gtest.h>

#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/faults/fault_cluster.h"

namespace taskgrid {
namespace {

class HostileTasksTest : public FaultCluster {
 protected:
  void SetUp() override {
    FaultCluster::SetUp();
    StartCoordinator();  // --kill_grace=1s
    StartAgent("hostile-a1", 4);
    ASSERT_TRUE(WaitAgents(1));
  }

  // The pids a task printed, one per line, once it printed `n` of them.
  std::vector<pid_t> PrintedPids(const std::string& id, size_t n) {
    std::vector<pid_t> pids;
    WaitFor(
        [&] {
          int64_t dropped = 0;
          pids.clear();
          for (absl::string_view line : absl::StrSplit(
                   client_->ReadOutput(id, v1::OUTPUT_STREAM_STDOUT, &dropped), '\n',
                   absl::SkipEmpty())) {
            int pid = 0;
            if (absl::SimpleAtoi(line, &pid)) pids.push_back(pid);
          }
          return pids.size() >= n;
        },
        absl::Seconds(20));
    return pids;
  }
};

// Proves: cancel is final at once, and the agent escalates to SIGKILL after
// the grace period when SIGTERM is ignored (by the shell and, inherited, by
// its child).
TEST_F(HostileTasksTest, IgnoringSigtermIsKilledAfterTheGrace) {
  const std::string id = Submit("trap '' TERM; echo $$; sleep 60 & echo $!; wait");
  const std::vector<pid_t> pids = PrintedPids(id, 2);
  ASSERT_EQ(pids.size(), 2u);
  Cancel(id);
  const v1::Task t = WaitFinal(id);
  EXPECT_EQ(t.status(), v1::TASK_STATUS_CANCELLED) << t.DebugString();
  // Only SIGKILL, after the 1 s grace, can end them.
  for (pid_t pid : pids) EXPECT_TRUE(WaitFor([&] { return ProcessGone(pid); })) << pid;
}

// Proves: cancel kills children and grandchildren, not just the shell.
TEST_F(HostileTasksTest, GrandchildrenDieWithTheTask) {
  const std::string id =
      Submit("sleep 60 & echo $!; sh -c 'sleep 60 & echo $!; sh -c \"sleep 60 & echo \\$!; wait\"; "
             "wait' & wait");
  const std::vector<pid_t> pids = PrintedPids(id, 3);
  ASSERT_EQ(pids.size(), 3u);
  for (pid_t pid : pids) ASSERT_FALSE(ProcessGone(pid)) << pid;
  Cancel(id);
  EXPECT_EQ(WaitFinal(id).status(), v1::TASK_STATUS_CANCELLED);
  for (pid_t pid : pids) EXPECT_TRUE(WaitFor([&] { return ProcessGone(pid); })) << pid;
}

// Proves: a process that closes its stdout early is still followed to its
// exit; its other stream and its exit code are reported.
TEST_F(HostileTasksTest, ClosingStdoutEarlyIsNotTheEnd) {
  const std::string id = Submit("echo first; exec 1>&-; sleep 0.3; echo second >&2; exit 3");
  const v1::Task t = WaitFinal(id);
  EXPECT_EQ(t.status(), v1::TASK_STATUS_FAILED) << t.DebugString();
  EXPECT_EQ(t.exit().exit_code(), 3);
  int64_t dropped = 0;
  EXPECT_EQ(client_->ReadOutput(id, v1::OUTPUT_STREAM_STDOUT, &dropped), "first\n");
  EXPECT_EQ(client_->ReadOutput(id, v1::OUTPUT_STREAM_STDERR, &dropped), "second\n");
}

// Proves: 100 MB on one line is counted exactly, retained within the output
// cap (head and tail), and neither the agent nor the coordinator holds it in
// memory.
TEST_F(HostileTasksTest, HundredMegabytesWithoutANewline) {
  constexpr int64_t kBytes = 100'000'000;
  const std::string id = Submit(absl::StrCat("head -c ", kBytes, " /dev/zero | tr '\\0' x"));
  int64_t agent_peak = 0, coordinator_peak = 0;
  v1::Task t;
  WaitFor(
      [&] {
        agent_peak = std::max(agent_peak, ResidentBytes(agents_[0]->pid()));
        coordinator_peak = std::max(coordinator_peak, ResidentBytes(coordinator_->pid()));
        t = Get(id);
        return IsFinalStatus(t.status());
      },
      absl::Seconds(120));
  EXPECT_EQ(t.status(), v1::TASK_STATUS_SUCCEEDED) << t.DebugString();
  EXPECT_EQ(t.stdout().total_bytes(), kBytes);
  EXPECT_GT(t.stdout().dropped_bytes(), 0);
  int64_t dropped = 0;
  const std::string kept = client_->ReadOutput(id, v1::OUTPUT_STREAM_STDOUT, &dropped);
  EXPECT_EQ(static_cast<int64_t>(kept.size()) + dropped, kBytes);
  EXPECT_EQ(kept.find_first_not_of('x'), std::string::npos);
  std::printf("peak RSS while streaming 100 MB: agent %.1f MB, coordinator %.1f MB\n",
              agent_peak / 1e6, coordinator_peak / 1e6);
  if (kResidentMemoryIsMeaningful) {
    EXPECT_LT(agent_peak, 64 << 20) << "the agent held the output in memory";
    EXPECT_LT(coordinator_peak, 256 << 20) << "the coordinator held the output in memory";
  }
}

// Proves: the task ends when its main process exits, even though a
// background child still holds the pipe; the child is killed, not orphaned.
TEST_F(HostileTasksTest, ExitWhileChildrenHoldThePipe) {
  const std::string id = Submit("sleep 60 & echo $!; echo done");
  const v1::Task t = WaitFinal(id, absl::Seconds(20));
  EXPECT_EQ(t.status(), v1::TASK_STATUS_SUCCEEDED) << t.DebugString();
  const std::vector<pid_t> pids = PrintedPids(id, 1);
  ASSERT_EQ(pids.size(), 1u);
  EXPECT_TRUE(WaitFor([&] { return ProcessGone(pids[0]); })) << pids[0];
}

}  // namespace
}  // namespace taskgrid
