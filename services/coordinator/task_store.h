// Persistence as a seam: the registry keeps every task in memory and writes
// each change through a TaskStore, its journal. MemoryTaskStore keeps the
// journal in process (nothing survives a restart); durable stores (SQLite,
// PostgreSQL) implement the same calls.
#ifndef TASKGRID_SERVICES_COORDINATOR_TASK_STORE_H_
#define TASKGRID_SERVICES_COORDINATOR_TASK_STORE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "taskgrid/v1/task.pb.h"

namespace taskgrid {

// Journal of the registry. Calls arrive in the order the registry made the
// changes, from under its lock, so implementations must be thread-safe and
// must not block for long (batch and commit in the background).
class TaskStore {
 public:
  virtual ~TaskStore() = default;
  // Inserts or replaces the task's snapshot.
  virtual absl::Status PutTask(const v1::Task& task) = 0;
  // Removes the task and its output; OK if absent.
  virtual absl::Status DeleteTask(const std::string& task_id) = 0;
  // Output bytes of a stream, starting at `offset` (appends are contiguous).
  virtual absl::Status AppendOutput(const std::string& task_id, v1::OutputStream stream,
                                    int64_t offset, absl::string_view data) = 0;
  // Every stored task, for recovery after a restart.
  virtual absl::StatusOr<std::vector<v1::Task>> LoadTasks() = 0;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_TASK_STORE_H_
