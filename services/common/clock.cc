#include "services/common/clock.h"

#include "absl/time/clock.h"

namespace taskgrid {
namespace {

class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

}  // namespace

Clock& Clock::Real() {
  static auto* clock = new RealClock();
  return *clock;
}

}  // namespace taskgrid
