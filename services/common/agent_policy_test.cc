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
  EXPECT_EQ(PolicyRefusal(policy, Argv({"/usr/bin/df", "-h"})), "");
  EXPECT_EQ(PolicyRefusal(policy, Argv({"reboot"})), "refuses to run reboot (allows uptime,/usr/bin/df)");
  // Exactly as listed: a path is not its base name, nor the reverse.
  EXPECT_EQ(PolicyRefusal(policy, Argv({"/tmp/evil/uptime"})),
            "refuses to run /tmp/evil/uptime (allows uptime,/usr/bin/df)");
  EXPECT_NE(PolicyRefusal(policy, Argv({"df"})), "");
  v1::TaskSpec line;
  line.mutable_shell()->set_command("uptime; reboot");
  EXPECT_EQ(PolicyRefusal(policy, line), "refuses to run /bin/sh (allows uptime,/usr/bin/df)");
  // Nor may a task make an allowed program start another.
  for (const char* name : {"PATH", "LD_PRELOAD", "BASH_ENV", "ENV"}) {
    v1::TaskSpec redirected = Argv({"uptime"});
    (*redirected.mutable_shell()->mutable_env())[name] = "/tmp/evil";
    EXPECT_EQ(PolicyRefusal(policy, redirected), std::string("refuses to let a task set ") + name);
  }
  v1::TaskSpec secret = Argv({"uptime"});
  (*secret.mutable_secret_env())["LD_PRELOAD"] = "/tmp/evil.so";
  EXPECT_NE(PolicyRefusal(policy, secret), "");
}

}  // namespace
}  // namespace taskgrid
