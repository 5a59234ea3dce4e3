// Hostile tasks: commands that ignore SIGTERM, fork grandchildren, close
// their stdout early, write 100 MB without a newline, or exit while their
// children keep the pipe open, leave the task's session or daemonize, or
// outlive an agent killed with SIGKILL, run through the real coordinator and
// agent binaries. Each is reported correctly and nothing is left running.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tests/faults/fault_cluster.h"

namespace taskgrid {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class HostileTasksTest : public FaultCluster {
 protected:
  void SetUp() override {
    FaultCluster::SetUp();
    StartCoordinator();  // --kill_grace=1s
    // An id of this test process's own: an agent sweeps what dead runs of
    // its id left, and tests run in parallel.
    agent_id_ = absl::StrCat("hostile-", getpid());
    StartAgent(agent_id_, 4);
    ASSERT_TRUE(WaitAgents(1));
  }

  // The pids a task printed, one per line, once it printed `n` of them.
  std::vector<pid_t> PrintedPids(const std::string& id, size_t n) {
    std::vector<pid_t> pids;
    WaitFor(
        [&] {
          int64_t dropped = 0;
          pids = ParsePids(client_->ReadOutput(id, v1::OUTPUT_STREAM_STDOUT, &dropped));
          return pids.size() >= n;
        },
        absl::Seconds(20));
    return pids;
  }

  std::string agent_id_;
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

// Proves: a child that left the task's session (setsid) dies on cancel.
TEST_F(HostileTasksTest, ASessionLeaderChildDiesOnCancel) {
  const std::string id = Submit("setsid sleep 60 & echo $!; sleep 60 & echo $!; wait");
  const std::vector<pid_t> pids = PrintedPids(id, 2);
  ASSERT_EQ(pids.size(), 2u);
  for (pid_t pid : pids) ASSERT_FALSE(ProcessGone(pid)) << pid;
  Cancel(id);
  EXPECT_EQ(WaitFinal(id).status(), v1::TASK_STATUS_CANCELLED);
  for (pid_t pid : pids) EXPECT_TRUE(WaitFor([&] { return ProcessGone(pid); })) << pid;
}

// Proves: a double-forked daemon (re-parented, in its own session) dies when
// the task that started it succeeds.
TEST_F(HostileTasksTest, ADaemonDiesWhenItsTaskSucceeds) {
  const std::string id =
      Submit("f=/tmp/daemon.$TASKGRID_TASK_ID; (setsid sh -c \"echo \\$\\$; touch $f; exec sleep 60\" &); "
             "while [ ! -e $f ]; do sleep 0.01; done; rm $f");
  const std::vector<pid_t> pids = PrintedPids(id, 1);
  ASSERT_EQ(pids.size(), 1u);
  EXPECT_EQ(WaitFinal(id).status(), v1::TASK_STATUS_SUCCEEDED);
  EXPECT_TRUE(WaitFor([&] { return ProcessGone(pids[0]); })) << pids[0];
}

// The pid of the cgroup guardian the agent `agent` started.
pid_t GuardianOf(pid_t agent) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &pid)) continue;
    std::ifstream cmdline(entry.path() / "cmdline");
    std::string args((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
    if (!absl::StrContains(args, "taskgrid-agent-guardian")) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const size_t paren = line.rfind(')');
    int ppid = 0;
    if (paren != std::string::npos && sscanf(line.c_str() + paren + 1, " %*c %d", &ppid) == 1 &&
        ppid == agent) {
      return pid;
    }
  }
  return 0;
}

// Proves: no process of a task outlives its agent killed with SIGKILL, not
// even one that left the task's session, and the agent serves again after.
TEST_F(HostileTasksTest, NoProcessOutlivesItsAgentKilledWithSigkill) {
  const std::string id = Submit("setsid sleep 1000 & echo $!; sleep 1000 & echo $!; echo $$; wait");
  const std::vector<pid_t> pids = PrintedPids(id, 3);
  ASSERT_EQ(pids.size(), 3u);
  const absl::Time killed = absl::Now();
  agents_[0]->Kill(SIGKILL);
  for (pid_t pid : pids) EXPECT_TRUE(WaitFor([&] { return ProcessGone(pid); })) << pid;
  std::printf("every process of the task gone %.0f ms after the agent's SIGKILL\n",
              absl::ToDoubleMilliseconds(absl::Now() - killed));
  ASSERT_TRUE(agents_[0]->Start());
  EXPECT_EQ(WaitFinal(Submit("echo again")).status(), v1::TASK_STATUS_SUCCEEDED);
}

// Proves: when nothing killed them with the agent (its guardian died first),
// the restarted agent kills the processes of the tasks its earlier run left.
TEST_F(HostileTasksTest, ARestartedAgentKillsWhatItsKilledRunLeft) {
  const std::string id = Submit("setsid sleep 1000 & echo $!; sleep 1000 & echo $!; wait");
  const std::vector<pid_t> pids = PrintedPids(id, 2);
  ASSERT_EQ(pids.size(), 2u);
  const pid_t guardian = GuardianOf(agents_[0]->pid());
  ASSERT_GT(guardian, 0);
  kill(guardian, SIGKILL);
  ASSERT_TRUE(WaitFor([&] { return ProcessGone(guardian); }));
  agents_[0]->Kill(SIGKILL);
  // Nothing is left to kill them until the agent starts again: a live
  // guardian kills within about 10 ms, so this window would show one.
  absl::SleepFor(absl::Milliseconds(100));
  for (pid_t pid : pids) ASSERT_FALSE(ProcessGone(pid)) << pid << " died without the sweep";

  const absl::Time restarted = absl::Now();
  ASSERT_TRUE(agents_[0]->Start());
  for (pid_t pid : pids) EXPECT_TRUE(WaitFor([&] { return ProcessGone(pid); })) << pid;
  std::printf("the earlier run's processes gone %.0f ms after the agent started again\n",
              absl::ToDoubleMilliseconds(absl::Now() - restarted));
  EXPECT_EQ(WaitFinal(id).status(), v1::TASK_STATUS_LOST);
}

// Proves: a task that outgrows its memory limit is killed by the kernel and
// fails "out of memory" with its peak memory.
TEST_F(HostileTasksTest, AMemoryHogIsKilledAtItsLimitAndNamed) {
  v1::SubmitRequest req;
  req.mutable_spec()->mutable_shell()->set_command(
      "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}");
  req.mutable_spec()->mutable_resources()->set_memory_bytes(32 << 20);
  v1::SubmitResponse resp;
  ASSERT_TRUE(client_->Submit(req, &resp).ok());
  const v1::Task queued = Get(resp.task().id());
  if (absl::StrContains(queued.waiting_reason(), "cannot enforce")) {
    GTEST_SKIP() << "no memory limits here: " << queued.waiting_reason();
  }
  const v1::Task t = WaitFinal(resp.task().id());
  EXPECT_EQ(t.status(), v1::TASK_STATUS_FAILED) << t.DebugString();
  EXPECT_THAT(t.status_reason(), HasSubstr("out of memory"));
  EXPECT_THAT(t.status_reason(), HasSubstr("32 MiB memory limit"));
  EXPECT_TRUE(t.exit().oom_killed());
  EXPECT_GT(t.exit().memory_peak_bytes(), 16 << 20);
}

// Proves: the agent offers its host's memory, and a task asking for more
// than any agent offers waits, saying so.
TEST_F(HostileTasksTest, ARequestLargerThanEveryAgentWaitsAndSaysSo) {
  v1::SubmitRequest req;
  req.mutable_spec()->mutable_shell()->set_command("true");
  req.mutable_spec()->mutable_resources()->set_cpus(1000);
  v1::SubmitResponse resp;
  ASSERT_TRUE(client_->Submit(req, &resp).ok());
  const v1::Task t = Get(resp.task().id());
  if (absl::StrContains(t.waiting_reason(), "cannot enforce")) {
    GTEST_SKIP() << "no CPU limits here: " << t.waiting_reason();
  }
  EXPECT_EQ(t.status(), v1::TASK_STATUS_QUEUED);
  EXPECT_THAT(t.waiting_reason(), HasSubstr("no agent can hold it (" + agent_id_ + " offers "));
  EXPECT_THAT(t.waiting_reason(), HasSubstr("less than the 1000 CPUs asked"));
}

using NoCgroupsTest = FaultCluster;

// Proves: where no cgroup can be made, the agent falls back to process
// groups and makes no cgroup: cancel still kills the task's group.
TEST_F(NoCgroupsTest, TheAgentFallsBackToProcessGroups) {
  StartCoordinator();
  const std::string agent_id = absl::StrCat("nocgroups-", getpid());
  StartAgent(agent_id, 1, "", {"--cgroup_root=/no/such/parent/root"});
  ASSERT_TRUE(WaitAgents(1));
  const std::string id = Submit("sleep 60 & echo $!; cat /proc/self/cgroup; wait");
  ASSERT_TRUE(WaitFor([&] {
    int64_t dropped = 0;
    return absl::StrContains(client_->ReadOutput(id, v1::OUTPUT_STREAM_STDOUT, &dropped), "0::");
  }));
  int64_t dropped = 0;
  const std::string out = client_->ReadOutput(id, v1::OUTPUT_STREAM_STDOUT, &dropped);
  EXPECT_THAT(out, Not(HasSubstr("taskgrid-" + agent_id)));
  pid_t child = 0;
  ASSERT_TRUE(absl::SimpleAtoi(out.substr(0, out.find('\n')), &child)) << out;
  Cancel(id);
  EXPECT_EQ(WaitFinal(id).status(), v1::TASK_STATUS_CANCELLED);
  EXPECT_TRUE(WaitFor([&] { return ProcessGone(child); })) << child;
}

}  // namespace
}  // namespace taskgrid
