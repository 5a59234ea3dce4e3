// The write side of a gRPC stream whose messages travel in batches: at most
// one batch is in flight (gRPC allows one write at a time) and everything
// queued meanwhile joins the next batch, so a busy stream makes fewer, larger
// writes and an idle one sends each message at once.
#ifndef TASKGRID_SERVICES_COMMON_BATCH_OUTBOX_H_
#define TASKGRID_SERVICES_COMMON_BATCH_OUTBOX_H_

#include <cstddef>
#include <deque>
#include <utility>

namespace taskgrid {

// `Batch` is a proto with `repeated Message messages`. Not thread-safe: the
// owning reactor's mutex guards it.
template <typename Batch>
class BatchOutbox {
 public:
  // Batches close at this size so one write stays well under the peers'
  // 8 MiB message limit.
  static constexpr size_t kMaxBatchBytes = 1 << 20;
  static constexpr int kFoldWindow = 16;

  template <typename Message>
  void Add(Message message) {
    const size_t bytes = message.ByteSizeLong();
    if (batches_.empty() || (in_flight_ && batches_.size() == 1) ||
        open_bytes_ + bytes > kMaxBatchBytes) {
      batches_.emplace_back();
      open_bytes_ = 0;
    }
    *batches_.back().add_messages() = std::move(message);
    open_bytes_ += bytes;
  }

  // Folds `message` into one of the last kFoldWindow messages of the batch
  // not yet in flight when `fold(queued, message)` does so (returns true);
  // otherwise adds it. For messages that supersede each other.
  template <typename Message, typename Fold>
  void AddOrFold(Message message, Fold fold) {
    if (!batches_.empty() && !(in_flight_ && batches_.size() == 1)) {
      auto& queued = *batches_.back().mutable_messages();
      for (int i = queued.size() - 1; i >= 0 && i >= queued.size() - kFoldWindow; --i) {
        if (fold(*queued.Mutable(i), message)) return;
      }
    }
    Add(std::move(message));
  }

  bool in_flight() const { return in_flight_; }
  bool empty() const { return batches_.empty(); }

  // The next batch to write, now in flight; null when nothing waits or a
  // write is already in flight.
  const Batch* StartNext() {
    if (in_flight_ || batches_.empty()) return nullptr;
    in_flight_ = true;
    return &batches_.front();
  }

  // The in-flight batch was written (or failed).
  void Done() {
    in_flight_ = false;
    batches_.pop_front();
  }

  void Clear() {
    // The in-flight batch must outlive its write.
    while (batches_.size() > (in_flight_ ? 1u : 0u)) batches_.pop_back();
  }

 private:
  std::deque<Batch> batches_;  // front() is in flight when in_flight_.
  size_t open_bytes_ = 0;      // Bytes in batches_.back() while it is open.
  bool in_flight_ = false;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_BATCH_OUTBOX_H_
