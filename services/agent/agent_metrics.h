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
  // The host, as of the last heartbeat.
  prometheus::Gauge& host_cpu;              // agent_host_cpu_usage_ratio
  prometheus::Gauge& host_memory_used;      // agent_host_memory_used_bytes
  prometheus::Gauge& host_memory_total;     // agent_host_memory_total_bytes
  prometheus::Gauge& host_load1;            // agent_host_load1
  prometheus::Gauge& process_rss;           // agent_process_resident_memory_bytes
  prometheus::Gauge& disk_used;             // agent_disk_used_bytes
  prometheus::Gauge& disk_total;            // agent_disk_total_bytes
  prometheus::Gauge& free_slots;            // agent_free_slots
  // Processes of earlier runs' tasks killed at start.
  prometheus::Counter& orphans_killed;      // agent_orphan_processes_killed_total
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_AGENT_AGENT_METRICS_H_
