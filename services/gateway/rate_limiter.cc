#include "services/gateway/rate_limiter.h"

#include <algorithm>

namespace taskgrid::gateway {

absl::Duration RateLimiter::Take(const std::string& caller) {
  if (rate_ <= 0) return absl::ZeroDuration();
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  if (buckets_.size() >= max_callers_ && !buckets_.contains(caller)) {
    // Forget the callers whose buckets have refilled.
    absl::erase_if(buckets_, [&](const auto& kv) {
      return kv.second.tokens + absl::ToDoubleSeconds(now - kv.second.updated) * rate_ >= burst_;
    });
    // Still full: start over rather than grow (callers get a fresh burst).
    if (buckets_.size() >= max_callers_) buckets_.clear();
  }
  auto [it, inserted] = buckets_.try_emplace(caller, Bucket{burst_, now});
  Bucket& b = it->second;
  b.tokens = std::min(burst_, b.tokens + absl::ToDoubleSeconds(now - b.updated) * rate_);
  b.updated = now;
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return absl::ZeroDuration();
  }
  return absl::Seconds((1 - b.tokens) / rate_);
}

}  // namespace taskgrid::gateway
