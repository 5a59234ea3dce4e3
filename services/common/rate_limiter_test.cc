#include "services/common/rate_limiter.h"

#include <gtest/gtest.h>

#include "services/common/testing/fake_clock.h"

namespace taskgrid {
namespace {

TEST(RateLimiterTest, AllowsTheBurstThenTheRate) {
  FakeClock clock;
  RateLimiter limiter(clock, /*rate=*/2, /*burst=*/3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limiter.Take("k"), absl::ZeroDuration());
  EXPECT_EQ(limiter.Take("k"), absl::Milliseconds(500));
  EXPECT_EQ(limiter.Take("other"), absl::ZeroDuration());  // Callers are separate.
  clock.Advance(absl::Milliseconds(500));
  EXPECT_EQ(limiter.Take("k"), absl::ZeroDuration());
  EXPECT_GT(limiter.Take("k"), absl::ZeroDuration());
  clock.Advance(absl::Hours(1));  // Refills only up to the burst.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limiter.Take("k"), absl::ZeroDuration());
  EXPECT_GT(limiter.Take("k"), absl::ZeroDuration());
}

TEST(RateLimiterTest, ZeroRateDisablesAndMemoryStaysBounded) {
  FakeClock clock;
  EXPECT_EQ(RateLimiter(clock, 0, 0).Take("k"), absl::ZeroDuration());
  RateLimiter limiter(clock, 1, 1, /*max_callers=*/10);
  for (int i = 0; i < 1000; ++i) limiter.Take("caller-" + std::to_string(i));
  EXPECT_LE(limiter.callers(), 10u);
}

}  // namespace
}  // namespace taskgrid
