#include "services/coordinator/placement.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace taskgrid::placement {
namespace {

using ::testing::HasSubstr;

v1::Agent MakeAgent(const std::string& id, std::map<std::string, std::string> labels,
                    uint32_t slots = 2) {
  v1::Agent a;
  a.set_agent_id(id);
  a.set_slots(slots);
  for (auto& [k, v] : labels) (*a.mutable_labels())[k] = v;
  return a;
}

v1::TaskSpec Shell(const std::string& command) {
  v1::TaskSpec spec;
  spec.mutable_shell()->set_command(command);
  return spec;
}

TEST(PlacementTest, AConnectedMatchingAgentWithASlotFits) {
  const v1::Agent a = MakeAgent("web-1", {{"role", "web"}});
  v1::TaskSpec spec = Shell("true");
  (*spec.mutable_selector())["role"] = "web";
  EXPECT_EQ(Judge({a, true, 1}, spec), Verdict::kFits);
  EXPECT_EQ(Refusal(a, spec), "");
}

TEST(PlacementTest, EachReasonInTurn) {
  const v1::Agent a = MakeAgent("web-1", {{"role", "web"}}, 1);
  v1::TaskSpec spec = Shell("true");
  EXPECT_EQ(Judge({a, true, 1}, spec), Verdict::kBusy);
  EXPECT_EQ(Judge({a, false, 0}, spec), Verdict::kOffline);
  (*spec.mutable_selector())["role"] = "db";
  EXPECT_EQ(Judge({a, true, 0}, spec), Verdict::kNoMatch);
  spec.clear_selector();
  spec.set_agent_id("web-2");
  EXPECT_EQ(Judge({a, true, 0}, spec), Verdict::kNotPinned);
  spec.set_agent_id("web-1");
  EXPECT_EQ(Judge({a, true, 0}, spec), Verdict::kFits);
}

TEST(PlacementTest, LastingReasonsComeBeforePassingOnes) {
  v1::Agent a = MakeAgent("locked-1", {});
  a.mutable_policy()->add_commands("echo");
  const v1::TaskSpec spec = Shell("rm -rf /tmp/x");
  // Offline and busy, but what matters is that it will never run there.
  EXPECT_EQ(Judge({a, false, 2}, spec), Verdict::kPolicy);
  EXPECT_THAT(Refusal(a, spec),
              HasSubstr("refuses to run /bin/sh (allows echo) by its operator's policy"));
}

TEST(PlacementTest, ContainersNeedTheDockerLabel) {
  v1::TaskSpec spec;
  spec.mutable_docker()->set_image("alpine");
  const v1::Agent plain = MakeAgent("a", {});
  EXPECT_EQ(Judge({plain, true, 0}, spec), Verdict::kNoContainers);
  EXPECT_THAT(Refusal(plain, spec), HasSubstr("cannot run containers"));
  const v1::Agent docker = MakeAgent("b", {{"docker", "true"}});
  EXPECT_EQ(Judge({docker, true, 0}, spec), Verdict::kFits);
}

TEST(PlacementTest, ASelectorMismatchOutranksARefusal) {
  // An agent the selector does not pick is not said to refuse the task.
  v1::Agent a = MakeAgent("a", {{"role", "web"}});
  a.mutable_policy()->add_task_types("docker");
  v1::TaskSpec spec = Shell("true");
  (*spec.mutable_selector())["role"] = "db";
  EXPECT_EQ(Judge({a, true, 0}, spec), Verdict::kNoMatch);
}

// An agent offering 4 GiB and 2 CPUs that enforces every limit.
v1::Agent Limiting(const std::string& id, std::map<std::string, std::string> labels = {}) {
  v1::Agent a = MakeAgent(id, std::move(labels), 4);
  a.mutable_capacity()->set_memory_bytes(4LL << 30);
  a.mutable_capacity()->set_cpus(2);
  for (const char* limit : {"memory", "cpus", "pids"}) a.add_limits(limit);
  a.set_container_limits(true);
  return a;
}

TEST(PlacementTest, AResourceRequestReservesWhatTheAgentOffers) {
  const v1::Agent a = Limiting("big-1");
  v1::TaskSpec spec = Shell("make -j");
  spec.mutable_resources()->set_memory_bytes(2LL << 30);
  spec.mutable_resources()->set_cpus(1);
  v1::Resources reserved;
  EXPECT_EQ(Judge({a, true, 0, &reserved}, spec), Verdict::kFits);
  reserved.set_memory_bytes(3LL << 30);
  EXPECT_EQ(Judge({a, true, 1, &reserved}, spec), Verdict::kNoRoom);
  EXPECT_EQ(RoomShortfall(a, reserved, spec)->asked, "2 GiB of memory");
  reserved.set_memory_bytes(0);
  reserved.set_cpus(1.5);
  EXPECT_EQ(Judge({a, true, 1, &reserved}, spec), Verdict::kNoRoom);
  EXPECT_EQ(RoomShortfall(a, reserved, spec)->asked, "1 CPU");
  EXPECT_EQ(Refusal(a, spec), "") << "no room is a passing reason, the caller's";

  // More than the agent has in all: lasting, before offline or busy.
  spec.mutable_resources()->set_memory_bytes(8LL << 30);
  EXPECT_EQ(Judge({a, false, 4, &reserved}, spec), Verdict::kTooSmall);
  EXPECT_EQ(Refusal(a, spec),
            "offers 4 GiB of memory to tasks in all, less than the 8 GiB of memory asked");
}

TEST(PlacementTest, ALimitGoesOnlyWhereItIsEnforced) {
  v1::Agent a = Limiting("old-1");
  a.clear_limits();
  a.add_limits("memory");
  v1::TaskSpec spec = Shell("make");
  spec.mutable_resources()->set_memory_bytes(1 << 30);
  EXPECT_EQ(Judge({a, true, 0}, spec), Verdict::kFits);
  spec.mutable_resources()->set_pids(100);  // reserves nothing, but is a limit all the same
  EXPECT_EQ(Judge({a, false, 4}, spec), Verdict::kCannotLimit);
  EXPECT_EQ(Refusal(a, spec), "cannot enforce the task's pids limit (no cgroup for it there)");
  // A task that asks for nothing goes anywhere.
  EXPECT_EQ(Judge({a, true, 0}, Shell("true")), Verdict::kFits);
}

TEST(PlacementTest, AContainersOwnLimitsAreItsRequest) {
  v1::Agent a = Limiting("box", {{"docker", "true"}});
  v1::TaskSpec spec;
  spec.mutable_docker()->set_image("alpine");
  spec.mutable_docker()->set_memory_bytes(8LL << 30);
  EXPECT_EQ(Judge({a, true, 0}, spec), Verdict::kTooSmall);
  // Docker enforces its own limits; spec.resources needs an agent that
  // passes them on.
  spec.mutable_docker()->set_memory_bytes(1 << 30);
  a.set_container_limits(false);
  EXPECT_EQ(Judge({a, true, 0}, spec), Verdict::kFits);
  spec.mutable_resources()->set_cpus(1);
  EXPECT_EQ(Judge({a, true, 0}, spec), Verdict::kCannotLimit);
}

}  // namespace
}  // namespace taskgrid::placement
