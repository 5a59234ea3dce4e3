#include "services/coordinator/agent_directory.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace taskgrid {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class RecordingLink : public AgentLink {
 public:
  void Send(v1::CoordinatorMessage) override {}
  void Close(const absl::Status& status) override { closed = status; }
  absl::Status closed;
};

const absl::Duration kTtl = absl::Seconds(15);
const absl::Duration kForget = absl::Hours(1);
const absl::Time kT0 = absl::FromUnixSeconds(1'000'000);

v1::Hello Hello(const std::string& id) {
  v1::Hello h;
  h.set_agent_id(id);
  h.set_slots(2);
  (*h.mutable_labels())["role"] = "web";
  return h;
}

TEST(AgentDirectoryTest, ConnectRegistersTheAgentAsConnected) {
  AgentDirectory dir(kTtl, kForget);
  auto link = std::make_shared<RecordingLink>();
  auto c = dir.Connect(Hello("web-1"), "fp1", link, nullptr, kT0);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->same_process);
  EXPECT_TRUE(dir.IsConnected("web-1"));
  EXPECT_EQ(dir.connected().size(), 1u);
  EXPECT_EQ(dir.Find("web-1")->info.labels().at("role"), "web");
  EXPECT_EQ(dir.FindByLink("web-1", link.get()), c->agent);
  EXPECT_EQ(dir.FindByLink("web-1", nullptr), nullptr);
}

TEST(AgentDirectoryTest, OnlyTheSameProcessReplacesAConnectedLink) {
  AgentDirectory dir(kTtl, kForget);
  auto first = std::make_shared<RecordingLink>();
  ASSERT_TRUE(dir.Connect(Hello("web-1"), "fp1", first, nullptr, kT0).ok());
  auto other = dir.Connect(Hello("web-1"), "fp2", std::make_shared<RecordingLink>(), nullptr, kT0);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(other.status().message(), HasSubstr("another process holds that id"));
  EXPECT_TRUE(first->closed.ok());

  auto second = std::make_shared<RecordingLink>();
  auto same = dir.Connect(Hello("web-1"), "fp1", second, nullptr, kT0);
  ASSERT_TRUE(same.ok());
  EXPECT_TRUE(same->same_process);
  EXPECT_EQ(first->closed.code(), absl::StatusCode::kAborted);
  // The replaced link's end changes nothing.
  EXPECT_EQ(dir.Disconnect("web-1", first.get()), nullptr);
  EXPECT_TRUE(dir.IsConnected("web-1"));
}

TEST(AgentDirectoryTest, ADisconnectedAgentStaysOnlineUntilItsTtl) {
  AgentDirectory dir(kTtl, kForget);
  auto link = std::make_shared<RecordingLink>();
  ASSERT_TRUE(dir.Connect(Hello("web-1"), "", link, nullptr, kT0).ok());
  AgentEntry* a = dir.Disconnect("web-1", link.get());
  ASSERT_NE(a, nullptr);
  EXPECT_FALSE(dir.IsConnected("web-1"));
  EXPECT_TRUE(a->online);
  EXPECT_THAT(dir.Check(kT0 + kTtl - absl::Seconds(1)).silent, IsEmpty());
  AgentDirectory::Due due = dir.Check(kT0 + kTtl);
  EXPECT_THAT(due.silent, ElementsAre(a));
}

TEST(AgentDirectoryTest, MessagesPushTheTtlBackWithoutMovingTheCheck) {
  AgentDirectory dir(kTtl, kForget);
  auto c = dir.Connect(Hello("web-1"), "", std::make_shared<RecordingLink>(), nullptr, kT0);
  ASSERT_TRUE(c.ok());
  c->agent->last_seen = kT0 + absl::Seconds(10);
  // Looked at once at the first TTL, then at the TTL after its last message.
  EXPECT_THAT(dir.Check(kT0 + kTtl).silent, IsEmpty());
  EXPECT_THAT(dir.Check(kT0 + kTtl + absl::Seconds(9)).silent, IsEmpty());
  EXPECT_THAT(dir.Check(kT0 + kTtl + absl::Seconds(10)).silent, ElementsAre(c->agent));
}

TEST(AgentDirectoryTest, AnOfflineAgentIsForgottenAfterForgetAfter) {
  AgentDirectory dir(kTtl, kForget);
  auto link = std::make_shared<RecordingLink>();
  auto c = dir.Connect(Hello("web-1"), "", link, nullptr, kT0);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(dir.TakeOffline(*c->agent, kT0 + kTtl), link);
  EXPECT_FALSE(c->agent->online);
  EXPECT_FALSE(dir.IsConnected("web-1"));
  EXPECT_THAT(dir.Check(kT0 + kTtl + kForget - absl::Seconds(1)).forgotten, IsEmpty());
  EXPECT_THAT(dir.Check(kT0 + kTtl + kForget).forgotten, ElementsAre("web-1"));
  EXPECT_EQ(dir.Find("web-1"), nullptr);
  EXPECT_EQ(dir.size(), 0u);
}

TEST(AgentDirectoryTest, CountsAgentsWhosePolicyMayRefuse) {
  AgentDirectory dir(kTtl, kForget);
  v1::Hello h = Hello("web-1");
  h.mutable_policy()->add_commands("echo *");
  auto c = dir.Connect(h, "fp", std::make_shared<RecordingLink>(), nullptr, kT0);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(dir.any_policy());
  // Reconnecting without a policy takes it away.
  ASSERT_TRUE(dir.Connect(Hello("web-1"), "fp", std::make_shared<RecordingLink>(), nullptr, kT0)
                  .ok());
  EXPECT_FALSE(dir.any_policy());
  h.set_agent_id("web-2");
  ASSERT_TRUE(dir.Connect(h, "", std::make_shared<RecordingLink>(), nullptr, kT0).ok());
  dir.TakeOffline(*dir.Find("web-2"), kT0);
  EXPECT_TRUE(dir.any_policy());
  dir.Check(kT0 + kForget);
  EXPECT_FALSE(dir.any_policy());
}

TEST(AgentDirectoryTest, RecoveredAgentsComeBackOfflineOrExpected) {
  AgentDirectory dir(kTtl, kForget);
  v1::Agent stored;
  stored.set_agent_id("db-1");
  dir.Restore(stored, kT0);
  EXPECT_FALSE(dir.Find("db-1")->online);
  AgentEntry& busy = dir.ExpectBack("web-1", kT0);
  EXPECT_TRUE(busy.online);
  EXPECT_FALSE(dir.IsConnected("web-1"));
  EXPECT_THAT(dir.Check(kT0 + kTtl).silent, ElementsAre(&busy));
  EXPECT_THAT(dir.Check(kT0 + kForget).forgotten, ElementsAre("db-1"));
}

}  // namespace
}  // namespace taskgrid
