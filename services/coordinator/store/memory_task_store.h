// The in-process TaskStore: keeps the journal in memory, so nothing survives
// the process. The coordinator's `--store memory`, and what the unit tests
// restart a registry from. Its writes take the durable stores' path
// (GroupCommitStore): queued, committed in batches on the commit thread, and
// acknowledged from there, so replies, agent sends and events come in the
// same order and on the same thread as with SQLite or PostgreSQL. Rows stay
// serialized as a durable store writes them (decoded on Load); a spec is the
// registry's own, shared.
#ifndef TASKGRID_SERVICES_COORDINATOR_STORE_MEMORY_TASK_STORE_H_
#define TASKGRID_SERVICES_COORDINATOR_STORE_MEMORY_TASK_STORE_H_

#include <map>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "services/coordinator/store/group_commit_store.h"

namespace taskgrid {

// Thread-safe.
class MemoryTaskStore final : public GroupCommitStore {
 public:
  MemoryTaskStore();
  ~MemoryTaskStore() override;

  // Returns what every write made before the call left.
  absl::StatusOr<StoredState> Load() override ABSL_LOCKS_EXCLUDED(mu_);

  // Tasks stored once every write made before the call is.
  size_t task_count() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  absl::Status Commit(const std::vector<StoreChange>& batch) override ABSL_LOCKS_EXCLUDED(mu_);

  using OutputKey = std::tuple<std::string, int, int64_t>;  // task, stream, offset
  struct Row {
    std::string state;                         // Serialized v1::Task without its spec.
    std::shared_ptr<const v1::TaskSpec> spec;  // Shared with the registry, never copied.
  };
  struct Event {
    std::string record;  // EventRecord.
    int64_t log_bytes = 0;
  };
  mutable absl::Mutex mu_;
  std::map<uint64_t, Row> tasks_ ABSL_GUARDED_BY(mu_);  // By seq.
  absl::flat_hash_map<std::string, uint64_t> seq_of_ ABSL_GUARDED_BY(mu_);
  std::map<OutputKey, std::string> output_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Event> events_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> audit_ ABSL_GUARDED_BY(mu_);       // Serialized, in order.
  std::map<std::string, std::string> agents_ ABSL_GUARDED_BY(mu_);  // Serialized, by id.
  std::map<std::string, std::string> runs_ ABSL_GUARDED_BY(mu_);    // Serialized, by id.
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_STORE_MEMORY_TASK_STORE_H_
