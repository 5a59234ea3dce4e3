// DeadlineIndex: keys ordered by when they are due, so a periodic tick
// touches only what expired, not everything that might.
#ifndef TASKGRID_SERVICES_COORDINATOR_DEADLINE_INDEX_H_
#define TASKGRID_SERVICES_COORDINATOR_DEADLINE_INDEX_H_

#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"

namespace taskgrid {

template <typename Key>
class DeadlineIndex {
 public:
  // Sets (or moves) `key`'s deadline.
  void Set(const Key& key, absl::Time when) {
    auto [it, inserted] = when_.try_emplace(key, when);
    if (!inserted) {
      if (it->second == when) return;
      by_time_.erase({it->second, key});
      it->second = when;
    }
    by_time_.insert({when, key});
  }

  void Erase(const Key& key) {
    auto it = when_.find(key);
    if (it == when_.end()) return;
    by_time_.erase({it->second, key});
    when_.erase(it);
  }

  // The keys due at `now`, earliest first; they stay until erased or moved.
  std::vector<Key> Due(absl::Time now) const {
    std::vector<Key> due;
    for (auto it = by_time_.begin(); it != by_time_.end() && it->first <= now; ++it) {
      due.push_back(it->second);
    }
    return due;
  }

  bool AnyDue(absl::Time now) const {
    return !by_time_.empty() && by_time_.begin()->first <= now;
  }
  size_t size() const { return when_.size(); }

 private:
  absl::btree_set<std::pair<absl::Time, Key>> by_time_;
  absl::flat_hash_map<Key, absl::Time> when_;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_DEADLINE_INDEX_H_
