#include "services/coordinator/event_log.h"

#include <algorithm>

namespace taskgrid {

uint64_t EventLog::Append(v1::TaskEvent event) {
  std::vector<std::shared_ptr<Listener>> wake;
  uint64_t cursor;
  {
    absl::MutexLock lock(&mu_);
    cursor = first_ + events_.size();
    event.set_cursor(cursor);
    bytes_ += event.ByteSizeLong();
    events_.push_back(std::move(event));
    while (events_.size() > 1 &&
           (events_.size() > options_.max_events || bytes_ > options_.max_bytes)) {
      bytes_ -= events_.front().ByteSizeLong();
      events_.pop_front();
      ++first_;
    }
    wake = listeners_;
  }
  for (const auto& l : wake) l->OnAppended();
  return cursor;
}

bool EventLog::Next(uint64_t& after, const std::function<bool(const v1::TaskEvent&)>& match,
                    v1::TaskEvent& out) const {
  absl::MutexLock lock(&mu_);
  const uint64_t end = first_ + events_.size();  // One past the newest cursor.
  if (after + 1 < first_ || after >= end) {
    out.Clear();
    out.set_type(v1::EVENT_TYPE_RESYNC);
    out.set_cursor(end - 1);
    after = end - 1;
    return true;
  }
  uint64_t c = std::max(after + 1, first_);
  for (; c < end; ++c) {
    const v1::TaskEvent& e = events_[c - first_];
    if (match(e)) {
      out = e;
      after = c;
      return true;
    }
  }
  after = c - 1;
  return false;
}

uint64_t EventLog::last_cursor() const {
  absl::MutexLock lock(&mu_);
  return first_ + events_.size() - 1;
}

void EventLog::AddListener(std::shared_ptr<Listener> l) {
  absl::MutexLock lock(&mu_);
  listeners_.push_back(std::move(l));
}

void EventLog::RemoveListener(const Listener* l) {
  absl::MutexLock lock(&mu_);
  listeners_.erase(std::remove_if(listeners_.begin(), listeners_.end(),
                                  [l](const auto& p) { return p.get() == l; }),
                   listeners_.end());
}

}  // namespace taskgrid
