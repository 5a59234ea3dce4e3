#include "services/common/rate_limiter.h"

#include <algorithm>

namespace taskgrid {

absl::Duration RateLimiter::Take(const std::string& caller, double rate, double burst) {
  if (rate <= 0) return absl::ZeroDuration();
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  if (buckets_.size() >= max_callers_ && !buckets_.contains(caller)) {
    // Forget the callers whose buckets have refilled.
    absl::erase_if(buckets_, [&](const auto& kv) {
      const Bucket& b = kv.second;
      return b.tokens + absl::ToDoubleSeconds(now - b.updated) * b.rate >= b.burst;
    });
    // Still full: start over rather than grow (callers get a fresh burst).
    if (buckets_.size() >= max_callers_) buckets_.clear();
  }
  auto [it, inserted] = buckets_.try_emplace(caller, Bucket{burst, now, rate, burst});
  Bucket& b = it->second;
  b.rate = rate;
  b.burst = burst;
  b.tokens = std::min(burst, b.tokens + absl::ToDoubleSeconds(now - b.updated) * rate);
  b.updated = now;
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return absl::ZeroDuration();
  }
  return absl::Seconds((1 - b.tokens) / rate);
}

}  // namespace taskgrid
