// The agent's view of its host for monitoring: CPU busy share between two
// samples (from /proc/stat deltas, not averages since boot), memory, load,
// the agent's own resident memory, and the disk of its work directory.
// The /proc root is a parameter so tests can point it at fake files.
#ifndef TASKGRID_SERVICES_AGENT_HOST_SAMPLER_H_
#define TASKGRID_SERVICES_AGENT_HOST_SAMPLER_H_

#include <cstdint>
#include <string>

#include "taskgrid/v1/monitoring.pb.h"

namespace taskgrid {

// Not thread-safe: it keeps the previous CPU counters. Owned by the agent.
class HostSampler {
 public:
  // Takes a first CPU reading, so the first Sample() already has a delta.
  explicit HostSampler(std::string proc_root = "/proc", std::string disk_path = ".");

  // Fields it cannot read stay zero. Leaves source, time and the task counts
  // to the caller.
  v1::HostMetrics Sample();

 private:
  // Busy and total jiffies over all CPUs; false if unreadable.
  bool ReadCpu(uint64_t& busy, uint64_t& total, uint32_t& cpus) const;

  const std::string proc_;
  const std::string disk_path_;
  uint64_t busy_ = 0;
  uint64_t total_ = 0;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_AGENT_HOST_SAMPLER_H_
