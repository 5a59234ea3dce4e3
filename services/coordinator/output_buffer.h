// Retained output of one stream of one task: every byte up to a cap, then the
// head and the tail with the count of bytes dropped between them, so readers
// always learn that something is missing and how much.
#ifndef TASKGRID_SERVICES_COORDINATOR_OUTPUT_BUFFER_H_
#define TASKGRID_SERVICES_COORDINATOR_OUTPUT_BUFFER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace taskgrid {

// Not thread-safe; the registry guards it.
class OutputBuffer {
 public:
  // Keeps up to `cap_bytes`: the first half as head, the last half as tail.
  explicit OutputBuffer(int64_t cap_bytes = 2 << 20) : cap_(cap_bytes) {}

  // Appends bytes that start at offset total(); callers drop duplicates.
  void Append(absl::string_view data);
  // Counts `n` bytes as written and dropped (a restore from a store that
  // kept only the head and the tail). The head must be full.
  void Skip(int64_t n);

  struct Slice {
    int64_t offset = 0;  // Offset of data[0]; past the request if it was dropped.
    std::string data;
  };
  // Retained bytes from `offset` (at most `limit`). An offset inside the
  // dropped middle starts at the tail. `offset` must be <= total().
  Slice Read(int64_t offset, int64_t limit) const;

  int64_t total() const { return total_; }
  int64_t dropped() const { return total_ - static_cast<int64_t>(head_.size() + TailSize()); }
  // Retained bytes are [0, head_end()) and [tail_start(), total()).
  int64_t head_end() const { return static_cast<int64_t>(head_.size()); }
  int64_t tail_start() const { return TailStart(); }
  // Every later byte goes to the tail.
  bool head_full() const { return head_end() == HeadCap(); }

  // Once the head is durable, the bytes the tail leaves behind are settled
  // (never read again) as soon as they arrive. WatchHead() returns, once the
  // head is full and only the first time, the flag the store's durability
  // callback sets (on its commit thread); null otherwise.
  std::shared_ptr<std::atomic<bool>> WatchHead();
  // Bytes below it are durable or dropped for good: 0 until the head is
  // durable and something was dropped, then the tail's start.
  int64_t settled() const {
    return head_durable_ && head_durable_->load() && dropped() > 0 ? TailStart() : 0;
  }

 private:
  int64_t HeadCap() const { return cap_ / 2; }
  int64_t TailCap() const { return cap_ - HeadCap(); }
  size_t TailSize() const { return tail_.size() - tail_skip_; }
  int64_t TailStart() const { return total_ - static_cast<int64_t>(TailSize()); }

  int64_t cap_;
  int64_t total_ = 0;
  std::string head_;
  // Tail bytes are tail_[tail_skip_..]; the front is trimmed in batches so
  // appends stay amortized O(size of data).
  std::string tail_;
  size_t tail_skip_ = 0;
  std::shared_ptr<std::atomic<bool>> head_durable_;  // Made when first watched.
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_OUTPUT_BUFFER_H_
