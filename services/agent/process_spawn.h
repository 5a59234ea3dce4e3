// Starting one task process: PATH lookup in the task's own environment, the
// pipes, the cgroup, and vfork + execve into a fresh session with default
// signal handling.
// What happens after the start (reading, killing, reaping) is the runner's.
// Linux only (pidfd).
#ifndef TASKGRID_SERVICES_AGENT_PROCESS_SPAWN_H_
#define TASKGRID_SERVICES_AGENT_PROCESS_SPAWN_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/agent/process_runner.h"

namespace taskgrid {

// Owns a file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset();

 private:
  int fd_ = -1;
};

// The user tasks run as, when not the agent's own.
struct RunAs {
  uid_t uid = 0;
  gid_t gid = 0;
};

// The RunAs of `user` (a name or a uid). kFailedPrecondition unless the
// agent is root and setpriv is installed, kNotFound for an unknown user.
absl::StatusOr<RunAs> LookUpRunAs(const std::string& user);

// A process just started: `pid` is also its process group and session id.
// The parent's ends of the pipes are non-blocking; stdin_w is closed when the
// spec has no stdin data.
struct SpawnedProcess {
  pid_t pid = 0;
  UniqueFd pidfd;
  UniqueFd stdin_w;
  UniqueFd stdout_r;
  UniqueFd stderr_r;
};

// Starts `spec` (see PosixProcessRunner for the rules and the error codes).
// With `run_as`, through setpriv(1) as that user and group. With
// `cgroup_procs_fds` (cgroups' cgroup.procs open for writing), the child
// enters those cgroups before it runs anything.
absl::StatusOr<SpawnedProcess> SpawnProcess(const ProcessSpec& spec,
                                            const std::optional<RunAs>& run_as,
                                            const std::vector<int>& cgroup_procs_fds = {});

// strerror_r's text for `err`.
std::string ErrnoText(int err);
// INTERNAL: "<what>: <ErrnoText(err)>".
absl::Status ErrnoError(absl::string_view what, int err);

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_AGENT_PROCESS_SPAWN_H_
