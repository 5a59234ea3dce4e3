#include "services/coordinator/coordinator_metrics.h"

#include "absl/strings/ascii.h"

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
    : tasks_submitted(prometheus::BuildCounter()
                          .Name("coordinator_tasks_submitted_total")
                          .Help("Tasks accepted by Submit.")
                          .Register(r)
                          .Add({})),
      tasks_finished(prometheus::BuildCounter()
                         .Name("coordinator_tasks_finished_total")
                         .Help("Tasks that reached a final state, by outcome.")
                         .Register(r)),
      queued(prometheus::BuildGauge()
                 .Name("coordinator_queued_tasks")
                 .Help("Tasks waiting for an agent, by priority.")
                 .Register(r)),
      running_tasks(prometheus::BuildGauge()
                        .Name("coordinator_running_tasks")
                        .Help("Tasks dispatched or running.")
                        .Register(r)
                        .Add({})),
      connected_agents(prometheus::BuildGauge()
                           .Name("coordinator_connected_agents")
                           .Help("Agents with an open stream.")
                           .Register(r)
                           .Add({})),
      dispatch_latency_seconds(prometheus::BuildHistogram()
                                   .Name("coordinator_dispatch_latency_seconds")
                                   .Help("Time from submit to dispatch.")
                                   .Register(r)
                                   .Add({}, LatencyBuckets())),
      start_latency_seconds(prometheus::BuildHistogram()
                                .Name("coordinator_start_latency_seconds")
                                .Help("Time from submit to the agent's start report.")
                                .Register(r)
                                .Add({}, LatencyBuckets())),
      task_duration_seconds(prometheus::BuildHistogram()
                                .Name("coordinator_task_duration_seconds")
                                .Help("Time from start to the final state.")
                                .Register(r)
                                .Add({}, DurationBuckets())),
      output_bytes(prometheus::BuildCounter()
                       .Name("coordinator_output_bytes_total")
                       .Help("Task output bytes received from agents.")
                       .Register(r)
                       .Add({})),
      agent_connects(prometheus::BuildCounter()
                         .Name("coordinator_agent_connects_total")
                         .Help("Agent streams accepted (reconnects included).")
                         .Register(r)
                         .Add({})),
      stale_messages(prometheus::BuildCounter()
                         .Name("coordinator_stale_agent_messages_total")
                         .Help("Agent messages rejected for a stale attempt or a final task.")
                         .Register(r)
                         .Add({})),
      events(prometheus::BuildCounter()
                 .Name("coordinator_events_total")
                 .Help("Events appended to the event log.")
                 .Register(r)
                 .Add({})) {
  for (int s = v1::TASK_STATUS_SUCCEEDED; s <= v1::TASK_STATUS_LOST; ++s) {
    finished(static_cast<v1::TaskStatus>(s));  // Export zeros from the start.
  }
  for (int p = v1::PRIORITY_LOW; p <= v1::PRIORITY_CRITICAL; ++p) {
    queue_depth(static_cast<v1::Priority>(p));
  }
}

prometheus::Counter& CoordinatorMetrics::finished(v1::TaskStatus status) {
  return tasks_finished.Add(
      {{"outcome", Lower(v1::TaskStatus_Name(status).substr(sizeof("TASK_STATUS_") - 1))}});
}

prometheus::Gauge& CoordinatorMetrics::queue_depth(v1::Priority priority) {
  return queued.Add(
      {{"priority", Lower(v1::Priority_Name(priority).substr(sizeof("PRIORITY_") - 1))}});
}

}  // namespace taskgrid
