// The production ProcessRunner: starts each task with vfork + execve in a
// fresh session (so its process group can be signalled as a whole) and, when
// given cgroups, in a cgroup of its own; feeds its stdin and streams its
// stdout/stderr from one epoll thread for all of the runner's processes,
// enforces the SIGTERM-then-SIGKILL termination grace, and makes sure nothing
// of the task outlives it by killing the group (or the cgroup) when the main
// process exits and then checking that it is really empty. Linux only
// (pidfd, eventfd, epoll, /proc, cgroup v2).
#ifndef TASKGRID_SERVICES_AGENT_POSIX_PROCESS_RUNNER_H_
#define TASKGRID_SERVICES_AGENT_POSIX_PROCESS_RUNNER_H_

#include <sys/types.h>

#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "services/agent/process_runner.h"
#include "services/agent/process_spawn.h"
#include "services/agent/task_cgroups.h"

namespace taskgrid {

class ProcessLoop;  // The I/O thread, private to the .cc.

// Starts real processes. Thread-safe: any number of processes may be started
// concurrently, and a RunningProcess may outlive the runner that started it
// (the I/O thread lives until the last of them is gone). The caller owns
// each returned RunningProcess. Every callback of every process runs on the
// one I/O thread, so a slow callback delays all of them; a RunningProcess
// must not be destroyed from any of the runner's callbacks.
//
// Process-wide side effect: the first construction sets SIGPIPE to SIG_IGN, so
// that writing stdin to a child that stopped reading yields EPIPE instead of
// killing the agent. Children get every signal at its default and an empty
// signal mask (which signals the agent ignores is read once, at the first
// start: ignore no further signal after it). The agent must not set SIGCHLD to SIG_IGN or reap
// arbitrary children (waitpid(-1, ...)): the runner reaps its own children.
//
// Beyond ProcessRunner's contract:
//  - argv[0] without a '/' is looked up in the PATH of ProcessSpec::env
//    ("/usr/local/bin:/usr/bin:/bin" when env has none); relative PATH
//    entries and relative program paths resolve against ProcessSpec::cwd.
//  - Errors: kInvalidArgument for an empty argv; kNotFound when the program
//    does not exist; kPermissionDenied when it is not executable or when cwd
//    does not exist, is not a directory or cannot be searched; kInternal for
//    anything else (pipes, pidfd, other spawn failures).
//  - RunningProcess::pid() is also the process group id and session id.
//  - Output chunks are at most 64 KiB. Terminate() after the main process has
//    exited is a no-op (the group was already killed).
//  - Destroying a RunningProcess SIGKILLs the group, drains what is left in
//    the pipes (ignoring SetOutputPaused) and still runs on_exit, exactly
//    once and last, before the destructor returns; exit.signal is then
//    SIGKILL unless the process had already ended on its own.
//  - Without cgroups, a process that leaves the group (setsid/setpgid)
//    escapes the kills; in a cgroup nothing does. Should such a process keep
//    the output pipes open, it cannot hold the task forever: once the group
//    is gone, the runner waits at most one further second of unpaused time
//    for end of file and then closes its ends of the pipes.
class PosixProcessRunner final : public ProcessRunner {
 public:
  // With `run_as`, every process runs as that user and group (no
  // supplementary groups) through setpriv(1), so it cannot read or signal
  // the agent, which must then be root. With `cgroups` (which must outlive
  // the runner and every process it started), every process enters a cgroup
  // of its own, labelled with ProcessSpec::name, before it runs; cancel,
  // timeout and the main process's exit then kill everything in it,
  // whatever left the group.
  explicit PosixProcessRunner(std::optional<RunAs> run_as = std::nullopt,
                              TaskCgroups* cgroups = nullptr);
  PosixProcessRunner(const PosixProcessRunner&) = delete;
  PosixProcessRunner& operator=(const PosixProcessRunner&) = delete;

  absl::StatusOr<std::unique_ptr<RunningProcess>> Start(const ProcessSpec& spec,
                                                        OutputCallback on_output,
                                                        ExitCallback on_exit) override;
  std::vector<std::string> EnforcedLimits() const override;

 private:
  const std::optional<RunAs> run_as_;
  TaskCgroups* const cgroups_;
  const std::shared_ptr<ProcessLoop> loop_;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_AGENT_POSIX_PROCESS_RUNNER_H_
