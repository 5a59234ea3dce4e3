#include "services/coordinator/memory_task_store.h"

namespace taskgrid {

absl::Status MemoryTaskStore::PutTask(const v1::Task& task) {
  absl::MutexLock lock(&mu_);
  tasks_[task.id()].task = task;
  return absl::OkStatus();
}

absl::Status MemoryTaskStore::DeleteTask(const std::string& task_id) {
  absl::MutexLock lock(&mu_);
  tasks_.erase(task_id);
  return absl::OkStatus();
}

absl::Status MemoryTaskStore::AppendOutput(const std::string& task_id, v1::OutputStream stream,
                                           int64_t offset, absl::string_view data) {
  absl::MutexLock lock(&mu_);
  auto it = tasks_.find(task_id);
  if (it == tasks_.end()) return absl::NotFoundError("task_id: unknown task " + task_id);
  int64_t& end = it->second.output_end[stream];
  if (offset != end) {
    return absl::InvalidArgumentError("offset: output is not contiguous (expected " +
                                      std::to_string(end) + ", got " + std::to_string(offset) +
                                      ")");
  }
  end += static_cast<int64_t>(data.size());
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::Task>> MemoryTaskStore::LoadTasks() {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Task> out;
  out.reserve(tasks_.size());
  for (const auto& [id, e] : tasks_) out.push_back(e.task);
  return out;
}

size_t MemoryTaskStore::size() const {
  absl::MutexLock lock(&mu_);
  return tasks_.size();
}

}  // namespace taskgrid
