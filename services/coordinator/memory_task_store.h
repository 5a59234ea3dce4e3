// The in-process TaskStore: keeps task snapshots and output byte counts in
// memory. Used by default in this release's single-process coordinator and
// by tests that restart a registry over the same store.
#ifndef TASKGRID_SERVICES_COORDINATOR_MEMORY_TASK_STORE_H_
#define TASKGRID_SERVICES_COORDINATOR_MEMORY_TASK_STORE_H_

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "services/coordinator/task_store.h"

namespace taskgrid {

// Thread-safe.
class MemoryTaskStore final : public TaskStore {
 public:
  absl::Status PutTask(const v1::Task& task) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status DeleteTask(const std::string& task_id) override ABSL_LOCKS_EXCLUDED(mu_);
  // Checks contiguity; the bytes themselves live in the registry.
  absl::Status AppendOutput(const std::string& task_id, v1::OutputStream stream, int64_t offset,
                            absl::string_view data) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::vector<v1::Task>> LoadTasks() override ABSL_LOCKS_EXCLUDED(mu_);

  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Entry {
    v1::Task task;
    int64_t output_end[3] = {0, 0, 0};  // Indexed by v1::OutputStream.
  };
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> tasks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_MEMORY_TASK_STORE_H_
