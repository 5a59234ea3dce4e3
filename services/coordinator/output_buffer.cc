#include "services/coordinator/output_buffer.h"

#include <algorithm>

namespace taskgrid {

void OutputBuffer::Append(absl::string_view data) {
  total_ += static_cast<int64_t>(data.size());
  if (tail_.empty() && static_cast<int64_t>(head_.size()) < HeadCap()) {
    const size_t room = static_cast<size_t>(HeadCap()) - head_.size();
    const size_t n = std::min(room, data.size());
    head_.append(data.data(), n);
    data.remove_prefix(n);
  }
  if (data.empty()) return;
  tail_.append(data.data(), data.size());
  const size_t cap = static_cast<size_t>(TailCap());
  if (TailSize() > cap) tail_skip_ = tail_.size() - cap;
  if (tail_skip_ > cap) {  // Compact once the dead prefix outweighs the tail.
    tail_.erase(0, tail_skip_);
    tail_skip_ = 0;
  }
}

void OutputBuffer::Skip(int64_t n) {
  total_ += n;
  tail_.clear();
  tail_skip_ = 0;
}

std::shared_ptr<std::atomic<bool>> OutputBuffer::WatchHead() {
  if (!head_full() || head_durable_) return nullptr;
  head_durable_ = std::make_shared<std::atomic<bool>>(false);
  return head_durable_;
}

OutputBuffer::Slice OutputBuffer::Read(int64_t offset, int64_t limit) const {
  Slice out;
  out.offset = offset;
  const int64_t head_end = static_cast<int64_t>(head_.size());
  if (offset < head_end) {
    const int64_t n = std::min(limit, head_end - offset);
    out.data.assign(head_, static_cast<size_t>(offset), static_cast<size_t>(n));
    limit -= n;
    offset += n;
    // Continue into the tail only when nothing was dropped in between.
    if (limit == 0 || TailStart() != head_end) return out;
  } else if (offset < TailStart()) {
    out.offset = offset = TailStart();
  }
  const int64_t start = offset - TailStart();
  const int64_t n = std::min(limit, static_cast<int64_t>(TailSize()) - start);
  if (n > 0)
    out.data.append(tail_, tail_skip_ + static_cast<size_t>(start), static_cast<size_t>(n));
  return out;
}

}  // namespace taskgrid
