// A task's limits on memory, CPU time and processes, in the cgroup v1
// controllers' hierarchies: on hosts that mount cgroup2 beside them, the v2
// hierarchy delegates none of those controllers. A limited task gets a
// directory in each hierarchy its limits need, laid out like the v2 ones:
//
//   <agent's v1 cgroup>/taskgrid-<agent id>/run-<pid>-<start>/limit-<n>
//
// and its processes enter them before they run. Linux only.
#ifndef TASKGRID_SERVICES_AGENT_TASK_LIMITS_H_
#define TASKGRID_SERVICES_AGENT_TASK_LIMITS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/agent/process_runner.h"
#include "services/agent/process_spawn.h"

namespace taskgrid {

// One task's limit directories. Move-only; destroying it removes them.
class TaskLimitCgroup {
 public:
  TaskLimitCgroup() = default;
  TaskLimitCgroup(TaskLimitCgroup&&) = default;
  TaskLimitCgroup& operator=(TaskLimitCgroup&& other) noexcept;
  ~TaskLimitCgroup() { Remove(); }

  // Their cgroup.procs files, open for writing: a child writes "0" to each.
  std::vector<int> procs_fds() const;
  // Its memory limit, and the peak memory of its processes together; 0
  // without a memory limit.
  int64_t memory_limit_bytes() const { return memory_limit_; }
  int64_t memory_peak_bytes() const;
  // Whether the kernel killed one of its processes at its memory limit.
  bool oom_killed() const;
  // Removes the directories, once (the task's processes are gone by then);
  // one still busy is left for the run's end, the guardian or the next
  // run's sweep.
  void Remove();

 private:
  friend class TaskLimits;
  struct Dir {
    std::string path;
    UniqueFd procs;
  };
  std::vector<Dir> dirs_;
  std::string memory_;  // its memory directory, if it has one
  int64_t memory_limit_ = 0;
};

// This agent run's directories in the v1 hierarchies. Thread-safe.
class TaskLimits {
 public:
  // Makes `agent_dir`/`run` in the hierarchy of each of memory, cpu and
  // pids the host mounts and the agent may write; those it cannot are left
  // out (and logged), and a task that needs one of them is refused.
  static std::unique_ptr<TaskLimits> Open(absl::string_view agent_dir, absl::string_view run);
  ~TaskLimits();

  // The limits it can set: "memory", "cpus", "pids".
  std::vector<std::string> enforced() const;
  // Directories with `limits` set in each hierarchy `limits` needs.
  // kFailedPrecondition naming the limit when one cannot be set here.
  absl::StatusOr<TaskLimitCgroup> Create(const ProcessLimits& limits);
  // This run's directory in each hierarchy, for the guardian.
  std::vector<std::string> run_paths() const;
  // Removes what earlier runs of this agent left (their processes killed
  // by then through their v2 cgroups).
  void SweepEarlierRuns() const;

 private:
  // One mounted hierarchy, with the controllers it holds of ours.
  struct Hierarchy {
    std::vector<std::string> controllers;
    std::string agent_path;
    std::string run_path;
  };
  explicit TaskLimits(std::vector<Hierarchy> hierarchies) : hierarchies_(std::move(hierarchies)) {}
  const Hierarchy* Find(absl::string_view controller) const;

  const std::vector<Hierarchy> hierarchies_;
  std::atomic<uint64_t> next_id_{0};
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_AGENT_TASK_LIMITS_H_
