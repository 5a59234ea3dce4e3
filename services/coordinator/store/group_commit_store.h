// The write path shared by the durable stores: writes are queued under a
// short lock (coalescing repeated snapshots of a task and adjacent output of a
// stream) and one thread commits everything queued so far as one transaction,
// so a busy coordinator pays one commit for many changes and an idle one
// commits each change at once.
#ifndef TASKGRID_SERVICES_COORDINATOR_STORE_GROUP_COMMIT_STORE_H_
#define TASKGRID_SERVICES_COORDINATOR_STORE_GROUP_COMMIT_STORE_H_

#include <prometheus/counter.h>
#include <prometheus/histogram.h>

#include <deque>
#include <memory>
#include <thread>
#include <utility>
#include <variant>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "services/coordinator/store/task_store.h"

namespace taskgrid {

// Optional instruments; any may be null.
struct StoreMetrics {
  prometheus::Histogram* commit_seconds = nullptr;  // One per transaction.
  prometheus::Histogram* batch_changes = nullptr;   // Changes per transaction.
  prometheus::Counter* commit_failures = nullptr;
};

// One queued change, as a backend applies it.
namespace change {
struct PutTask {
  uint64_t seq = 0;
  std::string task_id;
  int status = 0;        // v1::TaskStatus, for the store's own index.
  int64_t finished = 0;  // Unix seconds of finished_at, 0 while unfinished.
  TaskState state;       // Serialized on the commit thread, as is ...
  std::shared_ptr<const v1::TaskSpec> spec;  // ... which is here when new.
};
struct DeleteTask {
  std::string task_id;
};
struct Output {
  std::string task_id;
  int stream = 0;
  int64_t offset = 0;
  std::string data;
};
struct TrimOutput {
  std::string task_id;
  int stream = 0;
  int64_t head_end = 0;
  int64_t tail_start = 0;
};
struct Event {
  uint64_t cursor = 0;
  int64_t log_bytes = 0;  // Log events: output bytes not repeated in the blob.
  std::string blob;       // Serialized v1::TaskEvent.
};
struct TrimEvents {
  uint64_t first_kept = 0;
};
struct PutAgent {
  std::string agent_id;
  std::string blob;  // Serialized v1::Agent.
};
struct DeleteAgent {
  std::string agent_id;
};
struct Audit {
  uint64_t seq = 0;
  std::string blob;  // Serialized v1::AuditEntry.
};
struct PutRun {
  std::string run_id;
  std::string blob;  // Serialized v1::Run.
};
struct DeleteRun {
  std::string run_id;
};
}  // namespace change

using StoreChange =
    std::variant<change::PutTask, change::DeleteTask, change::Output, change::TrimOutput,
                 change::Event, change::TrimEvents, change::PutAgent, change::DeleteAgent,
                 change::Audit, change::PutRun, change::DeleteRun>;

class GroupCommitStore : public TaskStore {
 public:
  ~GroupCommitStore() override;

  void PutTask(uint64_t seq, const TaskState& state, std::shared_ptr<const v1::TaskSpec> spec)
      override ABSL_LOCKS_EXCLUDED(mu_);
  void DeleteTask(const std::string& task_id) override ABSL_LOCKS_EXCLUDED(mu_);
  void AppendOutput(const std::string& task_id, v1::OutputStream stream, int64_t offset,
                    absl::string_view data) override ABSL_LOCKS_EXCLUDED(mu_);
  void TrimOutput(const std::string& task_id, v1::OutputStream stream, int64_t head_end,
                  int64_t tail_start) override ABSL_LOCKS_EXCLUDED(mu_);
  void AppendEvent(const v1::TaskEvent& event) override ABSL_LOCKS_EXCLUDED(mu_);
  void TrimEvents(uint64_t first_kept) override ABSL_LOCKS_EXCLUDED(mu_);
  void PutAgent(const v1::Agent& agent) override ABSL_LOCKS_EXCLUDED(mu_);
  void AppendAudit(const v1::AuditEntry& entry) override ABSL_LOCKS_EXCLUDED(mu_);
  void DeleteAgent(const std::string& agent_id) override ABSL_LOCKS_EXCLUDED(mu_);
  void PutRun(const v1::Run& run) override ABSL_LOCKS_EXCLUDED(mu_);
  void DeleteRun(const std::string& run_id) override ABSL_LOCKS_EXCLUDED(mu_);
  // Never inline: `done` runs on the commit thread, after the writes before
  // it commit, so no caller's lock is held while it runs.
  void WhenDurable(std::function<void()> done) override ABSL_LOCKS_EXCLUDED(mu_);
  void BeginGroup() override ABSL_LOCKS_EXCLUDED(mu_);
  void EndGroup() override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status health() const override ABSL_LOCKS_EXCLUDED(mu_);

  // Blocks until every write made and callback registered before the call
  // has been committed and run. Not while holding a lock a callback takes.
  void AwaitDelivered() ABSL_LOCKS_EXCLUDED(mu_);

 protected:
  explicit GroupCommitStore(StoreMetrics metrics) : metrics_(metrics) {}

  // Starts the commit thread; call once the backend can commit.
  void StartCommitter();
  // Commits what is queued and joins the thread. Backends call it from their
  // destructor, before their connection goes away.
  void StopCommitter() ABSL_LOCKS_EXCLUDED(mu_);

  // Applies `batch` in order as one transaction; all or nothing. Called on
  // the commit thread only.
  virtual absl::Status Commit(const std::vector<StoreChange>& batch) = 0;

 private:
  void Enqueue(StoreChange c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CommitLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // Runs the callbacks whose writes are durable, in order, until none is left.
  void DeliverDurable() ABSL_LOCKS_EXCLUDED(mu_);
  // A callback can run now.
  bool DeliverableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !waiters_.empty() && waiters_.front().first <= durable_seq_;
  }

  const StoreMetrics metrics_;
  mutable absl::Mutex mu_;
  std::vector<StoreChange> pending_ ABSL_GUARDED_BY(mu_);
  // Within pending_: the snapshot of each task and the last output change of
  // each (task, stream), so later writes fold into them.
  absl::flat_hash_map<std::string, size_t> put_index_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::pair<std::string, int>, size_t> output_index_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::pair<std::string, int>, size_t> trim_index_ ABSL_GUARDED_BY(mu_);
  int open_groups_ ABSL_GUARDED_BY(mu_) = 0;  // The queue is taken only at 0,
  bool commit_waiting_ ABSL_GUARDED_BY(mu_) = false;  // and no group opens meanwhile.
  uint64_t queued_seq_ ABSL_GUARDED_BY(mu_) = 0;   // Writes queued so far.
  uint64_t durable_seq_ ABSL_GUARDED_BY(mu_) = 0;  // Writes committed so far.
  std::deque<std::pair<uint64_t, std::function<void()>>> waiters_ ABSL_GUARDED_BY(mu_);
  absl::Status failing_ ABSL_GUARDED_BY(mu_);  // The last commit's error, until one succeeds.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread committer_;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_STORE_GROUP_COMMIT_STORE_H_
