#include "services/common/agent_policy.h"

#include <gtest/gtest.h>

namespace taskgrid {
namespace {

v1::TaskSpec Argv(std::initializer_list<const char*> argv) {
  v1::TaskSpec spec;
  for (const char* a : argv) spec.mutable_shell()->add_argv(a);
  return spec;
}

TEST(AgentPolicyTest, AnEmptyPolicyAllowsEverything) {
  v1::TaskSpec docker;
  docker.mutable_docker()->set_image("busybox");
  EXPECT_EQ(PolicyRefusal(v1::AgentPolicy(), docker), "");
  EXPECT_EQ(PolicyRefusal(v1::AgentPolicy(), Argv({"rm", "-rf", "/tmp/x"})), "");
}

TEST(AgentPolicyTest, TaskTypesAndCommandsAreAllowLists) {
  v1::AgentPolicy policy;
  policy.add_task_types("shell");
  policy.add_commands("uptime");
  policy.add_commands("/usr/bin/df");
  v1::TaskSpec docker;
  docker.mutable_docker()->set_image("busybox");
  EXPECT_EQ(PolicyRefusal(policy, docker), "refuses docker tasks (allows shell)");
  EXPECT_EQ(PolicyRefusal(policy, Argv({"uptime"})), "");
  EXPECT_EQ(PolicyRefusal(policy, Argv({"/usr/bin/uptime"})), "");  // By its name.
  EXPECT_EQ(PolicyRefusal(policy, Argv({"/usr/bin/df", "-h"})), "");
  EXPECT_EQ(PolicyRefusal(policy, Argv({"reboot"})), "refuses to run reboot (allows uptime,/usr/bin/df)");
  v1::TaskSpec line;
  line.mutable_shell()->set_command("uptime; reboot");
  EXPECT_EQ(PolicyRefusal(policy, line), "refuses to run sh (allows uptime,/usr/bin/df)");
}

}  // namespace
}  // namespace taskgrid
