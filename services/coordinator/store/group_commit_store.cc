#include "services/coordinator/store/group_commit_store.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

// GCC 12 misreports moves of std::variant members as uninitialized reads.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace taskgrid {

GroupCommitStore::~GroupCommitStore() { StopCommitter(); }

void GroupCommitStore::StartCommitter() {
  committer_ = std::thread([this] { CommitLoop(); });
}

void GroupCommitStore::StopCommitter() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (committer_.joinable()) committer_.join();
}

void GroupCommitStore::BeginGroup() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](GroupCommitStore* s) ABSL_NO_THREAD_SAFETY_ANALYSIS { return !s->commit_waiting_; },
      this));
  ++open_groups_;
}

void GroupCommitStore::EndGroup() {
  absl::MutexLock lock(&mu_);
  --open_groups_;
}

void GroupCommitStore::Enqueue(StoreChange c) {
  ++queued_seq_;
  pending_.push_back(std::move(c));
}

void GroupCommitStore::PutTask(uint64_t seq, const TaskState& state,
                               std::shared_ptr<const v1::TaskSpec> spec) {
  change::PutTask c{seq, state.id, state.status,
                    TaskState::IsSet(state.finished_at) ? absl::ToUnixSeconds(state.finished_at) : 0,
                    state, std::move(spec)};
  absl::MutexLock lock(&mu_);
  if (auto it = put_index_.find(state.id); it != put_index_.end()) {
    auto& prev = std::get<change::PutTask>(pending_[it->second]);
    if (!c.spec) c.spec = std::move(prev.spec);  // Not yet committed.
    prev = std::move(c);  // The newest state wins.
    ++queued_seq_;
    return;
  }
  put_index_[state.id] = pending_.size();
  Enqueue(std::move(c));
}

void GroupCommitStore::DeleteTask(const std::string& task_id) {
  absl::MutexLock lock(&mu_);
  put_index_.erase(task_id);
  for (int s = 0; s < v1::OutputStream_ARRAYSIZE; ++s) {
    output_index_.erase({task_id, s});
    trim_index_.erase({task_id, s});
  }
  Enqueue(change::DeleteTask{task_id});
}

void GroupCommitStore::AppendOutput(const std::string& task_id, v1::OutputStream stream,
                                    int64_t offset, absl::string_view data) {
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = output_index_.try_emplace({task_id, stream}, pending_.size());
  if (!inserted) {
    auto& prev = std::get<change::Output>(pending_[it->second]);
    if (prev.offset + static_cast<int64_t>(prev.data.size()) == offset) {
      prev.data.append(data.data(), data.size());
      ++queued_seq_;
      return;
    }
    it->second = pending_.size();
  }
  Enqueue(change::Output{task_id, stream, offset, std::string(data)});
}

namespace {

// Cuts the bytes a trim drops from a queued write, so they never reach the
// disk. The write keeps its end: later output still folds into it, and a
// restore still learns the stream's length from it.
void CutTrimmed(change::Output& o, int64_t head_end, int64_t tail_start) {
  if (o.offset < head_end) return;  // Holds head bytes: once per stream.
  const int64_t end = o.offset + static_cast<int64_t>(o.data.size());
  const int64_t from = std::min(std::max(o.offset, tail_start), end);
  o.data.erase(0, static_cast<size_t>(from - o.offset));
  o.offset = from;
}

}  // namespace

void GroupCommitStore::TrimOutput(const std::string& task_id, v1::OutputStream stream,
                                  int64_t head_end, int64_t tail_start) {
  absl::MutexLock lock(&mu_);
  if (auto out = output_index_.find({task_id, stream}); out != output_index_.end()) {
    CutTrimmed(std::get<change::Output>(pending_[out->second]), head_end, tail_start);
  }
  change::TrimOutput c{task_id, stream, head_end, tail_start};
  auto [it, inserted] = trim_index_.try_emplace({task_id, stream}, pending_.size());
  if (!inserted) {
    pending_[it->second] = std::move(c);
    ++queued_seq_;
    return;
  }
  Enqueue(std::move(c));
}

void GroupCommitStore::AppendEvent(const v1::TaskEvent& event) {
  change::Event c{event.cursor(), 0, {}};
  c.blob = EventRecord(event, c.log_bytes);
  absl::MutexLock lock(&mu_);
  Enqueue(std::move(c));
}

void GroupCommitStore::TrimEvents(uint64_t first_kept) {
  absl::MutexLock lock(&mu_);
  Enqueue(change::TrimEvents{first_kept});
}

void GroupCommitStore::PutAgent(const v1::Agent& agent) {
  change::PutAgent c{agent.agent_id(), agent.SerializeAsString()};
  absl::MutexLock lock(&mu_);
  Enqueue(std::move(c));
}

void GroupCommitStore::AppendAudit(const v1::AuditEntry& entry) {
  change::Audit c{entry.seq(), entry.SerializeAsString()};
  absl::MutexLock lock(&mu_);
  Enqueue(std::move(c));
}

void GroupCommitStore::DeleteAgent(const std::string& agent_id) {
  absl::MutexLock lock(&mu_);
  Enqueue(change::DeleteAgent{agent_id});
}

void GroupCommitStore::PutRun(const v1::Run& run) {
  change::PutRun c{run.id(), run.SerializeAsString()};
  absl::MutexLock lock(&mu_);
  Enqueue(std::move(c));
}

void GroupCommitStore::DeleteRun(const std::string& run_id) {
  absl::MutexLock lock(&mu_);
  Enqueue(change::DeleteRun{run_id});
}

void GroupCommitStore::WhenDurable(std::function<void()> done) {
  absl::MutexLock lock(&mu_);
  waiters_.emplace_back(queued_seq_, std::move(done));
}

void GroupCommitStore::AwaitDelivered() {
  absl::Notification delivered;
  WhenDurable([&delivered] { delivered.Notify(); });
  delivered.WaitForNotification();
}

absl::Status GroupCommitStore::health() const {
  absl::MutexLock lock(&mu_);
  return failing_;
}

void GroupCommitStore::DeliverDurable() {
  for (;;) {
    std::vector<std::function<void()>> ready;
    {
      absl::MutexLock lock(&mu_);
      while (DeliverableLocked()) {
        ready.push_back(std::move(waiters_.front().second));
        waiters_.pop_front();
      }
      if (ready.empty()) return;
    }
    for (auto& done : ready) done();
  }
}

void GroupCommitStore::CommitLoop() {
  std::vector<StoreChange> batch;
  uint64_t batch_seq = 0;  // Writes queued up to the end of `batch`.
  absl::Duration backoff = absl::Milliseconds(50);
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (batch.empty()) {
        mu_.Await(absl::Condition(
            +[](GroupCommitStore* s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
              return !s->pending_.empty() || s->stopping_ || s->DeliverableLocked();
            },
            this));
        if (pending_.empty() && !DeliverableLocked()) return;  // Stopping with nothing left.
        if (!pending_.empty()) {
          // The queue is taken between groups. New ones wait meanwhile: a
          // busy registry opens one after another and would starve this.
          commit_waiting_ = true;
          mu_.Await(absl::Condition(
              +[](GroupCommitStore* s)
                  ABSL_NO_THREAD_SAFETY_ANALYSIS { return s->open_groups_ == 0; },
              this));
          commit_waiting_ = false;
          batch.swap(pending_);
          put_index_.clear();
          output_index_.clear();
          trim_index_.clear();
          batch_seq = queued_seq_;
        }
      }
    }
    if (batch.empty()) {  // Only callbacks of writes already durable.
      DeliverDurable();
      continue;
    }
    const absl::Time start = absl::Now();
    const absl::Status s = Commit(batch);
    if (metrics_.commit_seconds) {
      metrics_.commit_seconds->Observe(absl::ToDoubleSeconds(absl::Now() - start));
    }
    if (!s.ok()) {
      // Keep the batch and try again: nothing it holds was acknowledged.
      if (metrics_.commit_failures) metrics_.commit_failures->Increment();
      spdlog::error("store_commit_failed changes={} status=\"{}\" retry_in={}", batch.size(),
                    s.ToString(), absl::FormatDuration(backoff));
      {
        absl::MutexLock lock(&mu_);
        failing_ = s;
      }
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, absl::Seconds(5));
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      continue;
    }
    backoff = absl::Milliseconds(50);
    if (metrics_.batch_changes) metrics_.batch_changes->Observe(static_cast<double>(batch.size()));
    batch.clear();
    {
      absl::MutexLock lock(&mu_);
      durable_seq_ = batch_seq;
      failing_ = absl::OkStatus();
    }
    DeliverDurable();
  }
}

}  // namespace taskgrid
