// TaskCounts: the retained tasks counted by status, priority and type as they
// change, so Stats and listing totals need no scan; and the execution times
// of the most recent finishes, for Stats' percentiles.
#ifndef TASKGRID_SERVICES_COORDINATOR_TASK_COUNTS_H_
#define TASKGRID_SERVICES_COORDINATOR_TASK_COUNTS_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "services/coordinator/store/task_state.h"
#include "taskgrid/v1/task.pb.h"
#include "taskgrid/v1/task_service.pb.h"

namespace taskgrid {

class TaskCounts {
 public:
  // Percentiles are over at most this many of the latest finishes: reading
  // them costs the same with a million tasks retained as with ten.
  static constexpr size_t kRecentFinishes = 4096;

  // A task enters the table (created or recovered, in any status); `task`
  // is its state, `spec` its spec.
  void Add(const TaskState& task, const v1::TaskSpec& spec);
  // A task's status changed from `from` to its current one.
  void Changed(v1::TaskStatus from, const TaskState& task);
  // A task leaves the table.
  void Remove(const TaskState& task, const v1::TaskSpec& spec);

  int64_t total() const { return total_; }
  // Succeeded, failed, cancelled, timed out or lost.
  int64_t finished() const;
  int64_t with_status(v1::TaskStatus s) const {
    return s >= 0 && s < v1::TaskStatus_ARRAYSIZE ? by_status_[s] : 0;
  }
  v1::StatsResponse Stats() const;

 private:
  // Start to finish; negative for a task that never started.
  static absl::Duration RanFor(const TaskState& task);
  void Count(const TaskState& task, const v1::TaskSpec& spec, int sign);

  int64_t total_ = 0;
  int64_t by_status_[v1::TaskStatus_ARRAYSIZE] = {};
  int64_t by_priority_[v1::Priority_ARRAYSIZE] = {};
  absl::flat_hash_map<std::string, int64_t> by_type_;
  // Of the retained finished tasks that ran. Microseconds, not a double:
  // what one task adds, its removal takes away exactly.
  int64_t ran_ = 0;
  int64_t ran_micros_ = 0;
  std::deque<double> recent_;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_TASK_COUNTS_H_
