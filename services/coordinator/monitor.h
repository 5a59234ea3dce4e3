// Monitoring in the coordinator: the last samples of every agent's host, the
// health of every service (coordinator, agents, gateways), and alert rules
// evaluated on each sample and each tick. An alert fires once per rule and
// source while its condition holds (duplicates are suppressed), changes
// severity in place of a second alert, and resolves by itself only once the
// value is back below its threshold by the hysteresis margin, so it does not
// flap; people may resolve it by hand. Every change comes back as events for
// the registry to put in the one event log.
#ifndef TASKGRID_SERVICES_COORDINATOR_MONITOR_H_
#define TASKGRID_SERVICES_COORDINATOR_MONITOR_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/common/clock.h"
#include "taskgrid/v1/monitoring.pb.h"
#include "taskgrid/v1/task.pb.h"

namespace taskgrid {

struct MonitorOptions {
  // Samples kept per agent.
  size_t history_size = 1000;
  // How often agents sample (their heartbeat interval), for status and
  // lateness.
  absl::Duration interval = absl::Seconds(5);
  // Host rules, in percent (the seeds' defaults).
  double cpu_warning = 75, cpu_critical = 90;
  double memory_warning = 75, memory_critical = 90;
  double disk_warning = 90, disk_critical = 95;
  // An agent process larger than this: warning.
  int64_t process_memory_bytes = 500 << 20;
  // A host alert resolves once its value is this many percent points below
  // the threshold (process memory: this many percent of its threshold).
  double hysteresis = 5;
  // More than this share of the tasks finished within `failure_window`
  // failed, timed out or were lost (with at least `failure_min_tasks` of
  // them): warning.
  double failure_rate = 0.5;
  absl::Duration failure_window = absl::Minutes(5);
  int failure_min_tasks = 10;
  // More tasks queued than this: warning (resolves below 90% of it).
  int64_t queue_depth = 1000;
  // An agent disconnected this long: warning, resolved when it is back.
  absl::Duration agent_offline_after = absl::Seconds(30);
  // A gateway silent this long is down.
  absl::Duration gateway_silence = absl::Seconds(30);

  // kInvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

// Thread-safe (one mutex; never calls out). Owned by the registry, which
// publishes the events each call returns.
class Monitor {
 public:
  Monitor(const Clock& clock, MonitorOptions options);

  // An agent's host sample: kept, published, checked against host rules.
  std::vector<v1::TaskEvent> OnHostMetrics(const std::string& agent_id, v1::HostMetrics m)
      ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<v1::TaskEvent> OnAgentConnected(const std::string& agent_id)
      ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<v1::TaskEvent> OnAgentDisconnected(const std::string& agent_id)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The registry forgot the agent: its samples, health and alerts go too
  // (its active alerts resolve).
  std::vector<v1::TaskEvent> ForgetAgent(const std::string& agent_id) ABSL_LOCKS_EXCLUDED(mu_);
  // A task reached a final state on `agent_id` (empty: it never ran).
  void OnTaskFinished(const std::string& agent_id, v1::TaskStatus status, absl::Duration ran)
      ABSL_LOCKS_EXCLUDED(mu_);
  // A gateway's report of itself.
  std::vector<v1::TaskEvent> OnHealthReport(v1::ServiceHealth report) ABSL_LOCKS_EXCLUDED(mu_);
  // A client call the coordinator answered.
  void OnRequest(bool failed, absl::Duration took) ABSL_LOCKS_EXCLUDED(mu_);
  // Time-based rules and health: failure rate, queue depth, agents offline,
  // late heartbeats, silent gateways. Called by the registry's tick.
  std::vector<v1::TaskEvent> Evaluate(int64_t queued) ABSL_LOCKS_EXCLUDED(mu_);
  // kNotFound for an unknown id, kFailedPrecondition when already resolved.
  absl::StatusOr<std::vector<v1::TaskEvent>> Resolve(const std::string& alert_id,
                                                     const std::string& by)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Stopped: samples are still kept, but neither published nor checked.
  void SetRunning(bool running) ABSL_LOCKS_EXCLUDED(mu_);

  std::vector<v1::HostMetrics> Latest() const ABSL_LOCKS_EXCLUDED(mu_);
  // kNotFound for an agent with no samples.
  absl::StatusOr<std::vector<v1::HostMetrics>> History(const std::string& agent_id,
                                                       absl::Time since, absl::Time until) const
      ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<v1::ServiceHealth> Services() const ABSL_LOCKS_EXCLUDED(mu_);
  // Newest first; resolved ones too unless `active_only` (at most 1000).
  std::vector<v1::Alert> Alerts(bool active_only) const ABSL_LOCKS_EXCLUDED(mu_);
  v1::MonitoringStatus Status() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Counters {
    int64_t requests = 0;
    int64_t errors = 0;
    absl::Duration total;
  };
  struct Service {
    v1::ServiceHealth health;
    Counters counters;
    absl::Time last_seen = absl::InfinitePast();
    absl::Time disconnected_at = absl::InfiniteFuture();
    bool connected = false;
  };
  // A rule's verdict on one value: the severity it calls for, or
  // UNSPECIFIED when the alert (if any) may resolve; `hold` keeps an active
  // alert as it is (inside the hysteresis band).
  struct Verdict {
    v1::AlertSeverity severity = v1::ALERT_SEVERITY_UNSPECIFIED;
    bool hold = false;
    double threshold = 0;
  };

  Verdict Judge(double value, double warning, double critical, double margin,
                v1::AlertSeverity active) const;
  static std::string Key(const std::string& rule, const std::string& source) {
    return rule + "|" + source;
  }
  // The severity of the active alert of (rule, source); UNSPECIFIED if none.
  v1::AlertSeverity ActiveLocked(const std::string& rule, const std::string& source) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fires, escalates, holds or resolves the alert of (rule, source).
  void ApplyLocked(const std::string& rule, const std::string& source, double value,
                   const Verdict& v, const std::string& message,
                   std::vector<v1::TaskEvent>& events) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ResolveLocked(v1::Alert& alert, const std::string& by, std::vector<v1::TaskEvent>& events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Service& ServiceLocked(const std::string& name, const std::string& kind)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Recomputes a service's status; a health event when it changed.
  void UpdateHealthLocked(Service& s, v1::HealthStatus status, const std::string& reason,
                          std::vector<v1::TaskEvent>& events) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::ServiceHealth SnapshotLocked(const Service& s) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::TaskEvent Event(v1::EventType type) const;

  const Clock& clock_;
  const MonitorOptions options_;
  const absl::Time started_;

  mutable absl::Mutex mu_;
  bool running_ ABSL_GUARDED_BY(mu_) = true;
  absl::flat_hash_map<std::string, std::deque<v1::HostMetrics>> history_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Service> services_ ABSL_GUARDED_BY(mu_);
  // Alerts by number (alert-N); `active_` maps Key(rule, source) to the
  // unresolved one; the newest resolved ones are kept, oldest first.
  std::map<uint64_t, v1::Alert> alerts_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, uint64_t> active_ ABSL_GUARDED_BY(mu_);
  std::deque<uint64_t> resolved_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> silenced_ ABSL_GUARDED_BY(mu_);
  uint64_t next_alert_ ABSL_GUARDED_BY(mu_) = 1;
  // Final tasks within the failure window: (time, failed).
  std::deque<std::pair<absl::Time, bool>> finished_ ABSL_GUARDED_BY(mu_);
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_MONITOR_H_
