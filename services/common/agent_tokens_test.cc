#include "services/common/agent_tokens.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "services/common/auth.h"
#include "services/common/testing/test_util.h"

namespace taskgrid {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Labels = std::map<std::string, std::string>;

TEST(AgentTokensTest, NoneConfiguredAdmitsAnyone) {
  absl::StatusOr<const AgentToken*> t = AgentTokens().Admit("", "web-1", {{"env", "prod"}});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, nullptr);
}

TEST(AgentTokensTest, InlineTokensAreUnboundOrBoundToOneId) {
  absl::StatusOr<AgentTokens> tokens = AgentTokens::Parse("dev-secret, host-secret@web-1");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_TRUE(tokens->Admit("dev-secret", "anything", {}).ok());
  EXPECT_TRUE(tokens->Admit("host-secret", "web-1", {}).ok());
  EXPECT_THAT(tokens->Admit("host-secret", "web-2", {}),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("agent_id: token token-")));
  EXPECT_THAT(tokens->Admit("other", "web-1", {}), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(tokens->Admit("", "web-1", {}), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(tokens->Unbound(), ElementsAre("token-" + Sha256Hex("dev-secret").substr(0, 8)));
  EXPECT_THAT(AgentTokens::Parse("x@"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(AgentTokens::Parse("@web-1"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(AgentTokensTest, FileBindsIdsPrefixesAndLabels) {
  const std::string path = ::testing::TempDir() + "/agent_tokens_test";
  {
    std::ofstream out(path);
    out << "# web hosts\n"
        << "web sha256:" << Sha256Hex("web-secret") << " agents=web-*,edge-1 labels=env=prod,role=*\n"
        << "\n"
        << "ci sha256:" << Sha256Hex("ci-secret") << " agents=ci-1\n";
  }
  absl::StatusOr<AgentTokens> tokens = AgentTokens::LoadFile(path);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_TRUE(tokens->Unbound().empty());
  absl::StatusOr<const AgentToken*> web =
      tokens->Admit("web-secret", "web-7", Labels{{"env", "prod"}, {"role", "api"}});
  ASSERT_TRUE(web.ok()) << web.status();
  EXPECT_EQ((*web)->name, "web");
  EXPECT_TRUE(tokens->Admit("web-secret", "edge-1", {}).ok());
  EXPECT_THAT(tokens->Admit("web-secret", "db-1", {}),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("may not claim \"db-1\"")));
  EXPECT_THAT(tokens->Admit("web-secret", "web-7", Labels{{"env", "staging"}}),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("labels.env: token web may not announce env=staging")));
  EXPECT_THAT(tokens->Admit("web-secret", "web-7", Labels{{"gpu", "true"}}),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("labels.gpu")));
  // Without labels= a token may announce any.
  EXPECT_TRUE(tokens->Admit("ci-secret", "ci-1", Labels{{"gpu", "true"}}).ok());
}

TEST(AgentTokensTest, FileErrorsNameTheLine) {
  const std::string path = ::testing::TempDir() + "/agent_tokens_bad";
  {
    std::ofstream out(path);
    out << "a sha256:" << Sha256Hex("a") << "\n"
        << "a sha256:" << Sha256Hex("b") << "\n";
  }
  EXPECT_THAT(AgentTokens::LoadFile(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("agent_tokens_file " + path + " line 2: the name \"a\" is taken")));
  EXPECT_THAT(ParseAgentTokenLine("a sha256:beef"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("64 hex digits")));
  EXPECT_THAT(ParseAgentTokenLine("a sha256:" + Sha256Hex("a") + " labels=env"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("labels: want")));
  EXPECT_THAT(ParseAgentTokenLine("a sha256:" + Sha256Hex("a") + " slots=3"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown option \"slots\"")));
  EXPECT_THAT(AgentTokens::LoadFile(path + ".missing"), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace taskgrid
