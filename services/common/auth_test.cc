#include "services/common/auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "services/common/testing/test_util.h"

namespace taskgrid {
namespace {

using ::testing::HasSubstr;

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

TEST(ApiKeysTest, InlineKeysAreFoundByHashWithTheirScopes) {
  auto keys = ApiKeys::Parse("r1:read, s1:submit+cancel,a1:admin");
  ASSERT_TRUE(keys.ok()) << keys.status();
  auto admin = keys->Find("a1");
  ASSERT_TRUE(admin.ok());
  EXPECT_EQ((*admin)->name, "key-" + Sha256Hex("a1").substr(0, 8));
  EXPECT_TRUE(ScopesAllow((*admin)->scopes, Scope::kCancel));
  auto submitter = keys->Find("s1");
  ASSERT_TRUE(submitter.ok());
  EXPECT_TRUE(ScopesAllow((*submitter)->scopes, Scope::kRead));
  EXPECT_TRUE(ScopesAllow((*submitter)->scopes, Scope::kCancel));
  EXPECT_FALSE(ScopesAllow((*submitter)->scopes, Scope::kAdmin));
  auto reader = keys->Find("r1");
  ASSERT_TRUE(reader.ok());
  EXPECT_FALSE(ScopesAllow((*reader)->scopes, Scope::kSubmit));
  EXPECT_THAT(keys->Find("nope").status(), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(keys->Find("").status(), StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST(ApiKeysTest, RejectsMalformedEntries) {
  EXPECT_THAT(ApiKeys::Parse("justakey"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ApiKeys::Parse("k:root"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(ApiKeys::Parse("").value().empty());
}

TEST(ApiKeysTest, KeyLinesRoundTripWithTheirPolicy) {
  ApiKey key;
  key.name = "ci";
  key.sha256 = Sha256Hex("tgk_secret");
  key.scopes = static_cast<uint32_t>(Scope::kSubmit);
  key.policy.selector = {{"env", "staging"}, {"role", "web"}};
  key.policy.task_types = {"shell"};
  key.policy.max_running = 10;
  key.policy.submit_rate = 2.5;
  key.policy.max_runtime = absl::Hours(1);
  key.policy.max_output_bytes = 1 << 20;
  key.policy.max_streams = 4;
  const std::string line = key.ToLine();
  EXPECT_EQ(line.find("tgk_secret"), std::string::npos) << "the file holds hashes only";
  auto parsed = ParseKeyLine(line);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->ToLine(), line);
  EXPECT_EQ(parsed->policy.selector.at("role"), "web");
  EXPECT_EQ(parsed->policy.max_runtime, absl::Hours(1));
  EXPECT_EQ(parsed->policy.max_output_bytes, 1 << 20);
}

TEST(ApiKeysTest, KeyLineErrorsNameThePart) {
  const std::string hash = "sha256:" + Sha256Hex("k");
  EXPECT_THAT(ParseKeyLine("ci"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NAME")));
  EXPECT_THAT(ParseKeyLine("ci sha256:abc scopes=read"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("64 hex")));
  EXPECT_THAT(ParseKeyLine("ci " + hash + " scopes=root"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("scopes: unknown scope")));
  EXPECT_THAT(ParseKeyLine("ci " + hash + " scopes=read colour=blue"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown option \"colour\"")));
  EXPECT_THAT(ParseKeyLine("ci " + hash + " scopes=read max_runtime=soon"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_runtime")));
  EXPECT_THAT(ParseKeyLine("ci " + hash + " scopes=read types=vm"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("types")));
  EXPECT_THAT(ParseKeyLine("ci " + hash + " scopes=submit submit_rate=inf"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("submit_rate")));
  EXPECT_THAT(ParseKeyLine("#ci " + hash + " scopes=read"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the name may hold only")));
}

TEST(ApiKeysTest, LoadsAKeysFileAndNamesTheBadLine) {
  const std::string path = ::testing::TempDir() + "/keys";
  const std::string secret = NewApiKeySecret();
  EXPECT_EQ(secret.size(), 4u + 43u);
  {
    std::ofstream out(path);
    out << "# taskgrid keys\n\nci sha256:" << Sha256Hex(secret) << " scopes=submit\n";
  }
  auto keys = ApiKeys::Load("dev:admin", path);
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->size(), 2u);
  auto found = keys->Find(secret);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ((*found)->name, "ci");
  {
    std::ofstream out(path, std::ios::app);
    out << "ci sha256:" << Sha256Hex("other") << " scopes=read\n";
  }
  EXPECT_THAT(ApiKeys::LoadFile(path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 4: the name \"ci\"")));
  EXPECT_THAT(ApiKeys::LoadFile(path + ".missing"), StatusIs(absl::StatusCode::kNotFound));
}

TEST(ApiKeysTest, AKeysFileWithNoKeysIsAnErrorNotAnOpenDoor) {
  const std::string path = ::testing::TempDir() + "/keys_none";
  { std::ofstream(path) << "# every key revoked\n"; }
  EXPECT_THAT(ApiKeys::Load("", path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lists no keys")));
  { std::ofstream truncated(path); }
  EXPECT_THAT(ApiKeys::Load("", path), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace taskgrid
