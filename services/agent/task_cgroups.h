// Tasks' cgroups (cgroup v2): every process the agent starts enters a cgroup
// of its own before it runs, so its whole tree can be killed, counted and
// measured whatever sessions, process groups or daemons it makes. The
// layout under the root the agent is given:
//
//   <root>/taskgrid-<agent id>/run-<agent pid>-<its start time>/task-<n>
//
// A task with limits also enters cgroups in the v1 controllers'
// hierarchies (task_limits.h).
// One run directory per agent process: a restarted agent kills what earlier
// runs left, and a guardian process kills this run's tasks when the agent
// dies, so no task outlives its agent. Linux only.
#ifndef TASKGRID_SERVICES_AGENT_TASK_CGROUPS_H_
#define TASKGRID_SERVICES_AGENT_TASK_CGROUPS_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/agent/process_runner.h"
#include "services/agent/process_spawn.h"
#include "services/agent/task_limits.h"

namespace taskgrid {

struct CgroupUsage {
  absl::Duration cpu_time;  // user + system of every process that was in it
  // With a memory limit (else 0 and false).
  int64_t memory_limit_bytes = 0;
  int64_t memory_peak_bytes = 0;
  bool oom_killed = false;
};

class TaskCgroups;

// One task's cgroup. Move-only. Thread-compatible.
class TaskCgroup {
 public:
  // A cgroup found by path (the sweep's): files are opened as they are read.
  TaskCgroup(std::string path, UniqueFd procs);
  TaskCgroup(TaskCgroup&&) = default;
  TaskCgroup& operator=(TaskCgroup&&) = default;

  const std::string& path() const { return path_; }
  // cgroup.procs of it and of its limits' cgroups, open for writing: a
  // child writes "0" to each to enter.
  std::vector<int> procs_fds() const;
  // SIGKILL to every process in it, including those forked meanwhile.
  absl::Status Kill() const;
  // Whether any process is still in it (from cgroup.events); true when
  // that cannot be read.
  bool Populated() const;
  // The pids in it now.
  std::vector<pid_t> Pids() const;
  // SIGTERM to every process in it (those that left the session too).
  void Terminate() const;
  // What the processes of this task (not earlier users of the cgroup) used.
  CgroupUsage Usage() const;
  // Removes the (empty) cgroup; EBUSY while a process is left.
  absl::Status Remove();
  // Done with it: an empty cgroup goes back to the pool it came from, for
  // the next task; any other is killed and removed. Leaves this moved-from.
  void Release();

 private:
  friend class TaskCgroups;
  absl::Duration CpuSinceCreated() const;

  std::string path_;
  UniqueFd procs_;
  // Kept open while pooled: pread at 0 reads them afresh without an open.
  UniqueFd events_;
  UniqueFd cpu_stat_;
  absl::Duration cpu_base_;  // what earlier tasks in it used
  TaskCgroups* pool_ = nullptr;
  std::optional<TaskLimitCgroup> limits_;  // this task's, if it has any
};

// Where the agent makes its tasks' cgroups. Emptied cgroups are reused
// (making and removing one costs more than a short task's spawn); the task
// attempt a cgroup holds is named in its "user.taskgrid.task" attribute.
// Thread-safe.
class TaskCgroups {
 public:
  // `root` is a cgroup v2 path such as "/taskgrid.slice" (empty: the agent's
  // own cgroup); `agent_id` names the agent's directory under it. Fails
  // when there is no cgroup v2 hierarchy or the directories cannot be made.
  static absl::StatusOr<std::unique_ptr<TaskCgroups>> Open(absl::string_view root,
                                                           absl::string_view agent_id);
  ~TaskCgroups() ABSL_LOCKS_EXCLUDED(mu_);

  // This agent run's directory.
  const std::string& run_path() const { return run_path_; }
  // The limits Create can set ("memory", "cpus", "pids").
  std::vector<std::string> enforced_limits() const { return limits_->enforced(); }
  // A cgroup for the task attempt `name`: an idle one, or a new one, with
  // `limits` set. It must be released (or removed) before this object is
  // destroyed. kFailedPrecondition when a limit cannot be enforced here.
  absl::StatusOr<TaskCgroup> Create(absl::string_view name, const ProcessLimits& limits = {})
      ABSL_LOCKS_EXCLUDED(mu_);
  // The task attempt the cgroup at `path` holds or last held ("" if none).
  static std::string TaskOf(const std::string& path);

  // What earlier runs of this agent left behind and the sweep killed.
  struct Swept {
    std::string name;  // the task attempt
    int processes = 0;
  };
  // Kills every process in the cgroups of earlier runs of this agent (those
  // whose agent process is gone) and removes them. Waits up to a second for
  // them to die.
  std::vector<Swept> SweepEarlierRuns();

  // Starts a process that outlives the agent just long enough to kill every
  // cgroup of this run when the agent exits, however it exits.
  absl::Status StartGuardian();

 private:
  friend class TaskCgroup;
  TaskCgroups(std::string agent_path, std::string run_path, std::unique_ptr<TaskLimits> limits);
  absl::StatusOr<TaskCgroup> Make();
  void Recycle(TaskCgroup cgroup) ABSL_LOCKS_EXCLUDED(mu_);

  const std::string agent_path_;
  const std::string run_path_;
  const std::unique_ptr<TaskLimits> limits_;  // where tasks' limits are set
  UniqueFd guardian_pipe_;  // its write end: closed when the agent dies
  std::atomic<uint64_t> next_id_{0};
  absl::Mutex mu_;
  std::vector<TaskCgroup> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_AGENT_TASK_CGROUPS_H_
