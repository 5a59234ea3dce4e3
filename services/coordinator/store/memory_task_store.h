// The in-process TaskStore: keeps the journal in memory, so nothing survives
// the process; every write is durable at once. The coordinator's
// `--store memory`, and the store unit tests use to restart a registry.
// Task states and events, its bulk, are kept serialized as a durable store
// writes them (one allocation each, decoded on Load like the others'); a
// spec is the registry's own, shared.
#ifndef TASKGRID_SERVICES_COORDINATOR_STORE_MEMORY_TASK_STORE_H_
#define TASKGRID_SERVICES_COORDINATOR_STORE_MEMORY_TASK_STORE_H_

#include <map>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "services/coordinator/store/task_store.h"

namespace taskgrid {

// Thread-safe.
class MemoryTaskStore final : public TaskStore {
 public:
  void PutTask(uint64_t seq, const v1::Task& state, std::shared_ptr<const v1::TaskSpec> spec)
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
  void WhenDurable(std::function<void()> done) override { done(); }
  absl::StatusOr<StoredState> Load() override ABSL_LOCKS_EXCLUDED(mu_);

  size_t task_count() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  using OutputKey = std::tuple<std::string, int, int64_t>;  // task, stream, offset
  mutable absl::Mutex mu_;
  struct Row {
    std::string state;                         // Serialized v1::Task without its spec.
    std::shared_ptr<const v1::TaskSpec> spec;  // Shared with the registry, never copied.
  };
  struct Event {
    std::string record;  // EventRecord.
    int64_t log_bytes = 0;
  };
  std::map<uint64_t, Row> tasks_ ABSL_GUARDED_BY(mu_);  // By seq.
  absl::flat_hash_map<std::string, uint64_t> seq_of_ ABSL_GUARDED_BY(mu_);
  std::map<OutputKey, std::string> output_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Event> events_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::AuditEntry> audit_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::Agent> agents_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::Run> runs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_STORE_MEMORY_TASK_STORE_H_
