#include "services/common/auth.h"

#include <gtest/gtest.h>

#include "services/common/testing/test_util.h"

namespace taskgrid {
namespace {

TEST(ConstantTimeEqualsTest, ComparesContentAndLength) {
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secret2"));
  EXPECT_FALSE(ConstantTimeEquals("", "x"));
}

TEST(IsLoopbackAddressTest, KnowsLoopbackForms) {
  EXPECT_TRUE(IsLoopbackAddress("127.0.0.1:7000"));
  EXPECT_TRUE(IsLoopbackAddress("localhost:7000"));
  EXPECT_TRUE(IsLoopbackAddress("[::1]:7000"));
  EXPECT_FALSE(IsLoopbackAddress("0.0.0.0:7000"));
  EXPECT_FALSE(IsLoopbackAddress("[::]:7000"));
  EXPECT_FALSE(IsLoopbackAddress("10.0.0.5:7000"));
}

TEST(ApiKeysTest, ScopesAreHierarchical) {
  auto keys = ApiKeys::Parse("r1:read, s1:submit,a1:admin");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_TRUE(keys->Check("a1", Scope::kAdmin).ok());
  EXPECT_TRUE(keys->Check("s1", Scope::kRead).ok());
  EXPECT_THAT(keys->Check("r1", Scope::kSubmit), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(keys->Check("nope", Scope::kRead), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(keys->Check("", Scope::kRead), StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST(ApiKeysTest, RejectsMalformedEntries) {
  EXPECT_THAT(ApiKeys::Parse("justakey"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ApiKeys::Parse("k:root"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(ApiKeys::Parse("").value().empty());
}

TEST(AgentTokensTest, EmptyAcceptsAnyConfiguredChecks) {
  EXPECT_TRUE(AgentTokens().Check("x").ok());
  AgentTokens tokens({"t1", "t2"});
  EXPECT_TRUE(tokens.Check("t2").ok());
  EXPECT_THAT(tokens.Check("t3"), StatusIs(absl::StatusCode::kUnauthenticated));
}

}  // namespace
}  // namespace taskgrid
