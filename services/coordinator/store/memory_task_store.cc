#include "services/coordinator/store/memory_task_store.h"

#include "absl/strings/str_cat.h"
#include "services/common/status_util.h"

namespace taskgrid {
namespace {

template <typename Message>
absl::Status Decode(const std::string& record, absl::string_view what, Message& out) {
  if (out.ParseFromString(record)) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat("store: cannot decode ", what));
}

}  // namespace

MemoryTaskStore::MemoryTaskStore() : GroupCommitStore(StoreMetrics{}) { StartCommitter(); }

MemoryTaskStore::~MemoryTaskStore() { StopCommitter(); }

absl::Status MemoryTaskStore::Commit(const std::vector<StoreChange>& batch) {
  absl::MutexLock lock(&mu_);
  for (const StoreChange& c : batch) {
    if (const auto* p = std::get_if<change::PutTask>(&c)) {
      Row& row = tasks_[p->seq];
      row.state = p->state.ToProto().SerializeAsString();
      if (p->spec != nullptr) row.spec = p->spec;
      seq_of_[p->task_id] = p->seq;
    } else if (const auto* d = std::get_if<change::DeleteTask>(&c)) {
      if (auto it = seq_of_.find(d->task_id); it != seq_of_.end()) {
        tasks_.erase(it->second);
        seq_of_.erase(it);
      }
      output_.erase(output_.lower_bound({d->task_id, 0, 0}),
                    output_.lower_bound({d->task_id, v1::OutputStream_ARRAYSIZE, 0}));
    } else if (const auto* o = std::get_if<change::Output>(&c)) {
      output_[{o->task_id, o->stream, o->offset}] = o->data;
    } else if (const auto* t = std::get_if<change::TrimOutput>(&c)) {
      for (auto it = output_.lower_bound({t->task_id, t->stream, t->head_end});
           it != output_.end() && std::get<0>(it->first) == t->task_id &&
           std::get<1>(it->first) == t->stream;) {
        if (std::get<2>(it->first) + static_cast<int64_t>(it->second.size()) > t->tail_start) break;
        it = output_.erase(it);
      }
    } else if (const auto* e = std::get_if<change::Event>(&c)) {
      events_[e->cursor] = {e->blob, e->log_bytes};
    } else if (const auto* te = std::get_if<change::TrimEvents>(&c)) {
      events_.erase(events_.begin(), events_.lower_bound(te->first_kept));
    } else if (const auto* a = std::get_if<change::PutAgent>(&c)) {
      agents_[a->agent_id] = a->blob;
    } else if (const auto* da = std::get_if<change::DeleteAgent>(&c)) {
      agents_.erase(da->agent_id);
    } else if (const auto* au = std::get_if<change::Audit>(&c)) {
      audit_.push_back(au->blob);
    } else if (const auto* r = std::get_if<change::PutRun>(&c)) {
      runs_[r->run_id] = r->blob;
    } else if (const auto* dr = std::get_if<change::DeleteRun>(&c)) {
      runs_.erase(dr->run_id);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<StoredState> MemoryTaskStore::Load() {
  AwaitDelivered();
  absl::MutexLock lock(&mu_);
  StoredState state;
  for (const auto& [seq, row] : tasks_) {
    StoredState::Task& t = state.tasks.emplace_back();
    t.seq = seq;
    TASKGRID_RETURN_IF_ERROR(Decode(row.state, absl::StrCat("the task with seq ", seq), t.task));
    if (row.spec != nullptr) *t.task.mutable_spec() = *row.spec;
  }
  for (const auto& [key, data] : output_) {
    state.output.push_back({std::get<0>(key), static_cast<v1::OutputStream>(std::get<1>(key)),
                            std::get<2>(key), data});
  }
  for (const auto& [cursor, e] : events_) {
    StoredState::Event& out = state.events.emplace_back();
    out.log_bytes = e.log_bytes;
    TASKGRID_RETURN_IF_ERROR(Decode(e.record, absl::StrCat("the event ", cursor), out.event));
  }
  for (const auto& [id, record] : agents_) {
    TASKGRID_RETURN_IF_ERROR(Decode(record, absl::StrCat("the agent ", id), state.agents.emplace_back()));
  }
  for (const auto& [id, record] : runs_) {
    TASKGRID_RETURN_IF_ERROR(Decode(record, absl::StrCat("the run ", id), state.runs.emplace_back()));
  }
  const size_t first = audit_.size() > kAuditLoaded ? audit_.size() - kAuditLoaded : 0;
  for (size_t i = first; i < audit_.size(); ++i) {
    TASKGRID_RETURN_IF_ERROR(Decode(audit_[i], "an audit entry", state.audit.emplace_back()));
  }
  return state;
}

size_t MemoryTaskStore::task_count() {
  AwaitDelivered();
  absl::MutexLock lock(&mu_);
  return tasks_.size();
}

}  // namespace taskgrid
