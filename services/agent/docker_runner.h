// Container tasks: runs DockerSpec operations against the Docker Engine API
// and presents each as a RunningProcess, so the agent streams, pauses,
// cancels and reports a container exactly like a shell process. A run
// creates a labelled container (task id, attempt, agent id), starts it,
// follows its demultiplexed stdout and stderr from the first byte, waits for
// its exit code, and removes it unless kept; cancel stops it (SIGTERM, then
// SIGKILL after the grace). After an agent restart, FindOwned and Adopt pick
// up the containers it had started, so none is left behind.
#ifndef TASKGRID_SERVICES_AGENT_DOCKER_RUNNER_H_
#define TASKGRID_SERVICES_AGENT_DOCKER_RUNNER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/agent/agent_metrics.h"
#include "services/agent/docker_client.h"
#include "services/agent/process_runner.h"
#include "taskgrid/v1/task.pb.h"

namespace taskgrid {

struct DockerOptions {
  // The Engine API's unix socket.
  std::string socket = "/var/run/docker.sock";
  // Written on every container this agent creates (label taskgrid.agent_id);
  // operations touch only containers that carry it.
  std::string agent_id;
  // Host paths containers may bind-mount (a mount's real path must lie
  // under one of them); empty: no mounts.
  std::vector<std::string> mount_prefixes;
  // Network modes tasks may ask for.
  std::vector<std::string> networks = {"none", "bridge"};
  // Bound on every Engine API call except followed output.
  absl::Duration api_timeout = absl::Seconds(60);

  // kInvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

// A container this agent created, as found on the daemon.
struct OwnedContainer {
  std::string id;
  std::string task_id;
  uint32_t attempt = 0;
  // The Engine's state: created, running, exited, ...
  std::string state;
  bool running() const { return state == "running"; }
  // Created with DockerSpec.keep.
  bool keep = false;
};

// Thread-safe; holds no per-task state. Each returned RunningProcess owns
// its threads and may outlive the runner's callers but not the runner.
class DockerRunner {
 public:
  // `metrics` may be null; it must outlive the runner.
  DockerRunner(DockerOptions options, AgentMetrics* metrics);

  // OK when the daemon answers; otherwise why not (kUnavailable: not
  // running; kPermissionDenied: no access to the socket).
  absl::Status Probe() const;

  // Starts `spec` for `attempt` of `task_id` on a thread of its own, under
  // ProcessRunner::Start's callback contract. Never fails here: every error
  // (policy, image missing, Docker down, bad limits, name conflicts) arrives
  // through on_exit with ProcessExit::error and exit code 125 (126 or 127
  // when the command cannot be executed), like `docker run`.
  std::unique_ptr<RunningProcess> Start(const std::string& task_id, uint32_t attempt,
                                        const v1::DockerSpec& spec, OutputCallback on_output,
                                        ExitCallback on_exit) const;

  // Containers carrying this agent's label.
  absl::StatusOr<std::vector<OwnedContainer>> FindOwned() const;

  // Follows `c` as its run would have: its output from the start less the
  // first `skip_stdout` / `skip_stderr` bytes (already delivered), its exit
  // code, then its removal unless kept.
  std::unique_ptr<RunningProcess> Adopt(const OwnedContainer& c, int64_t skip_stdout,
                                        int64_t skip_stderr, OutputCallback on_output,
                                        ExitCallback on_exit) const;

  const DockerClient& client() const { return client_; }
  const DockerOptions& options() const { return options_; }
  AgentMetrics* metrics() const { return metrics_; }

 private:
  const DockerOptions options_;
  const DockerClient client_;
  AgentMetrics* const metrics_;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_AGENT_DOCKER_RUNNER_H_
