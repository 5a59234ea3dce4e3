#include "services/agent/agent_metrics.h"

#include "services/common/metrics_server.h"

namespace taskgrid {

AgentMetrics::AgentMetrics(prometheus::Registry& r)
    : tasks_started(AddCounter(r, "agent_tasks_started_total", "Processes started.")),
      spawn_failures(
          AddCounter(r, "agent_spawn_failures_total", "Tasks whose process could not start.")),
      running_tasks(AddGauge(r, "agent_running_tasks", "Processes running now.")),
      output_bytes(AddCounter(r, "agent_process_output_bytes_total",
                              "Bytes read from task stdout and stderr.")),
      reconnects(
          AddCounter(r, "agent_stream_reconnects_total", "Connection attempts after the first.")),
      connected(AddGauge(r, "agent_connected", "1 while the coordinator stream is open.")),
      paused(AddCounter(
          r, "agent_output_paused_total",
          "Times a task's output reading paused because the unacknowledged window was full.")),
      containers_running(AddGauge(r, "agent_containers_running",
                                  "Containers of run tasks whose output is being followed.")),
      container_operations(prometheus::BuildCounter()
                               .Name("agent_container_operations_total")
                               .Help("Container tasks by operation and by whether Docker "
                                     "carried them out (ok) or refused or failed (error).")
                               .Register(r)),
      image_pulls(prometheus::BuildCounter()
                      .Name("agent_image_pulls_total")
                      .Help("Image pulls by outcome.")
                      .Register(r)),
      host_cpu(AddGauge(r, "agent_host_cpu_usage_ratio",
                        "Busy share of the host's CPUs between the last two heartbeats.")),
      host_memory_used(AddGauge(r, "agent_host_memory_used_bytes",
                                "Host memory in use (total less available).")),
      host_memory_total(AddGauge(r, "agent_host_memory_total_bytes", "Host memory.")),
      host_load1(AddGauge(r, "agent_host_load1", "Host load average over one minute.")),
      process_rss(AddGauge(r, "agent_process_resident_memory_bytes",
                           "Resident memory of the agent process.")),
      disk_used(AddGauge(r, "agent_disk_used_bytes",
                         "Used bytes of the file system of the agent's work directory.")),
      disk_total(AddGauge(r, "agent_disk_total_bytes",
                          "Size of the file system of the agent's work directory.")),
      free_slots(AddGauge(r, "agent_free_slots", "Task slots not in use.")),
      orphans_killed(AddCounter(r, "agent_orphan_processes_killed_total",
                                "Processes of tasks an earlier run of this agent left, killed "
                                "when it started again.")) {
  // Every series from the start, so rates and alerts see zeros, not gaps.
  for (const char* outcome : {"ok", "error"}) {
    for (const char* op : {"run", "start", "stop", "logs", "inspect", "remove", "list", "pull"}) {
      container_operations.Add({{"operation", op}, {"outcome", outcome}});
    }
    image_pulls.Add({{"outcome", outcome}});
  }
}

}  // namespace taskgrid
