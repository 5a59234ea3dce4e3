// A Clock that moves only when a test says so.
#ifndef TASKGRID_SERVICES_COMMON_TESTING_FAKE_CLOCK_H_
#define TASKGRID_SERVICES_COMMON_TESTING_FAKE_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "services/common/clock.h"

namespace taskgrid {

// Thread-safe. Starts at a fixed instant so tests are repeatable.
class FakeClock final : public Clock {
 public:
  absl::Time Now() const override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_) = absl::FromUnixSeconds(1'800'000'000);
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_TESTING_FAKE_CLOCK_H_
