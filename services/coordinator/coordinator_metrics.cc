#include "services/coordinator/coordinator_metrics.h"

#include "absl/strings/ascii.h"
#include "services/common/metrics_server.h"

namespace taskgrid {
namespace {

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return *b;
}

const prometheus::Histogram::BucketBoundaries& DurationBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.001, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600};
  return *b;
}

std::string Lower(absl::string_view s) { return absl::AsciiStrToLower(s); }

}  // namespace

CoordinatorMetrics::CoordinatorMetrics(prometheus::Registry& r)
    : tasks_submitted(
          AddCounter(r, "coordinator_tasks_submitted_total", "Tasks accepted by Submit.")),
      tasks_finished(prometheus::BuildCounter()
                         .Name("coordinator_tasks_finished_total")
                         .Help("Tasks that reached a final state, by outcome.")
                         .Register(r)),
      queued(prometheus::BuildGauge()
                 .Name("coordinator_queued_tasks")
                 .Help("Tasks waiting for an agent, by priority.")
                 .Register(r)),
      running_tasks(AddGauge(r, "coordinator_running_tasks", "Tasks dispatched or running.")),
      connected_agents(AddGauge(r, "coordinator_connected_agents", "Agents with an open stream.")),
      dispatch_latency_seconds(AddHistogram(r, "coordinator_dispatch_latency_seconds",
                                            "Time from submit to dispatch.", LatencyBuckets())),
      start_latency_seconds(AddHistogram(r, "coordinator_start_latency_seconds",
                                         "Time from submit to the agent's start report.",
                                         LatencyBuckets())),
      task_duration_seconds(AddHistogram(r, "coordinator_task_duration_seconds",
                                         "Time from start to the final state.", DurationBuckets())),
      output_bytes(AddCounter(r, "coordinator_output_bytes_total",
                              "Task output bytes received from agents.")),
      agent_connects(AddCounter(r, "coordinator_agent_connects_total",
                                "Agent streams accepted (reconnects included).")),
      stale_messages(AddCounter(r, "coordinator_stale_agent_messages_total",
                                "Agent messages rejected for a stale attempt or a final task.")),
      events(AddCounter(r, "coordinator_events_total", "Events appended to the event log.")),
      retries(AddCounter(r, "coordinator_task_retries_total",
                         "Attempts that were lost or failed and queued again by retry policy.")),
      undelivered(AddCounter(r, "coordinator_task_attempts_undelivered_total",
                             "Dispatched attempts that never reached their agent and were "
                             "queued again.")),
      store_commit_seconds(AddHistogram(r, "coordinator_store_commit_seconds",
                                        "Time of one store transaction (group commit).",
                                        LatencyBuckets())),
      store_batch_changes(AddHistogram(r, "coordinator_store_batch_changes",
                                       "Changes written per store transaction.",
                                       prometheus::Histogram::BucketBoundaries{
                                           1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 20000})),
      store_commit_failures(AddCounter(r, "coordinator_store_commit_failures_total",
                                       "Store transactions that failed (and were retried).")),
      recovery_seconds(AddGauge(r, "coordinator_recovery_seconds",
                                "Time to load the store and rebuild the registry at start.")),
      leader(AddGauge(r, "coordinator_leader",
                      "1 when this coordinator is the active one (holds the store's lease).")),
      term(AddGauge(r, "coordinator_store_term",
                    "Lease term held; each new active coordinator gets a higher one.")),
      failovers(AddCounter(r, "coordinator_failovers_total",
                           "Times this coordinator took the lease over from another one.")),
      runs_submitted(AddCounter(r, "coordinator_runs_submitted_total",
                                "Fleet runs accepted by SubmitRun.")),
      runs_finished(prometheus::BuildCounter()
                        .Name("coordinator_runs_finished_total")
                        .Help("Fleet runs whose every target is final, by outcome.")
                        .Register(r)),
      open_runs(AddGauge(r, "coordinator_open_runs", "Fleet runs with unfinished targets.")),
      run_targets(AddCounter(r, "coordinator_run_targets_total",
                             "Tasks created as targets of fleet runs.")),
      agent_messages_received(AddCounter(r, "coordinator_agent_messages_received_total",
                                         "Messages read from agent streams.")),
      agent_batches_received(AddCounter(r, "coordinator_agent_batches_received_total",
                                        "Batches (stream reads) from agents.")),
      agent_messages_sent(AddCounter(r, "coordinator_agent_messages_sent_total",
                                     "Messages written to agent streams.")),
      agent_batches_sent(AddCounter(r, "coordinator_agent_batches_sent_total",
                                    "Batches (stream writes) to agents.")) {
  for (int s = v1::TASK_STATUS_SUCCEEDED; s <= v1::TASK_STATUS_LOST; ++s) {
    finished(static_cast<v1::TaskStatus>(s));  // Export zeros from the start.
  }
  for (auto s : {v1::TASK_STATUS_SUCCEEDED, v1::TASK_STATUS_FAILED, v1::TASK_STATUS_CANCELLED}) {
    run_finished(s);
  }
  for (int p = v1::PRIORITY_LOW; p <= v1::PRIORITY_CRITICAL; ++p) {
    queue_depth(static_cast<v1::Priority>(p));
  }
}

prometheus::Counter& CoordinatorMetrics::finished(v1::TaskStatus status) {
  return tasks_finished.Add(
      {{"outcome", Lower(v1::TaskStatus_Name(status).substr(sizeof("TASK_STATUS_") - 1))}});
}

prometheus::Counter& CoordinatorMetrics::run_finished(v1::TaskStatus status) {
  return runs_finished.Add(
      {{"outcome", Lower(v1::TaskStatus_Name(status).substr(sizeof("TASK_STATUS_") - 1))}});
}

prometheus::Gauge& CoordinatorMetrics::queue_depth(v1::Priority priority) {
  return queued.Add(
      {{"priority", Lower(v1::Priority_Name(priority).substr(sizeof("PRIORITY_") - 1))}});
}

}  // namespace taskgrid
