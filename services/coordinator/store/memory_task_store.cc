#include "services/coordinator/store/memory_task_store.h"

#include "absl/strings/str_cat.h"

namespace taskgrid {

void MemoryTaskStore::PutTask(uint64_t seq, const v1::Task& state,
                              std::shared_ptr<const v1::TaskSpec> spec) {
  std::string record = state.SerializeAsString();
  absl::MutexLock lock(&mu_);
  Row& row = tasks_[seq];
  row.state = std::move(record);
  if (spec != nullptr) row.spec = std::move(spec);
  seq_of_[state.id()] = seq;
}

void MemoryTaskStore::DeleteTask(const std::string& task_id) {
  absl::MutexLock lock(&mu_);
  if (auto it = seq_of_.find(task_id); it != seq_of_.end()) {
    tasks_.erase(it->second);
    seq_of_.erase(it);
  }
  output_.erase(output_.lower_bound({task_id, 0, 0}),
                output_.lower_bound({task_id, v1::OutputStream_ARRAYSIZE, 0}));
}

void MemoryTaskStore::AppendOutput(const std::string& task_id, v1::OutputStream stream,
                                   int64_t offset, absl::string_view data) {
  absl::MutexLock lock(&mu_);
  output_[{task_id, stream, offset}] = std::string(data);
}

void MemoryTaskStore::TrimOutput(const std::string& task_id, v1::OutputStream stream,
                                 int64_t head_end, int64_t tail_start) {
  absl::MutexLock lock(&mu_);
  for (auto it = output_.lower_bound({task_id, stream, head_end});
       it != output_.end() && std::get<0>(it->first) == task_id &&
       std::get<1>(it->first) == stream;) {
    if (std::get<2>(it->first) + static_cast<int64_t>(it->second.size()) > tail_start) break;
    it = output_.erase(it);
  }
}

void MemoryTaskStore::AppendEvent(const v1::TaskEvent& event) {
  Event e;
  e.record = EventRecord(event, e.log_bytes);
  absl::MutexLock lock(&mu_);
  events_[event.cursor()] = std::move(e);
}

void MemoryTaskStore::TrimEvents(uint64_t first_kept) {
  absl::MutexLock lock(&mu_);
  events_.erase(events_.begin(), events_.lower_bound(first_kept));
}

void MemoryTaskStore::PutAgent(const v1::Agent& agent) {
  absl::MutexLock lock(&mu_);
  agents_[agent.agent_id()] = agent;
}

void MemoryTaskStore::AppendAudit(const v1::AuditEntry& entry) {
  absl::MutexLock lock(&mu_);
  audit_.push_back(entry);
}

void MemoryTaskStore::DeleteAgent(const std::string& agent_id) {
  absl::MutexLock lock(&mu_);
  agents_.erase(agent_id);
}

void MemoryTaskStore::PutRun(const v1::Run& run) {
  absl::MutexLock lock(&mu_);
  runs_[run.id()] = run;
}

void MemoryTaskStore::DeleteRun(const std::string& run_id) {
  absl::MutexLock lock(&mu_);
  runs_.erase(run_id);
}

absl::StatusOr<StoredState> MemoryTaskStore::Load() {
  absl::MutexLock lock(&mu_);
  StoredState state;
  for (const auto& [seq, row] : tasks_) {
    StoredState::Task& t = state.tasks.emplace_back();
    t.seq = seq;
    if (!t.task.ParseFromString(row.state)) {
      return absl::DataLossError(absl::StrCat("store: cannot decode the task with seq ", seq));
    }
    if (row.spec != nullptr) *t.task.mutable_spec() = *row.spec;
  }
  for (const auto& [key, data] : output_) {
    state.output.push_back({std::get<0>(key), static_cast<v1::OutputStream>(std::get<1>(key)),
                            std::get<2>(key), data});
  }
  for (const auto& [cursor, e] : events_) {
    StoredState::Event& out = state.events.emplace_back();
    out.log_bytes = e.log_bytes;
    if (!out.event.ParseFromString(e.record)) {
      return absl::DataLossError(absl::StrCat("store: cannot decode the event ", cursor));
    }
  }
  for (const auto& [id, agent] : agents_) state.agents.push_back(agent);
  for (const auto& [id, run] : runs_) state.runs.push_back(run);
  const size_t first = audit_.size() > kAuditLoaded ? audit_.size() - kAuditLoaded : 0;
  state.audit.assign(audit_.begin() + static_cast<std::ptrdiff_t>(first), audit_.end());
  return state;
}

size_t MemoryTaskStore::task_count() const {
  absl::MutexLock lock(&mu_);
  return tasks_.size();
}

}  // namespace taskgrid
