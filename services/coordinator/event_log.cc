#include "services/coordinator/event_log.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"

namespace taskgrid {
namespace {

// What an event costs the ring: its output bytes plus a typical task
// snapshot, without walking the message (this runs for every event).
size_t ApproxBytes(const v1::TaskEvent& e) { return e.output().data().size() + 512; }

void Erase(std::vector<std::shared_ptr<EventLog::Listener>>& from, const EventLog::Listener* l) {
  from.erase(std::remove_if(from.begin(), from.end(), [l](const auto& p) { return p.get() == l; }),
             from.end());
}

}  // namespace

EventLog::EventLog(Options options) : options_(options), fan_out_([this] { FanOutLoop(); }) {}

EventLog::~EventLog() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  fan_out_.join();
}

const v1::TaskEvent& EventLog::Append(v1::TaskEvent event,
                                      std::shared_ptr<const v1::TaskSpec> spec) {
  absl::MutexLock lock(&mu_);
  event.set_cursor(first_ + events_.size());
  PushLocked({std::move(event), std::move(spec)});
  // Unpublished events are never evicted: readers have not seen them yet.
  while (events_.size() > 1 && first_ <= published_ &&
         (events_.size() > options_.max_events || bytes_ > options_.max_bytes)) {
    PopFrontLocked();
  }
  return events_.back().event;
}

void EventLog::PushLocked(Entry e) {
  bytes_ += ApproxBytes(e.event);
  if (!e.event.task_id().empty()) task_cursors_[e.event.task_id()].push_back(e.event.cursor());
  events_.push_back(std::move(e));
}

void EventLog::PopFrontLocked() {
  const v1::TaskEvent& e = events_.front().event;
  bytes_ -= ApproxBytes(e);
  if (auto it = task_cursors_.find(e.task_id()); it != task_cursors_.end()) {
    it->second.pop_front();  // The oldest of its cursors is this one.
    if (it->second.empty()) task_cursors_.erase(it);
  }
  events_.pop_front();
  ++first_;
}

void EventLog::Publish(uint64_t cursor) {
  absl::MutexLock lock(&mu_);
  published_ = std::max(published_, cursor);
}

void EventLog::FanOutLoop() {
  for (;;) {
    Listeners wake;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](EventLog* log) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            // With no listener there is nobody to wake: the thread sleeps.
            return log->stopping_ || (log->published_ > log->woken_ && !log->interests_.empty());
          },
          this));
      if (stopping_) return;
      wake = InterestedLocked();
      woken_ = published_;
    }
    for (const auto& l : wake) l->OnAppended();
  }
}

EventLog::Listeners EventLog::InterestedLocked() const {
  if (woken_ + 1 < first_) {
    // Events went before their listeners were told: wake everyone (each
    // reader behind the ring gets its RESYNC).
    Listeners all = everything_;
    for (const auto* index : {&by_task_, &by_run_, &by_agent_}) {
      for (const auto& [key, listeners] : *index) all.insert(all.end(), listeners.begin(), listeners.end());
    }
    return all;
  }
  Listeners wake = everything_;
  if (by_task_.empty() && by_run_.empty() && by_agent_.empty()) return wake;
  absl::flat_hash_set<const Listener*> seen;
  auto add = [&](const absl::flat_hash_map<std::string, Listeners>& index, const std::string& key) {
    if (key.empty() || index.empty()) return;
    auto it = index.find(key);
    if (it == index.end()) return;
    for (const auto& l : it->second) {
      if (seen.insert(l.get()).second) wake.push_back(l);
    }
  };
  for (uint64_t c = woken_ + 1; c <= published_; ++c) {
    const v1::TaskEvent& e = AtLocked(c).event;
    add(by_task_, e.task_id());
    add(by_run_, e.run_id());
    add(by_agent_, e.agent_id());
  }
  return wake;
}

void EventLog::Restore(std::vector<Entry> events, uint64_t last_cursor) {
  absl::MutexLock lock(&mu_);
  events_.clear();
  task_cursors_.clear();
  bytes_ = 0;
  first_ = last_cursor + 1 - events.size();
  published_ = last_cursor;
  woken_ = last_cursor;
  for (Entry& e : events) PushLocked(std::move(e));
  while (events_.size() > 1 &&
         (events_.size() > options_.max_events || bytes_ > options_.max_bytes)) {
    PopFrontLocked();
  }
}

bool EventLog::Next(uint64_t& after, const std::function<bool(const v1::TaskEvent&)>& match,
                    v1::TaskEvent& out, const std::string& task_id) const {
  absl::MutexLock lock(&mu_);
  const uint64_t end = published_ + 1;  // One past the newest visible cursor.
  if (after + 1 < first_ || after >= end) {
    out.Clear();
    out.set_type(v1::EVENT_TYPE_RESYNC);
    out.set_cursor(end - 1);
    after = end - 1;
    return true;
  }
  const uint64_t from = std::max(after + 1, first_);
  if (!task_id.empty()) {
    if (auto it = task_cursors_.find(task_id); it != task_cursors_.end()) {
      for (auto c = std::lower_bound(it->second.begin(), it->second.end(), from);
           c != it->second.end() && *c < end; ++c) {
        if (TakeLocked(*c, match, out)) {
          after = *c;
          return true;
        }
      }
    }
    after = end - 1;
    return false;
  }
  for (uint64_t c = from; c < end; ++c) {
    if (TakeLocked(c, match, out)) {
      after = c;
      return true;
    }
  }
  after = end - 1;
  return false;
}

bool EventLog::TakeLocked(uint64_t c, const std::function<bool(const v1::TaskEvent&)>& match,
                          v1::TaskEvent& out) const {
  const Entry& e = AtLocked(c);
  if (!match(e.event)) return false;
  out = e.event;
  if (e.spec != nullptr && out.has_task()) *out.mutable_task()->mutable_spec() = *e.spec;
  return true;
}

uint64_t EventLog::last_cursor() const {
  absl::MutexLock lock(&mu_);
  return published_;
}

uint64_t EventLog::first_cursor() const {
  absl::MutexLock lock(&mu_);
  return first_;
}

std::pair<absl::flat_hash_map<std::string, EventLog::Listeners>*, const std::string*>
EventLog::IndexOf(const Interest& interest) {
  if (!interest.task_id.empty()) return {&by_task_, &interest.task_id};
  if (!interest.run_id.empty()) return {&by_run_, &interest.run_id};
  if (!interest.agent_id.empty()) return {&by_agent_, &interest.agent_id};
  return {nullptr, nullptr};
}

void EventLog::AddListener(std::shared_ptr<Listener> l, Interest interest) {
  absl::MutexLock lock(&mu_);
  if (interests_.empty()) woken_ = published_;  // Nobody was told of those.
  auto [it, added] = interests_.try_emplace(l.get(), std::move(interest));
  if (!added) return;
  auto [index, key] = IndexOf(it->second);
  (index != nullptr ? (*index)[*key] : everything_).push_back(std::move(l));
}

void EventLog::RemoveListener(const Listener* l) {
  absl::MutexLock lock(&mu_);
  auto it = interests_.find(l);
  if (it == interests_.end()) return;
  auto [index, key] = IndexOf(it->second);
  if (index == nullptr) {
    Erase(everything_, l);
  } else if (auto slot = index->find(*key); slot != index->end()) {
    Erase(slot->second, l);
    if (slot->second.empty()) index->erase(slot);
  }
  interests_.erase(it);
}

}  // namespace taskgrid
