// The coordinator's event log: every task and agent event gets the next
// cursor and is kept in a bounded ring, so any reader (gRPC Watch, and through
// it SSE and WebSocket) can resume after the last cursor it saw. A reader
// whose cursor fell out of the ring gets an explicit RESYNC. Readers see an
// event only once it is published (durable in the store), so no reader ever
// holds a cursor that a restart could give to another event. An event's
// task snapshot is kept without its spec and shares the task's (immutable;
// a new one replaces it): a reader gets it filled in. Listeners are woken on
// the log's own thread, not the publisher's, and only those whose interest
// (a task, a run, an agent, or everything) a newly published event matches.
#ifndef TASKGRID_SERVICES_COORDINATOR_EVENT_LOG_H_
#define TASKGRID_SERVICES_COORDINATOR_EVENT_LOG_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "taskgrid/v1/task.pb.h"

namespace taskgrid {

// Thread-safe. Owned by the coordinator; outlives every reader.
class EventLog {
 public:
  struct Options {
    // Events kept; older ones are dropped first.
    size_t max_events = 100'000;
    // Approximate bytes kept: output bytes plus 512 per event.
    size_t max_bytes = 64 << 20;
  };

  // Told that events it may want were published. Called on the log's
  // fan-out thread, without EventLog's lock held.
  class Listener {
   public:
    virtual ~Listener() = default;
    virtual void OnAppended() = 0;
  };
  // What a listener reads: events of this task, else of this run, else of
  // this agent; all empty for every event. A listener that filters further
  // (by type) is woken for events it then skips.
  struct Interest {
    std::string task_id;
    std::string run_id;
    std::string agent_id;
  };

  explicit EventLog(Options options);
  EventLog() : EventLog(Options{}) {}
  ~EventLog();

  // An event as the ring holds it.
  struct Entry {
    v1::TaskEvent event;  // Its task snapshot (if any) without a spec ...
    std::shared_ptr<const v1::TaskSpec> spec;  // ... which is this one.
  };

  // Assigns the next cursor and stores the event, unpublished, with `spec`
  // as its task's. Returns the event as stored, without the spec (valid
  // until the next Append).
  const v1::TaskEvent& Append(v1::TaskEvent event,
                              std::shared_ptr<const v1::TaskSpec> spec = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Makes events up to `cursor` visible to readers; the fan-out thread then
  // wakes the listeners they interest.
  void Publish(uint64_t cursor) ABSL_LOCKS_EXCLUDED(mu_);

  // Replaces the contents with `events` (ascending, contiguous cursors, all
  // published) so that the next cursor is `last_cursor + 1`. For recovery,
  // before any reader or writer.
  void Restore(std::vector<Entry> events, uint64_t last_cursor) ABSL_LOCKS_EXCLUDED(mu_);

  // The first event after `after` that `match` accepts. Returns false when
  // none is available yet (and moves `after` past what was scanned). When
  // `after` is older than the ring, or newer than any event (the log was
  // reset), fills a RESYNC event whose cursor is the newest one, moves
  // `after` there and returns true. `out` gets the task's spec filled in.
  // With `task_id`, only that task's events are looked at (through an
  // index: a follower of one task does not scan everyone's events).
  bool Next(uint64_t& after, const std::function<bool(const v1::TaskEvent&)>& match,
            v1::TaskEvent& out, const std::string& task_id = "") const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Cursor of the newest published event (0 when none).
  uint64_t last_cursor() const ABSL_LOCKS_EXCLUDED(mu_);
  // Cursor of the oldest event kept.
  uint64_t first_cursor() const ABSL_LOCKS_EXCLUDED(mu_);

  void AddListener(std::shared_ptr<Listener> l, Interest interest = {})
      ABSL_LOCKS_EXCLUDED(mu_);
  void RemoveListener(const Listener* l) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  using Listeners = std::vector<std::shared_ptr<Listener>>;
  // The index a listener of `interest` is kept in, and its key there.
  std::pair<absl::flat_hash_map<std::string, Listeners>*, const std::string*> IndexOf(
      const Interest& interest) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Wakes listeners of events published since the last round, until stopped.
  void FanOutLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // The listeners events in (woken_, published_] interest, each once.
  Listeners InterestedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PushLocked(Entry e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PopFrontLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The event at `c` into `out`, with its spec, if `match` accepts it.
  bool TakeLocked(uint64_t c, const std::function<bool(const v1::TaskEvent&)>& match,
                  v1::TaskEvent& out) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The event at `c`, which the ring holds.
  const Entry& AtLocked(uint64_t c) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return events_[c - first_];
  }

  const Options options_;
  mutable absl::Mutex mu_;
  std::deque<Entry> events_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Cursor of events_.front(); the next cursor is first_ + events_.size().
  uint64_t first_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t published_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t woken_ ABSL_GUARDED_BY(mu_) = 0;  // Listeners were told up to here.
  // Cursors in the ring of each task's events, ascending.
  absl::flat_hash_map<std::string, std::deque<uint64_t>> task_cursors_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Listeners everything_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Listeners> by_task_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Listeners> by_run_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Listeners> by_agent_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<const Listener*, Interest> interests_ ABSL_GUARDED_BY(mu_);
  std::thread fan_out_;  // Last: it starts once the rest is built.
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_EVENT_LOG_H_
