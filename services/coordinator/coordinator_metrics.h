// The coordinator's Prometheus metrics, registered once at startup.
#ifndef TASKGRID_SERVICES_COORDINATOR_COORDINATOR_METRICS_H_
#define TASKGRID_SERVICES_COORDINATOR_COORDINATOR_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "services/coordinator/store/group_commit_store.h"
#include "taskgrid/v1/task.pb.h"

namespace taskgrid {

// Thread-safe (prometheus-cpp metrics are). Holds references into `registry`,
// which must outlive it.
struct CoordinatorMetrics {
  explicit CoordinatorMetrics(prometheus::Registry& registry);

  prometheus::Counter& finished(v1::TaskStatus status);
  prometheus::Counter& run_finished(v1::TaskStatus status);
  prometheus::Gauge& queue_depth(v1::Priority priority);

  prometheus::Counter& tasks_submitted;                     // coordinator_tasks_submitted_total
  prometheus::Family<prometheus::Counter>& tasks_finished;  // {outcome}
  prometheus::Family<prometheus::Gauge>& queued;            // coordinator_queued_tasks{priority}
  prometheus::Gauge& running_tasks;                         // coordinator_running_tasks
  prometheus::Gauge& connected_agents;                      // coordinator_connected_agents
  prometheus::Histogram& dispatch_latency_seconds;          // submit -> dispatched
  prometheus::Histogram& start_latency_seconds;             // submit -> started
  prometheus::Histogram& task_duration_seconds;             // started -> finished
  prometheus::Counter& output_bytes;                        // coordinator_output_bytes_total
  prometheus::Counter& agent_connects;                      // coordinator_agent_connects_total
  prometheus::Counter& stale_messages;          // coordinator_stale_agent_messages_total
  prometheus::Counter& events;                  // coordinator_events_total
  prometheus::Counter& retries;                 // coordinator_task_retries_total
  prometheus::Counter& undelivered;  // coordinator_task_attempts_undelivered_total
  prometheus::Histogram& store_commit_seconds;  // one per store transaction
  prometheus::Histogram& store_batch_changes;   // changes per transaction
  prometheus::Counter& store_commit_failures;   // coordinator_store_commit_failures_total
  prometheus::Gauge& recovery_seconds;          // load + rebuild at the last start
  prometheus::Gauge& leader;                    // 1 while holding the store's lease
  prometheus::Gauge& term;                      // coordinator_store_term
  prometheus::Counter& failovers;               // leases taken over from another holder
  prometheus::Counter& runs_submitted;          // coordinator_runs_submitted_total
  prometheus::Family<prometheus::Counter>& runs_finished;  // {outcome}
  prometheus::Gauge& open_runs;                 // coordinator_open_runs
  prometheus::Counter& run_targets;             // coordinator_run_targets_total
  // Agent stream traffic, so a benchmark can count messages and writes per task.
  prometheus::Counter& agent_messages_received;  // coordinator_agent_messages_received_total
  prometheus::Counter& agent_batches_received;   // coordinator_agent_batches_received_total
  prometheus::Counter& agent_messages_sent;      // coordinator_agent_messages_sent_total
  prometheus::Counter& agent_batches_sent;       // coordinator_agent_batches_sent_total

  StoreMetrics store() {
    return {&store_commit_seconds, &store_batch_changes, &store_commit_failures};
  }
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_COORDINATOR_METRICS_H_
