#include "services/cli/args.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace taskgrid::cli {
namespace {

using ::testing::ElementsAre;

TEST(ParseArgsTest, FlagsValuesRepeatsAndDoubleDash) {
  FlagSpec spec{{"env", "timeout"}, {"detach"}};
  auto p = ParseArgs(
      {"--env", "A=1", "--env=B=2", "--timeout=30s", "--detach", "--", "ls", "--env"}, spec);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT(p->flags["env"], ElementsAre("A=1", "B=2"));
  EXPECT_EQ(p->Get("timeout"), "30s");
  EXPECT_TRUE(p->Has("detach"));
  EXPECT_THAT(p->positional, ElementsAre("ls", "--env"));
}

TEST(ParseArgsTest, RejectsUnknownAndMissingValues) {
  FlagSpec spec{{"env"}, {}};
  EXPECT_FALSE(ParseArgs({"--nope"}, spec).ok());
  EXPECT_FALSE(ParseArgs({"--env"}, spec).ok());
}

}  // namespace
}  // namespace taskgrid::cli
