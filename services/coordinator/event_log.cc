#include "services/coordinator/event_log.h"

#include <algorithm>

namespace taskgrid {
namespace {

// What an event costs the ring: its output bytes plus a typical task
// snapshot, without walking the message (this runs for every event).
size_t ApproxBytes(const v1::TaskEvent& e) { return e.output().data().size() + 512; }

}  // namespace

const v1::TaskEvent& EventLog::Append(v1::TaskEvent event,
                                      std::shared_ptr<const v1::TaskSpec> spec) {
  absl::MutexLock lock(&mu_);
  event.set_cursor(first_ + events_.size());
  bytes_ += ApproxBytes(event);
  events_.push_back({std::move(event), std::move(spec)});
  // Unpublished events are never evicted: readers have not seen them yet.
  while (events_.size() > 1 && first_ <= published_ &&
         (events_.size() > options_.max_events || bytes_ > options_.max_bytes)) {
    bytes_ -= ApproxBytes(events_.front().event);
    events_.pop_front();
    ++first_;
  }
  return events_.back().event;
}

void EventLog::Publish(uint64_t cursor) {
  std::vector<std::shared_ptr<Listener>> wake;
  {
    absl::MutexLock lock(&mu_);
    if (cursor <= published_) return;
    published_ = cursor;
    wake = listeners_;
  }
  for (const auto& l : wake) l->OnAppended();
}

void EventLog::Restore(std::vector<Entry> events, uint64_t last_cursor) {
  absl::MutexLock lock(&mu_);
  events_.clear();
  bytes_ = 0;
  first_ = last_cursor + 1 - events.size();
  published_ = last_cursor;
  for (Entry& e : events) {
    bytes_ += ApproxBytes(e.event);
    events_.push_back(std::move(e));
  }
  while (events_.size() > 1 &&
         (events_.size() > options_.max_events || bytes_ > options_.max_bytes)) {
    bytes_ -= ApproxBytes(events_.front().event);
    events_.pop_front();
    ++first_;
  }
}

bool EventLog::Next(uint64_t& after, const std::function<bool(const v1::TaskEvent&)>& match,
                    v1::TaskEvent& out) const {
  absl::MutexLock lock(&mu_);
  const uint64_t end = published_ + 1;  // One past the newest visible cursor.
  if (after + 1 < first_ || after >= end) {
    out.Clear();
    out.set_type(v1::EVENT_TYPE_RESYNC);
    out.set_cursor(end - 1);
    after = end - 1;
    return true;
  }
  uint64_t c = std::max(after + 1, first_);
  for (; c < end; ++c) {
    const Entry& e = events_[c - first_];
    if (match(e.event)) {
      out = e.event;
      if (e.spec != nullptr && out.has_task()) *out.mutable_task()->mutable_spec() = *e.spec;
      after = c;
      return true;
    }
  }
  after = c - 1;
  return false;
}

uint64_t EventLog::last_cursor() const {
  absl::MutexLock lock(&mu_);
  return published_;
}

uint64_t EventLog::first_cursor() const {
  absl::MutexLock lock(&mu_);
  return first_;
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
