// Time as a seam: production code asks a Clock, tests move a FakeClock.
#ifndef TASKGRID_SERVICES_COMMON_CLOCK_H_
#define TASKGRID_SERVICES_COMMON_CLOCK_H_

#include "absl/time/time.h"

namespace taskgrid {

// Tells the time. Thread-safe. Inject wherever code compares to a deadline.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  // Process-wide wall clock; never deleted.
  static Clock& Real();
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_CLOCK_H_
