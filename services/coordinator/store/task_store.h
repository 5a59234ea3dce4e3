// Persistence as a seam: the registry keeps every task in memory and writes
// each change through a TaskStore, its journal. On start the coordinator loads
// the journal and rebuilds the registry from it. MemoryTaskStore keeps the
// journal in process; SqliteTaskStore and PostgresTaskStore make it durable.
#ifndef TASKGRID_SERVICES_COORDINATOR_STORE_TASK_STORE_H_
#define TASKGRID_SERVICES_COORDINATOR_STORE_TASK_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/coordinator/store/task_state.h"
#include "taskgrid/v1/task.pb.h"
#include "taskgrid/v1/task_service.pb.h"

namespace taskgrid {

// Everything a store holds, as Load returns it.
struct StoredState {
  struct Task {
    uint64_t seq = 0;  // Submission order.
    v1::Task task;     // With its spec.
    // False when the row predates stored specs (its spec was inside each
    // snapshot): its next PutTask must carry the spec again.
    bool spec_stored = true;
  };
  struct Output {
    std::string task_id;
    v1::OutputStream stream = v1::OUTPUT_STREAM_UNSPECIFIED;
    int64_t offset = 0;
    std::string data;
  };
  struct Event {
    v1::TaskEvent event;    // Log events come without their data ...
    int64_t log_bytes = 0;  // ... which is this many bytes of the task's output.
  };
  std::vector<Task> tasks;     // By seq.
  std::vector<Output> output;  // By task, stream and offset; contiguous except
                               // where TrimOutput removed the middle.
  std::vector<Event> events;   // By cursor; task snapshots come without their spec.
  std::vector<v1::Agent> agents;
  std::vector<v1::AuditEntry> audit;  // The newest kAuditLoaded, by seq.
  std::vector<v1::Run> runs;
};

// An event as every store journals it, serialized: a log event without its
// data, whose length goes to `log_bytes` (0 for other events).
std::string EventRecord(const v1::TaskEvent& event, int64_t& log_bytes);

// A task row as the durable stores keep it, back into `out`: its state and,
// unless the row predates specs stored apart (null `spec`), its spec.
// False when either does not decode.
bool DecodeTaskRow(uint64_t seq, absl::string_view state, const absl::string_view* spec,
                   StoredState::Task& out);

// Audit entries Load returns; older ones stay in the store for export.
inline constexpr int kAuditLoaded = 100'000;

// The registry's journal. Writes arrive in the order the registry made the
// changes, from under its lock: they never block on I/O. Every store commits
// them in that order, in batches, on its own thread.
// Thread-safe.
class TaskStore {
 public:
  virtual ~TaskStore() = default;

  // Inserts or replaces a task's state. Its spec is journaled apart, once: `spec` is given when the task is
  // created, when its spec changes and when Load said the store lacks it
  // (spec_stored), and null on the updates that follow, which keep the
  // stored one. A task's seq and id never change.
  virtual void PutTask(uint64_t seq, const TaskState& state,
                       std::shared_ptr<const v1::TaskSpec> spec) = 0;
  // Removes the task and its output.
  virtual void DeleteTask(const std::string& task_id) = 0;
  // Output bytes of a stream starting at `offset` (appends are contiguous).
  virtual void AppendOutput(const std::string& task_id, v1::OutputStream stream, int64_t offset,
                            absl::string_view data) = 0;
  // Drops stored output lying wholly inside [head_end, tail_start): the part
  // of a long stream that the per-task cap no longer keeps.
  virtual void TrimOutput(const std::string& task_id, v1::OutputStream stream, int64_t head_end,
                          int64_t tail_start) = 0;
  // An event with its cursor. A log event's data is not stored again: Load
  // returns it empty with its length, and the registry refills it from the
  // output. A task snapshot in an event comes without its spec, which the
  // registry refills from the task's.
  virtual void AppendEvent(const v1::TaskEvent& event) = 0;
  // Drops events with a cursor below `first_kept`.
  virtual void TrimEvents(uint64_t first_kept) = 0;
  virtual void PutAgent(const v1::Agent& agent) = 0;
  // Audit entries are never trimmed: they leave the store only by hand.
  virtual void AppendAudit(const v1::AuditEntry& entry) = 0;
  virtual void DeleteAgent(const std::string& agent_id) = 0;
  // Inserts or replaces a fleet run's record; removes it.
  virtual void PutRun(const v1::Run& run) = 0;
  virtual void DeleteRun(const std::string& run_id) = 0;

  // Runs `done` once every write made before this call is durable, on the
  // store's own thread, never inline: the caller may hold its lock.
  // Callbacks run in the order they were registered. While the store cannot
  // commit, they wait (and it keeps retrying).
  virtual void WhenDurable(std::function<void()> done) = 0;

  // The writes made while a group is open commit in one transaction: a
  // change and the events that describe it are stored together or not at
  // all, so a crash never leaves one without the other. A thread opens one
  // group at a time, and keeps it short: no commit starts while one is
  // open, and a commit that waits for it holds back new ones.
  virtual void BeginGroup() {}
  virtual void EndGroup() {}
  class Group {
   public:
    explicit Group(TaskStore& store) : store_(store) { store_.BeginGroup(); }
    ~Group() { store_.EndGroup(); }
    Group(const Group&) = delete;
    Group& operator=(const Group&) = delete;

   private:
    TaskStore& store_;
  };

  // Blocks until this coordinator may write: at once for a store only it
  // uses; for a shared store, until it holds the store's lease (or
  // `stopping` returns true: kCancelled). If the lease is lost later,
  // `lost` runs once and no write is ever committed again.
  virtual absl::Status AwaitLeadership(const std::function<bool()>& stopping,
                                       std::function<void(const absl::Status&)> lost) {
    return absl::OkStatus();
  }
  struct LeaderInfo {
    int64_t term = 0;       // 0 for stores without a lease.
    bool failover = false;  // The lease was taken over from another holder.
  };
  virtual LeaderInfo leader() const { return {}; }

  // OK while writes commit; the last error while the store keeps failing
  // (disk full, database down). New work is refused meanwhile.
  virtual absl::Status health() const { return absl::OkStatus(); }

  // Everything stored; called once, after AwaitLeadership, before any write.
  virtual absl::StatusOr<StoredState> Load() = 0;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_STORE_TASK_STORE_H_
