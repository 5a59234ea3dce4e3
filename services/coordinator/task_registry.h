// The task registry: the single owner of task and agent state. It validates
// and accepts tasks, schedules them onto agents (priority, FIFO, targeting,
// free slots), applies every agent report under attempt fencing, retries lost
// attempts by policy, enforces queue and run timeouts and the agents'
// heartbeat TTL, expands fleet runs into one task per matching agent (started
// within the run's max_concurrency, stopped at its max_errors), says why
// every waiting task and run waits, keeps capped output and stats, and
// journals each change to
// the TaskStore and the EventLog. Acknowledgements (replies to changes,
// messages to agents) and events to readers wait for the store's commit;
// reads show the newest state.
#ifndef TASKGRID_SERVICES_COORDINATOR_TASK_REGISTRY_H_
#define TASKGRID_SERVICES_COORDINATOR_TASK_REGISTRY_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/common/agent_tokens.h"
#include "services/common/clock.h"
#include "services/common/task_status.h"
#include "services/coordinator/agent_directory.h"
#include "services/coordinator/audit_log.h"
#include "services/coordinator/coordinator_metrics.h"
#include "services/coordinator/deadline_index.h"
#include "services/coordinator/event_log.h"
#include "services/coordinator/monitor.h"
#include "services/coordinator/output_buffer.h"
#include "services/coordinator/placement.h"
#include "services/coordinator/task_counts.h"
#include "services/coordinator/store/task_state.h"
#include "services/coordinator/store/task_store.h"
#include "taskgrid/v1/agent.pb.h"
#include "taskgrid/v1/task_service.pb.h"

namespace taskgrid {

struct RegistryOptions {
  // Run timeout of tasks that do not set spec.timeout.
  absl::Duration default_task_timeout = absl::Minutes(10);
  // SIGTERM-to-SIGKILL grace of tasks that do not set spec.kill_grace.
  absl::Duration default_kill_grace = absl::Seconds(10);
  // How often agents send heartbeats.
  absl::Duration heartbeat_interval = absl::Seconds(5);
  // An agent silent this long is offline and its unfinished tasks are lost.
  absl::Duration heartbeat_ttl = absl::Seconds(15);
  // Final tasks are removed this long after they finished.
  absl::Duration retention = absl::Hours(24);
  // At most this many final tasks are kept; the oldest go first.
  size_t max_retained_tasks = 100'000;
  // Output kept per task and stream (head and tail halves beyond it).
  int64_t output_cap_bytes = 4 << 20;
  // Host metrics history, health and alert rules. Its interval is
  // heartbeat_interval.
  MonitorOptions monitor;

  // Returns kInvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

// What the submitting API key allows; zero means no limit.
struct SubmitLimits {
  std::string owner;  // The key's name; recorded on the task.
  int max_running = 0;
  absl::Duration max_runtime = absl::ZeroDuration();
  int64_t max_output_bytes = 0;
};

// Thread-safe: one mutex guards all state; no call blocks on I/O (the store
// batches, links queue). Owned by the coordinator; the clock, store, log and
// metrics must outlive it.
class TaskRegistry {
 public:
  // Dispatches of one task that may fail to reach their agent before the
  // task is lost.
  static constexpr uint32_t kMaxUndelivered = 10;

  TaskRegistry(const Clock& clock, TaskStore& store, EventLog& events, CoordinatorMetrics* metrics,
               RegistryOptions options);

  // Rebuilds the registry from what the store loaded: tasks keep their
  // state, queued ones wait for dispatch, running ones wait for their agent
  // to reconnect within the heartbeat TTL (else they are lost), and the event
  // log continues after its last cursor. Call once, before serving.
  void Recover(StoredState state) ABSL_LOCKS_EXCLUDED(mu_);

  // Runs `done` once every change made so far is durable. Replies that
  // acknowledge a change (Submit, Cancel, Delete) are sent from `done`.
  void WhenDurable(std::function<void()> done) { store_.WhenDurable(std::move(done)); }

  // ---- Client API (TaskService); see task_service.proto for each contract.
  // Beyond `limits`: kResourceExhausted (max_running) or kPermissionDenied
  // (a longer timeout or larger output limit than the key allows).
  absl::StatusOr<v1::SubmitResponse> Submit(const v1::SubmitRequest& request,
                                            const SubmitLimits& limits = {})
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::SubmitBatchResponse> SubmitBatch(const v1::SubmitBatchRequest& batch,
                                                      const SubmitLimits& limits = {})
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::Task> Get(const std::string& task_id) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::ListResponse> List(const v1::ListRequest& request) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::Task> Cancel(const std::string& task_id, const std::string& reason)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Delete(const std::string& task_id) ABSL_LOCKS_EXCLUDED(mu_);
  v1::StatsResponse Stats() ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::GetOutputResponse> GetOutput(const v1::GetOutputRequest& request)
      ABSL_LOCKS_EXCLUDED(mu_);
  v1::ListAgentsResponse ListAgents() ABSL_LOCKS_EXCLUDED(mu_);
  // Who submitted the task or run `id` ("" without keys); kNotFound naming
  // `field` ("task_id", "run_id").
  absl::StatusOr<std::string> OwnerOf(absl::string_view field, const std::string& id)
      ABSL_LOCKS_EXCLUDED(mu_);

  // ---- Fleet runs (task_registry_runs.cc); contracts in task_service.proto.
  absl::StatusOr<v1::SubmitRunResponse> SubmitRun(const v1::SubmitRunRequest& request,
                                                  const SubmitLimits& limits = {})
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::Run> GetRun(const std::string& run_id) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::ListRunsResponse> ListRuns(const v1::ListRunsRequest& request)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::Run> CancelRun(const std::string& run_id, const std::string& reason)
      ABSL_LOCKS_EXCLUDED(mu_);

  // ---- Audit log: appended under the registry's lock so entries share the
  // journal's order; durable with the change they describe. The newest
  // kAuditLoaded are kept in memory for ListAudit. Entries of one request
  // (a batch's tasks) come together: one lock for all.
  void Audit(std::vector<v1::AuditEntry> entries) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::ListAuditResponse> ListAudit(const v1::ListAuditRequest& request)
      ABSL_LOCKS_EXCLUDED(mu_);

  // ---- Agent API (AgentService.Connect).
  // Registers the agent behind `link`, reconciles the tasks it holds, sends
  // Welcome and dispatches. A connected agent's older link is replaced (and
  // closed) only by the same process (the hello's instance_id); another
  // process claiming its id gets kAlreadyExists. A dispatched task the same
  // process does not hold never reached it and is queued again; otherwise
  // what only we think runs is lost. kInvalidArgument for a bad hello.
  // `peer` is where it connected from, for the audit log; `token` the agent
  // token it showed (none without tokens).
  absl::Status AgentConnected(const v1::Hello& hello, std::shared_ptr<AgentLink> link,
                              const std::string& peer = "", const AgentToken* token = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Closes the stream of every connected agent for which `refusal` (given
  // the agent and the SHA-256 of the token it connected with) is not OK,
  // with that status; its tasks stay assigned until the TTL.
  void DisconnectAgents(
      const std::function<absl::Status(const v1::Agent&, const std::string&)>& refusal)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The stream behind `link` ended. Tasks stay assigned until the TTL.
  void AgentDisconnected(const std::string& agent_id, const AgentLink* link)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Applies one report. Messages from a replaced link, for another agent's
  // task, or carrying a stale attempt are dropped (and counted).
  void HandleAgentMessage(const std::string& agent_id, const AgentLink* link,
                          const v1::AgentMessage& message) ABSL_LOCKS_EXCLUDED(mu_);

  // ---- Timers: production calls this every 100 ms; tests advance the clock.
  // Times out overdue queued and running tasks, takes agents silent past the
  // TTL offline (their unfinished tasks become lost), applies retention.
  void Tick() ABSL_LOCKS_EXCLUDED(mu_);

  // ---- Monitoring (the state is the monitor's; changes go to the event log).
  // Reads: metrics, services, alerts, status.
  const Monitor& monitor() const { return monitor_; }
  // A request the coordinator served.
  void RecordRequest(bool failed, absl::Duration took) { monitor_.OnRequest(failed, took); }
  // kNotFound for an unknown alert, kFailedPrecondition for a resolved one.
  absl::StatusOr<v1::Alert> ResolveAlert(const std::string& alert_id, const std::string& by)
      ABSL_LOCKS_EXCLUDED(mu_);
  void ReportHealth(const v1::ServiceHealth& report) ABSL_LOCKS_EXCLUDED(mu_);
  void SetMonitoring(bool running) ABSL_LOCKS_EXCLUDED(mu_);

  const RegistryOptions& options() const { return options_; }

 private:
  struct RunEntry;
  struct TaskEntry {
    TaskState state;
    // Its spec never changes (but for its secrets, dropped once final):
    // held once and shared with the journal and the events.
    std::shared_ptr<const v1::TaskSpec> spec;
    // As events show it: secret values redacted, no stdin; `spec` itself
    // when that changes nothing.
    std::shared_ptr<const v1::TaskSpec> shown;
    bool spec_journaled = false;  // The store holds `spec`.
    OutputBuffer out[2];  // stdout, stderr
    uint64_t seq = 0;     // Submission order.
    absl::Time queue_deadline;
    absl::Time run_deadline;
    absl::Duration timeout;
    absl::Duration kill_grace;
    bool queued = false;                         // In queue_.
    bool held = false;            // A run's target not yet released to queue_.
    uint32_t run_index = 0;       // Its place among its run's targets ...
    RunEntry* run = nullptr;      // ... of the fleet run it is a target of.
    // A hash of the waiting reason last put in an event: a change makes a new one.
    mutable size_t reported_reason = 0;
  };
  // A fleet run. Its record in the store holds what cannot be derived from
  // its targets' tasks: the spec, the target list, limits, times and, once
  // stopped or final, why.
  struct RunEntry {
    v1::Run run;                        // Without its target rows ...
    std::vector<v1::RunTarget> rows;    // ... which are here, in agent order.
    uint64_t seq = 0;
    std::vector<TaskEntry*> targets;  // As run.targets(); null when skipped or removed.
    absl::Time offline_deadline;
    int in_flight = 0;  // Released and not final: what max_concurrency bounds.
    int held = 0;
    int finals = 0;  // Targets final (skipped ones not counted).
    int errors = 0;  // Failed, timed out or lost.
    int live = 0;    // Targets whose task still exists.
    bool dispatched = false;  // A target has been dispatched.
    bool updating = false;    // Inside SettleRunLocked: targets change, it settles once.
    bool cancelled = false;   // By a client.
    int target_count = 0;     // Targets, skipped ones not counted.
    bool dirty = false;       // In dirty_runs_ ...
    bool urgent = false;      // ... to be announced now, not at the next tick.
    size_t release_from = 0;  // Targets before it are all released.
    mutable std::string reported_reason;  // As reported_reason of a task.
    bool stopped() const { return !run.status_reason().empty(); }
  };
  using QueueKey = std::pair<int, uint64_t>;  // (-priority, seq)

  TaskEntry* FindLocked(const std::string& task_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Submit and SubmitBatch: each request accepted or refused on its own.
  absl::StatusOr<v1::SubmitBatchResponse> SubmitAll(
      const std::vector<const v1::SubmitRequest*>& requests, const SubmitLimits& limits)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Creates and queues the task (or finds it by idempotency key) and fills
  // the response's cursor; the caller dispatches.
  absl::StatusOr<TaskEntry*> SubmitLocked(const v1::SubmitRequest& request,
                                          const SubmitLimits& limits,
                                          v1::SubmitResponse& response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Creates, journals and announces a task (a held target of `run` when
  // not null) and sets `cursor` to its TASK_CREATED event; the caller
  // queues it.
  TaskEntry& NewTaskLocked(const v1::TaskSpec& spec, const SubmitLimits& limits,
                           const std::string& idempotency_key, RunEntry* run, std::string id,
                           uint64_t& cursor) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A new UUID no task or run has.
  std::string NewIdLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The run timeout of a task of `spec`.
  absl::Duration TimeoutOf(const v1::TaskSpec& spec, const SubmitLimits& limits) const;
  // kUnavailable while the store cannot write.
  absl::Status Accepting() const;
  // The task if `agent` runs `attempt` of it; counts a stale message if not.
  TaskEntry* FenceLocked(const AgentEntry& agent, const std::string& task_id, uint32_t attempt)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Dispatches what it can, then flushes run events.
  void DispatchLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DispatchQueueLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Placement's verdict on `a` for a task of `spec`, from the agent's link
  // and load.
  placement::Verdict JudgeLocked(const v1::TaskSpec& spec, const AgentEntry& a) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What the tasks holding a slot on `a` reserve; O(its slots).
  v1::Resources ReservedLocked(const AgentEntry& a) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string WaitingReasonLocked(const TaskEntry& t) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Enqueue(TaskEntry& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Dequeue(TaskEntry& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves `t` to `status`, journals it and emits the events.
  void TransitionLocked(TaskEntry& t, v1::TaskStatus status, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues `t` again for a new attempt, eligible from `eligible_at`, with
  // `reason` as its status reason.
  void RequeueLocked(TaskEntry& t, absl::Time eligible_at, std::string reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A dispatched attempt that never reached its agent: queued again at once,
  // counted in Task.undelivered, not as a try; a target of a stopped run is
  // cancelled instead, and the kMaxUndelivered-th such attempt is lost.
  void RequeueUndeliveredLocked(TaskEntry& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the current attempt as lost or failed: queues the task again when
  // its retry policy allows, otherwise makes `status` final. The caller has
  // released the agent's slot.
  void EndAttemptLocked(TaskEntry& t, v1::TaskStatus status, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends once everything journaled so far is durable.
  void SendLocked(const std::shared_ptr<AgentLink>& link, v1::CoordinatorMessage message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends to the event log and the journal; readers see it once durable.
  // `spec` is the spec of the event's task snapshot, which it comes without.
  uint64_t AppendEventLocked(v1::TaskEvent event,
                             std::shared_ptr<const v1::TaskSpec> spec = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendCancelLocked(TaskEntry& t, const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveLocked(const std::string& task_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AgentOfflineLocked(AgentEntry& a, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True when the output limit ended the task.
  bool ApplyOutputLocked(AgentEntry& a, const v1::Output& output)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyFinishedLocked(AgentEntry& a, const v1::Finished& finished)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t EmitLocked(v1::EventType type, const TaskEntry* t, const std::string& agent_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Puts the monitor's events in the log.
  void PublishLocked(std::vector<v1::TaskEvent> events) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // AGENT_DISCONNECTED, and the monitor told.
  void EmitDisconnectedLocked(const std::string& agent_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The task as readers see it: its state, output totals, waiting reason and
  // (unless `with_spec` is false) its spec, secrets redacted.
  v1::Task SnapshotLocked(const TaskEntry& t, bool with_spec = true) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives `t` the spec `spec`, to be journaled with its next state.
  static void SetSpec(TaskEntry& t, v1::TaskSpec spec);
  // Ends `t` as cancelled and kills it where it runs.
  void CancelLocked(TaskEntry& t, const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // kPermissionDenied when `spec` asks for more than `limits` allow.
  static absl::Status CheckLimits(const v1::TaskSpec& spec, const SubmitLimits& limits);
  // Tasks queued with a higher priority than `t`.
  size_t QueuedAheadLocked(const TaskEntry& t) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // ---- Fleet runs (task_registry_runs.cc).
  // Rebuilds runs from their records and their targets' tasks (Recover).
  void RecoverRunsLocked(std::vector<v1::Run> runs) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A target moved from `from` to its current status: counts, stops at
  // max_errors, releases more targets, finishes the run, emits RUN_STATUS.
  void OnTargetChangedLocked(TaskEntry& t, v1::TaskStatus from) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After targets changed: stops at max_errors, releases more targets,
  // finishes the run when every target is final, and marks it changed.
  void SettleRunLocked(RunEntry& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Its RUN_STATUS comes at the next flush when `urgent` (created, a first
  // failure, stopped, final), else at the next tick: a thousand targets
  // changing at once make one event.
  void MarkRunChangedLocked(RunEntry& r, bool urgent) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Emits RUN_STATUS for the runs marked urgent, or for every changed one
  // (`all`, at each tick). Called at the end of each change that can move
  // targets.
  void FlushRunsLocked(bool all = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Targets of `agent_id` released but not dispatched go back to held: an
  // agent that is away takes no place in its run.
  void HoldTargetsOfLocked(const std::string& agent_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // When a held target stops waiting for its offline agent: the run's
  // offline deadline, or as long after the agent went away.
  absl::Time OfflineDeadlineLocked(const TaskEntry& t) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseRunLocked(RunEntry& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishRunLocked(RunEntry& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PersistRunLocked(const RunEntry& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Releases held targets whose agent is connected, within max_concurrency.
  void ReleaseTargetsLocked(RunEntry& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Cancels what has not started, with `why` as the run's reason.
  void StopRunLocked(RunEntry& r, const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Held targets of runs past their offline deadline whose agent is away
  // time out; reports changed waiting reasons of tasks and runs.
  void TickRunsLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReportWaitingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The run's state; target rows and output tails only when asked.
  v1::Run RunSnapshotLocked(const RunEntry& r, bool with_targets) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::RunTarget TargetRowLocked(const TaskEntry& t) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string HeldReasonLocked(const TaskEntry& t) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EmitRunLocked(const RunEntry& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A target's task is being removed: its row stays in the run, and the run
  // goes once final with no task left.
  void DetachTargetLocked(TaskEntry& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Journals the task's state, and its spec if the store lacks it.
  void PersistLocked(TaskEntry& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string RandomUuidLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AuditLocked(v1::AuditEntry entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Clock& clock_;
  TaskStore& store_;
  EventLog& events_;
  CoordinatorMetrics* const metrics_;
  const RegistryOptions options_;
  Monitor monitor_;

  absl::Mutex mu_;
  // mu_ for a section that changes something: the store's write group is
  // open with it, so the section's changes and the events that describe
  // them commit in one transaction (a crash keeps both or neither).
  class ABSL_SCOPED_LOCKABLE WriteLock {
   public:
    explicit WriteLock(TaskRegistry* r) ABSL_EXCLUSIVE_LOCK_FUNCTION(r->mu_)
        ABSL_NO_THREAD_SAFETY_ANALYSIS : r_(r) {
      r_->mu_.Lock();
      r_->store_.BeginGroup();
    }
    ~WriteLock() ABSL_UNLOCK_FUNCTION() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      r_->store_.EndGroup();
      r_->mu_.Unlock();
    }
    WriteLock(const WriteLock&) = delete;
    WriteLock& operator=(const WriteLock&) = delete;

   private:
    TaskRegistry* const r_;
  };
  // Task rules are evaluated once a second, not on every tick.
  absl::Time next_evaluation_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::flat_hash_map<std::string, std::unique_ptr<TaskEntry>> tasks_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, TaskEntry*> by_seq_ ABSL_GUARDED_BY(mu_);
  std::map<QueueKey, TaskEntry*> queue_ ABSL_GUARDED_BY(mu_);
  size_t queued_by_priority_[v1::Priority_ARRAYSIZE] ABSL_GUARDED_BY(mu_) = {};
  absl::flat_hash_map<std::string, std::unique_ptr<RunEntry>> runs_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, RunEntry*> runs_by_seq_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, RunEntry*> open_runs_ ABSL_GUARDED_BY(mu_);  // Not final, by seq.
  std::vector<RunEntry*> dirty_runs_ ABSL_GUARDED_BY(mu_);
  // By owner and idempotency key, as idempotency_ for tasks.
  absl::flat_hash_map<std::string, std::string> run_idempotency_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<TaskEntry*> active_ ABSL_GUARDED_BY(mu_);  // Dispatched or running.
  // By sequence number: queued tasks' queue timeouts, queued retries' times,
  // active tasks' run timeouts.
  DeadlineIndex<uint64_t> queue_deadlines_ ABSL_GUARDED_BY(mu_);
  DeadlineIndex<uint64_t> retries_ ABSL_GUARDED_BY(mu_);
  DeadlineIndex<uint64_t> run_deadlines_ ABSL_GUARDED_BY(mu_);
  // Something was queued that no dispatch has looked at yet.
  bool dispatch_wanted_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<std::pair<absl::Time, uint64_t>> finished_order_ ABSL_GUARDED_BY(mu_);  // (when, seq)
  TaskCounts counts_ ABSL_GUARDED_BY(mu_);
  // By owner and idempotency key (IdempotencyKey).
  absl::flat_hash_map<std::string, std::string> idempotency_ ABSL_GUARDED_BY(mu_);
  AgentDirectory agents_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t events_trimmed_ ABSL_GUARDED_BY(mu_) = 0;  // Store holds events from here.
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  // Unfinished tasks per owner, for the keys' max_running.
  absl::flat_hash_map<std::string, int> unfinished_by_owner_ ABSL_GUARDED_BY(mu_);
  AuditLog audit_ ABSL_GUARDED_BY(mu_);
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_TASK_REGISTRY_H_
