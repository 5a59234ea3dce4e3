#include "services/agent/agent_metrics.h"

namespace taskgrid {
namespace {

prometheus::Counter& Counter(prometheus::Registry& r, const std::string& name,
                             const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}

prometheus::Gauge& Gauge(prometheus::Registry& r, const std::string& name,
                         const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}

}  // namespace

AgentMetrics::AgentMetrics(prometheus::Registry& r)
    : tasks_started(Counter(r, "agent_tasks_started_total", "Processes started.")),
      spawn_failures(
          Counter(r, "agent_spawn_failures_total", "Tasks whose process could not start.")),
      running_tasks(Gauge(r, "agent_running_tasks", "Processes running now.")),
      output_bytes(Counter(r, "agent_process_output_bytes_total",
                           "Bytes read from task stdout and stderr.")),
      reconnects(
          Counter(r, "agent_stream_reconnects_total", "Connection attempts after the first.")),
      connected(Gauge(r, "agent_connected", "1 while the coordinator stream is open.")),
      paused(Counter(
          r, "agent_output_paused_total",
          "Times a task's output reading paused because the unacknowledged window was full.")) {}

}  // namespace taskgrid
