// Execution as a seam: the agent starts processes through ProcessRunner, so
// tests can replay scripted output and exits (FakeProcessRunner) while
// production forks real process groups (PosixProcessRunner).
#ifndef TASKGRID_SERVICES_AGENT_PROCESS_RUNNER_H_
#define TASKGRID_SERVICES_AGENT_PROCESS_RUNNER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace taskgrid {

// Values match taskgrid.v1.OutputStream.
enum class StdStream { kStdout = 1, kStderr = 2 };

// Limits of a process tree (taskgrid.v1.Resources); 0 means none.
struct ProcessLimits {
  int64_t memory_bytes = 0;
  double cpus = 0;
  int64_t pids = 0;
  bool any() const { return memory_bytes > 0 || cpus > 0 || pids > 0; }
};

struct ProcessSpec {
  // Program and arguments; argv[0] is looked up in PATH from `env`.
  std::vector<std::string> argv;
  // Complete environment as "KEY=VALUE" entries (nothing is inherited).
  std::vector<std::string> env;
  // Working directory; empty keeps the runner's.
  std::string cwd;
  // Written to the child's stdin, which is then closed.
  std::string stdin_data;
  // Names the process where the runner keeps one (its cgroup's label): the
  // task attempt, which the agent reports if it must kill it after a crash.
  std::string name;
  // Enforced on the whole tree; a runner that cannot refuses to start it.
  ProcessLimits limits;
};

struct ProcessExit {
  // Exit status when the process exited normally.
  int exit_code = 0;
  // Terminating signal, or 0.
  int signal = 0;
  // User + system CPU time and peak RSS of the process (from wait4).
  absl::Duration cpu_time;
  int64_t max_rss_bytes = 0;
  // Peak memory of the whole tree where the runner measures it (else 0),
  // and whether the kernel killed a process of it at its memory limit.
  int64_t memory_peak_bytes = 0;
  bool oom_killed = false;
  // Processes of the group still alive after the final SIGKILL (should be 0).
  int survivors = 0;
  // What went wrong around the process, in words (empty when nothing did).
  std::string error;
  // The container it ran in, for container tasks.
  std::string container_id;
};

using OutputCallback = std::function<void(StdStream stream, absl::string_view data)>;
using ExitCallback = std::function<void(const ProcessExit& exit)>;

// A started process group. Thread-safe. Destroying it SIGKILLs the whole group
// and waits until the callbacks have returned; it must not be destroyed from
// inside its own callbacks.
class RunningProcess {
 public:
  virtual ~RunningProcess() = default;
  virtual int64_t pid() const = 0;
  // Sends SIGTERM to the whole process group now and SIGKILL after `grace`
  // if anything of the group remains. Repeated calls never extend the grace.
  virtual void Terminate(absl::Duration grace) = 0;
  // Flow control: while paused the runner stops reading the pipes, so a
  // child that keeps writing blocks once the pipe buffer is full.
  virtual void SetOutputPaused(bool paused) = 0;
};

// Starts processes. Thread-safe.
class ProcessRunner {
 public:
  virtual ~ProcessRunner() = default;
  // Starts `spec` in a new session (its own process group). `on_output` and
  // `on_exit` run on a runner-owned thread and must not block; output arrives
  // in order per stream; `on_exit` runs exactly once, last, after both pipes
  // reached end of file. When the main process exits, whatever else remains
  // of its group is killed, so a task never leaks processes.
  // Returns kNotFound when the program does not exist, kPermissionDenied when
  // it is not executable or `cwd` is not accessible, kInternal otherwise.
  virtual absl::StatusOr<std::unique_ptr<RunningProcess>> Start(const ProcessSpec& spec,
                                                                OutputCallback on_output,
                                                                ExitCallback on_exit) = 0;
  // The limits of ProcessSpec::limits it enforces ("memory", "cpus",
  // "pids"); it refuses to start a process with any other.
  virtual std::vector<std::string> EnforcedLimits() const { return {}; }
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_AGENT_PROCESS_RUNNER_H_
