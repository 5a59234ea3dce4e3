#include "services/common/task_resources.h"

#include <gtest/gtest.h>

namespace taskgrid {
namespace {

v1::Resources Make(int64_t memory, double cpus, int64_t pids = 0) {
  v1::Resources r;
  r.set_memory_bytes(memory);
  r.set_cpus(cpus);
  r.set_pids(pids);
  return r;
}

TEST(TaskResourcesTest, AContainerTaskAsksForItsOwnLimitsWhereResourcesLeaveThemUnset) {
  v1::TaskSpec spec;
  spec.mutable_docker()->set_memory_bytes(64 << 20);
  spec.mutable_docker()->set_cpus(2);
  spec.mutable_docker()->set_pids_limit(50);
  spec.mutable_resources()->set_cpus(0.5);
  const v1::Resources r = RequestedResources(spec);
  EXPECT_EQ(r.memory_bytes(), 64 << 20);
  EXPECT_EQ(r.cpus(), 0.5);
  EXPECT_EQ(r.pids(), 50);
  EXPECT_FALSE(Reserves(RequestedResources(v1::TaskSpec())));
  EXPECT_FALSE(Reserves(Make(0, 0, 10))) << "a pids limit reserves nothing";
}

TEST(TaskResourcesTest, ShortfallNamesWhatDoesNotFit) {
  const v1::Resources left = Remaining(Make(4LL << 30, 2), Make(3LL << 30, 1.5));
  EXPECT_EQ(left.memory_bytes(), 1LL << 30);
  const std::optional<Shortage> memory = Shortfall(Make(2LL << 30, 0), left);
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(memory->asked, "2 GiB of memory");
  EXPECT_EQ(memory->has, "1 GiB of memory");
  const std::optional<Shortage> cpus = Shortfall(Make(0, 1), left);
  ASSERT_TRUE(cpus.has_value());
  EXPECT_EQ(cpus->asked, "1 CPU");
  EXPECT_EQ(cpus->has, "0.5 CPUs");
  EXPECT_FALSE(Shortfall(Make(1LL << 30, 0.5), left).has_value());
  EXPECT_EQ(Remaining(Make(1, 1), Make(5, 5)).cpus(), 0) << "never below zero";

  // Ten tenths of a CPU fit in one CPU, whatever the rounding of their sum.
  v1::Resources used;
  for (int i = 0; i < 9; ++i) AddReservation(used, Make(0, 0.1));
  EXPECT_FALSE(Shortfall(Make(0, 0.1), Remaining(Make(0, 1), used)).has_value());
}

TEST(TaskResourcesTest, BytesAreWrittenAsPeopleReadThem) {
  EXPECT_EQ(FormatBytes(100), "100 bytes");
  EXPECT_EQ(FormatBytes(512 << 20), "512 MiB");
  EXPECT_EQ(FormatBytes(3LL << 29), "1.5 GiB");
  EXPECT_EQ(FormatBytes(1000LL << 20), "1000 MiB");
  EXPECT_EQ(FormatBytes(1LL << 51), "2048 TiB");
}

}  // namespace
}  // namespace taskgrid
