// The agent's Prometheus metrics, registered once at startup.
#ifndef TASKGRID_SERVICES_AGENT_AGENT_METRICS_H_
#define TASKGRID_SERVICES_AGENT_AGENT_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

namespace taskgrid {

// Thread-safe. Holds references into `registry`, which must outlive it.
struct AgentMetrics {
  explicit AgentMetrics(prometheus::Registry& registry);

  prometheus::Counter& tasks_started;   // agent_tasks_started_total
  prometheus::Counter& spawn_failures;  // agent_spawn_failures_total
  prometheus::Gauge& running_tasks;     // agent_running_tasks
  prometheus::Counter& output_bytes;    // agent_process_output_bytes_total
  prometheus::Counter& reconnects;      // agent_stream_reconnects_total
  prometheus::Gauge& connected;         // agent_connected
  prometheus::Counter& paused;          // agent_output_paused_total
  prometheus::Gauge& containers_running;  // agent_containers_running
  // agent_container_operations_total{operation, outcome="ok"|"error"}
  prometheus::Family<prometheus::Counter>& container_operations;
  // agent_image_pulls_total{outcome}
  prometheus::Family<prometheus::Counter>& image_pulls;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_AGENT_AGENT_METRICS_H_
