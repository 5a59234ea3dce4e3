#include "services/coordinator/deadline_index.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace taskgrid {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const absl::Time kT0 = absl::FromUnixSeconds(1000);

TEST(DeadlineIndexTest, OnlyWhatIsDueEarliestFirst) {
  DeadlineIndex<uint64_t> index;
  index.Set(3, kT0 + absl::Seconds(3));
  index.Set(1, kT0 + absl::Seconds(1));
  index.Set(2, kT0 + absl::Seconds(2));
  EXPECT_THAT(index.Due(kT0), IsEmpty());
  EXPECT_FALSE(index.AnyDue(kT0));
  EXPECT_THAT(index.Due(kT0 + absl::Seconds(2)), ElementsAre(1, 2));
  EXPECT_TRUE(index.AnyDue(kT0 + absl::Seconds(1)));
}

TEST(DeadlineIndexTest, SetMovesAKeyAndEraseForgetsIt) {
  DeadlineIndex<std::string> index;
  index.Set("a", kT0 + absl::Seconds(1));
  index.Set("b", kT0 + absl::Seconds(1));
  index.Set("a", kT0 + absl::Seconds(10));  // Moved later: one entry, not two.
  EXPECT_EQ(index.size(), 2u);
  EXPECT_THAT(index.Due(kT0 + absl::Seconds(5)), ElementsAre("b"));
  index.Erase("b");
  index.Erase("missing");
  EXPECT_THAT(index.Due(kT0 + absl::Seconds(5)), IsEmpty());
  EXPECT_THAT(index.Due(absl::InfiniteFuture()), ElementsAre("a"));
}

TEST(DeadlineIndexTest, KeysWithTheSameDeadlineAreAllKept) {
  DeadlineIndex<uint64_t> index;
  for (uint64_t k = 0; k < 100; ++k) index.Set(k, kT0);
  EXPECT_EQ(index.Due(kT0).size(), 100u);
  index.Set(50, kT0);  // Unchanged.
  EXPECT_EQ(index.size(), 100u);
}

}  // namespace
}  // namespace taskgrid
