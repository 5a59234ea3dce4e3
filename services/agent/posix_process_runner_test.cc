// Tests PosixProcessRunner against real processes: output plumbing, PATH and
// environment handling, error codes, process-group cleanup, termination,
// flow control and destruction.
#include "services/agent/posix_process_runner.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/agent/testing/process_collector.h"
#include "services/common/testing/test_util.h"

namespace taskgrid {
namespace {

using ::testing::IsEmpty;
using ::testing::SizeIs;

class PosixProcessRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/pprt_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    tmp_dir_ = std::filesystem::canonical(tmpl).string();
  }
  void TearDown() override { std::filesystem::remove_all(tmp_dir_); }

  static ProcessSpec Spec(std::vector<std::string> argv) {
    ProcessSpec spec;
    spec.argv = std::move(argv);
    spec.env = {"PATH=/usr/bin:/bin"};
    return spec;
  }
  static ProcessSpec Shell(const std::string& script) { return Spec({"/bin/sh", "-c", script}); }

  absl::StatusOr<std::unique_ptr<RunningProcess>> Start(const ProcessSpec& spec, Collector& c) {
    return runner_.Start(spec, c.OnOutput(), c.OnExit());
  }

  // Writes an executable (or not) file into tmp_dir_.
  std::string WriteFile(const std::string& name, const std::string& content, mode_t mode) {
    const std::string path = tmp_dir_ + "/" + name;
    std::ofstream(path) << content;
    chmod(path.c_str(), mode);
    return path;
  }

  PosixProcessRunner runner_;
  std::string tmp_dir_;
};

TEST_F(PosixProcessRunnerTest, SeparatesStreamsAndReportsExitCode) {
  Collector c;
  auto p = Start(Shell("echo out; echo err >&2; exit 3"), c);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(c.WaitExit());
  EXPECT_EQ(c.out(), "out\n");
  EXPECT_EQ(c.err(), "err\n");
  EXPECT_EQ(c.exit().exit_code, 3);
  EXPECT_EQ(c.exit().signal, 0);
  EXPECT_EQ(c.exit().survivors, 0);
  EXPECT_EQ(c.exit_calls(), 1);
  EXPECT_FALSE(c.output_after_exit());
}

TEST_F(PosixProcessRunnerTest, FindsProgramInSpecPath) {
  Collector c;
  auto p = Start(Spec({"true"}), c);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(c.WaitExit());
  EXPECT_EQ(c.exit().exit_code, 0);
}

TEST_F(PosixProcessRunnerTest, SearchesTheChildsPathNotTheAgents) {
  WriteFile("tg_only_here", "#!/bin/sh\necho found\n", 0755);
  ProcessSpec spec = Spec({"tg_only_here"});
  spec.env = {absl::StrCat("PATH=/nonexistent:", tmp_dir_, ":/bin")};
  Collector c;
  auto p = Start(spec, c);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(c.WaitExit());
  EXPECT_EQ(c.out(), "found\n");
}

TEST_F(PosixProcessRunnerTest, MissingProgramIsNotFound) {
  Collector c;
  EXPECT_THAT(Start(Spec({"tg-no-such-program"}), c), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(Start(Spec({"/nonexistent/tg-prog"}), c), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(PosixProcessRunnerTest, NonExecutableProgramIsPermissionDenied) {
  const std::string path = WriteFile("not_exec", "#!/bin/sh\n", 0644);
  Collector c;
  EXPECT_THAT(Start(Spec({path}), c), StatusIs(absl::StatusCode::kPermissionDenied));
  ProcessSpec spec = Spec({"not_exec"});
  spec.env = {absl::StrCat("PATH=", tmp_dir_)};
  EXPECT_THAT(Start(spec, c), StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(PosixProcessRunnerTest, EmptyArgvIsInvalid) {
  Collector c;
  EXPECT_THAT(Start(ProcessSpec{}, c), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(PosixProcessRunnerTest, BadCwdIsPermissionDenied) {
  Collector c;
  ProcessSpec spec = Spec({"true"});
  spec.cwd = tmp_dir_ + "/missing";
  auto missing = Start(spec, c);
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(missing.status().message(), ::testing::HasSubstr("missing"));
  spec.cwd = WriteFile("a_file", "", 0644);
  EXPECT_THAT(Start(spec, c), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_FALSE(c.exited());
}

TEST_F(PosixProcessRunnerTest, RunsInCwd) {
  ProcessSpec spec = Spec({"pwd"});
  spec.cwd = tmp_dir_;
  Collector c;
  auto p = Start(spec, c);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(c.WaitExit());
  EXPECT_EQ(c.out(), tmp_dir_ + "\n");
}

TEST_F(PosixProcessRunnerTest, EnvironmentIsExactlySpecEnv) {
  ProcessSpec spec = Spec({"env"});
  spec.env = {"PATH=/usr/bin:/bin", "TG_FOO=bar baz"};
  Collector c;
  auto p = Start(spec, c);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(c.WaitExit());
  EXPECT_EQ(c.out(), "PATH=/usr/bin:/bin\nTG_FOO=bar baz\n");
}

TEST_F(PosixProcessRunnerTest, FeedsStdin) {
  ProcessSpec spec = Spec({"cat"});
  spec.stdin_data.resize(100 * 1024);
  for (size_t i = 0; i < spec.stdin_data.size(); ++i) {
    spec.stdin_data[i] = static_cast<char>((i * 7919) % 256);  // includes NULs
  }
  Collector c;
  auto p = Start(spec, c);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(c.WaitExit());
  EXPECT_EQ(c.exit().exit_code, 0);
  EXPECT_TRUE(c.out() == spec.stdin_data) << "got " << c.out_size() << " bytes";
}

TEST_F(PosixProcessRunnerTest, StdinIgnoredByChildIsNoProblem) {
  // The child exits without reading: writing the rest fails with EPIPE, which
  // must neither kill the test process (SIGPIPE) nor hang the runner.
  ProcessSpec spec = Spec({"true"});
  spec.stdin_data.assign(1 << 20, 'x');
  Collector c;
  auto p = Start(spec, c);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(c.WaitExit());
  EXPECT_EQ(c.exit().exit_code, 0);
}

TEST_F(PosixProcessRunnerTest, ChildGetsDefaultSigpipe) {
  // The runner ignores SIGPIPE in the agent; the child must not inherit that,
  // or `yes | head` style pipelines would never end.
  Collector c;
  auto p = Start(Shell("yes | head -c 10 > /dev/null; echo done"), c);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(c.WaitExit());
  EXPECT_EQ(c.out(), "done\n");
}

TEST_F(PosixProcessRunnerTest, LargeOutputArrivesInOrder) {
  constexpr int kLines = 1'500'000;  // about 10.9 MB
  std::string expected;
  expected.reserve(11'000'000);
  for (int i = 1; i <= kLines; ++i) absl::StrAppend(&expected, i, "\n");
  Collector c;
  auto p = Start(Spec({"seq", "1", absl::StrCat(kLines)}), c);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(c.WaitExit(absl::Seconds(30)));
  EXPECT_EQ(c.out_size(), expected.size());
  EXPECT_TRUE(c.out() == expected);
  EXPECT_EQ(c.exit().exit_code, 0);
}

TEST_F(PosixProcessRunnerTest, TerminateKillsTheWholeTree) {
  Collector c;
  auto p = Start(Shell("sleep 1000 & echo $!; sleep 1000 & echo $!; wait"), c);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(WaitFor([&] { return ParsePids(c.out()).size() == 2; }));
  const std::vector<pid_t> pids = ParsePids(c.out());
  for (pid_t pid : pids) ASSERT_FALSE(ProcessGone(pid)) << pid;

  (*p)->Terminate(absl::Seconds(5));
  ASSERT_TRUE(c.WaitExit());
  EXPECT_EQ(c.exit().signal, SIGTERM);
  EXPECT_EQ(c.exit().survivors, 0);
  for (pid_t pid : pids) EXPECT_TRUE(ProcessGone(pid)) << pid;
  (*p)->Terminate(absl::Seconds(1));  // after the exit: a no-op
  EXPECT_EQ(c.exit_calls(), 1);
}

TEST_F(PosixProcessRunnerTest, TerminateEscalatesToSigkill) {
  Collector c;
  auto p = Start(Shell("trap '' TERM; echo ready; while :; do sleep 0.05; done"), c);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(WaitFor([&] { return c.out() == "ready\n"; }));
  const absl::Time start = absl::Now();
  (*p)->Terminate(absl::Milliseconds(200));
  (*p)->Terminate(absl::Hours(1));  // must not extend the first deadline
  ASSERT_TRUE(c.WaitExit());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(200));
  EXPECT_EQ(c.exit().signal, SIGKILL);
  EXPECT_EQ(c.exit().survivors, 0);
}

TEST_F(PosixProcessRunnerTest, MainExitKillsBackgroundChildHoldingPipe) {
  Collector c;
  const absl::Time start = absl::Now();
  auto p = Start(Shell("sleep 1000 & echo $!; exit 0"), c);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(c.WaitExit());
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(c.exit().exit_code, 0);
  EXPECT_EQ(c.exit().signal, 0);
  EXPECT_EQ(c.exit().survivors, 0);
  const std::vector<pid_t> pids = ParsePids(c.out());
  ASSERT_THAT(pids, SizeIs(1));
  EXPECT_TRUE(ProcessGone(pids[0]));
}

TEST_F(PosixProcessRunnerTest, EscapedWriterCannotHoldExitForever) {
  // setsid leaves the group, so the group kill misses it and it keeps stdout
  // open; the runner must still finish instead of waiting for end of file.
  // The main process exits only once the escapee has reported its pid.
  ProcessSpec spec = Shell(
      "setsid sh -c 'echo $$ > escaped; exec sleep 30' & "
      "while [ ! -s escaped ]; do sleep 0.01; done");
  spec.cwd = tmp_dir_;
  Collector c;
  auto p = Start(spec, c);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(c.WaitExit());
  EXPECT_EQ(c.exit().exit_code, 0);
  EXPECT_EQ(c.exit().survivors, 0);  // the escapee is not in the group

  int64_t escaped_pid = 0;
  std::ifstream(tmp_dir_ + "/escaped") >> escaped_pid;
  ASSERT_GT(escaped_pid, 0);
  EXPECT_FALSE(ProcessGone(escaped_pid));  // it really outlived the group
  kill(static_cast<pid_t>(escaped_pid), SIGKILL);
}

TEST_F(PosixProcessRunnerTest, PauseStopsReadingUntilResumed) {
  constexpr size_t kBytes = 1'000'000;
  Collector c;
  // The child writes only once the pause is in place: head fills a pipe
  // faster than a test thread descheduled between Start and the pause gets
  // back (843,776 bytes were once read before the pause arrived).
  ProcessSpec spec =
      Shell(absl::StrCat("while [ ! -e go ]; do sleep 0.01; done; head -c ", kBytes, " /dev/zero"));
  spec.cwd = tmp_dir_;
  auto p = Start(spec, c);
  ASSERT_TRUE(p.ok()) << p.status();
  (*p)->SetOutputPaused(true);
  std::ofstream(tmp_dir_ + "/go").put('\n');
  // Observing the absence of progress needs a span of time.
  absl::SleepFor(absl::Milliseconds(300));
  const size_t while_paused = c.out_size();
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_LE(while_paused, 200u * 1024);
  EXPECT_EQ(c.out_size(), while_paused);
  EXPECT_FALSE(c.exited());

  (*p)->SetOutputPaused(false);
  ASSERT_TRUE(c.WaitExit());
  EXPECT_EQ(c.out_size(), kBytes);
  EXPECT_EQ(c.exit().exit_code, 0);
}

TEST_F(PosixProcessRunnerTest, ExitWaitsForResumeToDrain) {
  Collector c;
  auto p = Start(Shell("sleep 0.1; echo hi"), c);
  ASSERT_TRUE(p.ok()) << p.status();
  (*p)->SetOutputPaused(true);
  // The child has exited long before; on_exit must wait for the drain.
  EXPECT_FALSE(c.WaitExit(absl::Milliseconds(500)));
  EXPECT_THAT(c.out(), IsEmpty());
  (*p)->SetOutputPaused(false);
  ASSERT_TRUE(c.WaitExit());
  EXPECT_EQ(c.out(), "hi\n");
  EXPECT_EQ(c.exit().exit_code, 0);
}

TEST_F(PosixProcessRunnerTest, ReportsResourceUsage) {
  Collector c;
  auto p = Start(Shell("i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"), c);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(c.WaitExit(absl::Seconds(30)));
  EXPECT_EQ(c.exit().exit_code, 0);
  EXPECT_GT(c.exit().cpu_time, absl::ZeroDuration());
  EXPECT_GT(c.exit().max_rss_bytes, 0);
}

TEST_F(PosixProcessRunnerTest, DestructionKillsPromptly) {
  Collector c;
  auto p = Start(Spec({"sleep", "1000"}), c);
  ASSERT_TRUE(p.ok()) << p.status();
  const int64_t pid = (*p)->pid();
  ASSERT_FALSE(ProcessGone(pid));
  const absl::Time start = absl::Now();
  p->reset();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_TRUE(ProcessGone(pid));
  // Documented choice: on_exit still runs, once, before the destructor returns.
  EXPECT_TRUE(c.exited());
  EXPECT_EQ(c.exit_calls(), 1);
  EXPECT_EQ(c.exit().signal, SIGKILL);
}

TEST_F(PosixProcessRunnerTest, DestructionWhilePausedAfterExit) {
  Collector c;
  auto p = Start(Shell("echo bye"), c);
  ASSERT_TRUE(p.ok()) << p.status();
  (*p)->SetOutputPaused(true);
  p->reset();
  EXPECT_EQ(c.exit_calls(), 1);
}

}  // namespace
}  // namespace taskgrid
