// The agent: dials the coordinator, announces itself and what it still holds,
// runs assigned tasks through a ProcessRunner (shell) or a DockerRunner
// (containers, re-adopted after a restart), streams their output by byte
// offset with a bounded window of unacknowledged bytes (spooled to disk while
// the coordinator is away), reports exits, heartbeats, and reconnects with
// jittered exponential backoff.
#ifndef TASKGRID_SERVICES_AGENT_AGENT_H_
#define TASKGRID_SERVICES_AGENT_AGENT_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "services/agent/agent_metrics.h"
#include "services/agent/coordinator_link.h"
#include "services/agent/docker_runner.h"
#include "services/agent/host_sampler.h"
#include "services/agent/output_spool.h"
#include "services/agent/process_runner.h"
#include "services/common/secret_redactor.h"
#include "services/common/tls.h"
#include "taskgrid/v1/agent.grpc.pb.h"

namespace taskgrid {

struct AgentOptions {
  // Coordinator's gRPC address.
  std::string coordinator_address = "127.0.0.1:7000";
  // Unique id of this agent; defaults to the hostname in main.
  std::string agent_id;
  // Shared secret the coordinator expects.
  std::string token;
  // TLS to the coordinator (plaintext when tls.ca_file is empty); a client
  // certificate whose name is agent_id when the coordinator requires one.
  ChannelTlsOptions tls;
  // Labels for selectors (e.g. env=staging, role=web).
  std::map<std::string, std::string> labels;
  // Concurrent tasks; 0 means the number of CPUs.
  uint32_t slots = 0;
  // What tasks' resource requests may reserve here in all; a field left 0
  // is the host's (its memory, its CPUs).
  v1::Resources capacity;
  // What this agent refuses to run (told to the coordinator, and checked
  // again on every assignment).
  v1::AgentPolicy policy;
  // Output in flight (sent, not yet acknowledged) per task stream, and the
  // most kept in memory; while connected, the agent stops reading the pipe
  // at this much unacknowledged output and the process blocks on its next
  // write.
  int64_t output_window_bytes = 4 << 20;
  // While the coordinator is away, unacknowledged output per task stream is
  // spooled to an unnamed file in spool_dir up to this much; then the
  // process blocks until the coordinator is back.
  int64_t spool_bytes = 256 << 20;
  std::string spool_dir = "/var/tmp";
  // Reconnect backoff: starts at min, doubles up to max, with full jitter.
  absl::Duration reconnect_min = absl::Milliseconds(100);
  absl::Duration reconnect_max = absl::Seconds(10);
  // On Stop(), tasks get this long between SIGTERM and SIGKILL.
  absl::Duration shutdown_grace = absl::Seconds(5);

  // kInvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

// Thread-safe. Owns its connection thread and every running process; the
// runners and metrics must outlive it. Destroying it stops it.
class Agent {
 public:
  // `docker` may be null: the agent then runs no container tasks. With one,
  // the agent labels itself docker=true or docker=false by whether the
  // daemon answers, checked before each connection.
  Agent(AgentOptions options, ProcessRunner& runner, AgentMetrics* metrics,
        const DockerRunner* docker = nullptr);
  ~Agent();

  // Starts the connection loop in the background.
  void Start();
  // Terminates every task (SIGTERM, then SIGKILL after shutdown_grace),
  // reports what it can, closes the stream and joins. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // True while a stream is open and welcomed.
  bool connected() const ABSL_LOCKS_EXCLUDED(mu_);
  // Tasks with a live process or an unacknowledged report.
  size_t held_tasks() const ABSL_LOCKS_EXCLUDED(mu_);
  // Test hook: drops the current stream as a network failure would.
  void DropConnectionForTesting() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Execution {
    explicit Execution(const AgentOptions& o)
        : spool{OutputSpool(o.spool_dir, o.output_window_bytes),
                OutputSpool(o.spool_dir, o.output_window_bytes)} {}
    std::string task_id;
    uint32_t attempt = 0;
    std::unique_ptr<RunningProcess> process;
    // Per stream: unacknowledged output [spool.start(), spool.end()), of
    // which [spool.start(), sent) is on its way on the current stream.
    OutputSpool spool[2];
    int64_t sent[2] = {0, 0};
    bool paused = false;
    bool exited = false;
    bool finished_sent = false;  // On the current stream.
    bool forget = false;         // Coordinator no longer wants it.
    // Its process is being spawned (without the lock): nothing of it is
    // sent before its Started, and a cancel waits for the process.
    bool spawning = false;
    std::optional<absl::Duration> cancel_grace;
    v1::Finished finished;       // Valid once exited.
    // Hides the task's secret_env values (null without secrets).
    std::unique_ptr<SecretRedactor> redact[2];
    // The current stdout line, kept while it may be a "::progress" line.
    std::string stdout_line;
    bool line_is_candidate = true;
    // A container found after a restart, followed once the coordinator says
    // from which offsets (or stopped if it no longer wants it).
    std::optional<OwnedContainer> adopt;
    bool adopted = false;  // Found after a restart, not started by this run.
  };

  void RunLoop();
  // Checks the Docker daemon and, the first time it answers, takes up the
  // containers an earlier run of the agent left.
  void CheckDocker() ABSL_LOCKS_EXCLUDED(mu_);
  // Follows an adopted container from the offsets the coordinator holds.
  void StartAdoptedLocked(Execution& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Callbacks of one attempt's process or container.
  OutputCallback OutputTo(const std::string& task_id, uint32_t attempt);
  ExitCallback ExitTo(const std::string& task_id, uint32_t attempt);
  // What ends the connection loop's wait between heartbeats.
  bool WakeLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return link_done_ || interval_changed_;
  }
  v1::AgentMessage HelloLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnMessage(CoordinatorLink* link, const v1::CoordinatorMessage& m) ABSL_LOCKS_EXCLUDED(mu_);
  void OnLinkDone(CoordinatorLink* link, const grpc::Status& status) ABSL_LOCKS_EXCLUDED(mu_);
  void HandleWelcomeLocked(const v1::Welcome& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Spawns without the lock held; processes to destroy go to `dead`.
  void HandleAssignLocked(const v1::Assign& a, std::vector<std::unique_ptr<RunningProcess>>& dead)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reports a process now installed, and applies what happened meanwhile.
  void StartedLocked(Execution& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleAckLocked(const v1::Ack& a, std::vector<std::unique_ptr<RunningProcess>>& dead)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnOutput(const std::string& task_id, uint32_t attempt, StdStream stream,
                absl::string_view data) ABSL_LOCKS_EXCLUDED(mu_);
  void OnExit(const std::string& task_id, uint32_t attempt, const ProcessExit& exit)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The execution of this attempt, current or dying; null if gone.
  Execution* FindLocked(const std::string& task_id, uint32_t attempt)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Finds "::progress PERCENT [MESSAGE]" lines in stdout and reports them.
  void ScanProgressLocked(Execution& e, absl::string_view data) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends on the welcomed link, if any.
  void SendLocked(v1::AgentMessage m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends unsent output within the window, then Finished once all is sent.
  void PumpLocked(Execution& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdatePauseLocked(Execution& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendHeartbeat() ABSL_LOCKS_EXCLUDED(mu_);

  const AgentOptions options_;
  // Random per process; proves to the coordinator that a hello comes from
  // this process again (see v1::Hello.instance_id).
  const std::string instance_id_;
  ProcessRunner& runner_;
  AgentMetrics* const metrics_;
  const DockerRunner* const docker_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AgentService::Stub> stub_;
  std::thread thread_;
  HostSampler sampler_;  // Used by the connection thread only.

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Execution>> executions_ ABSL_GUARDED_BY(mu_);
  // Older attempts replaced by a newer one while still being killed.
  std::vector<std::unique_ptr<Execution>> dying_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<CoordinatorLink> link_ ABSL_GUARDED_BY(mu_);
  bool welcomed_ ABSL_GUARDED_BY(mu_) = false;
  bool link_done_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Duration heartbeat_interval_ ABSL_GUARDED_BY(mu_) = absl::Seconds(5);
  bool interval_changed_ ABSL_GUARDED_BY(mu_) = false;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  // Whether the Docker daemon answered at the last check.
  bool docker_up_ ABSL_GUARDED_BY(mu_) = false;
  bool containers_adopted_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_AGENT_AGENT_H_
