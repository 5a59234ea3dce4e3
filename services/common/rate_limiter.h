// Per-caller token buckets: each caller (an API key, or a client address)
// may make `rate` requests per second with bursts up to `burst`. Answers how
// long to wait, for Retry-After.
#ifndef TASKGRID_SERVICES_COMMON_RATE_LIMITER_H_
#define TASKGRID_SERVICES_COMMON_RATE_LIMITER_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/common/clock.h"

namespace taskgrid {

// Thread-safe. Holds at most `max_callers` buckets; full buckets are the
// first forgotten (forgetting one costs nothing: it would be full again).
class RateLimiter {
 public:
  RateLimiter(const Clock& clock, double rate, double burst, size_t max_callers = 100'000)
      : clock_(clock), rate_(rate), burst_(burst), max_callers_(max_callers) {}

  // Takes a token for `caller`. Returns zero when allowed, otherwise how long
  // until a token is available. A rate of 0 disables limiting.
  absl::Duration Take(const std::string& caller) ABSL_LOCKS_EXCLUDED(mu_) {
    return Take(caller, rate_, burst_);
  }
  // The same with this caller's own rate and burst.
  absl::Duration Take(const std::string& caller, double rate, double burst)
      ABSL_LOCKS_EXCLUDED(mu_);

  size_t callers() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return buckets_.size();
  }

 private:
  struct Bucket {
    double tokens;
    absl::Time updated;
    double rate;
    double burst;
  };
  const Clock& clock_;
  const double rate_;
  const double burst_;
  const size_t max_callers_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_RATE_LIMITER_H_
