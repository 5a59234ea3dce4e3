#include "services/coordinator/task_validation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "services/common/testing/test_util.h"

namespace taskgrid {
namespace {

using ::testing::HasSubstr;

v1::TaskSpec Valid() {
  v1::TaskSpec s;
  s.mutable_shell()->set_command("echo hi");
  return s;
}

void ExpectInvalid(const v1::TaskSpec& s, const std::string& field) {
  absl::Status st = ValidateTaskSpec(s);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr(field));
}

TEST(TaskValidationTest, AcceptsAPlainCommand) { EXPECT_TRUE(ValidateTaskSpec(Valid()).ok()); }

TEST(TaskValidationTest, ResourcesNameTheirLimits) {
  v1::TaskSpec s = Valid();
  s.mutable_resources()->set_memory_bytes(64 << 20);
  s.mutable_resources()->set_cpus(0.5);
  s.mutable_resources()->set_pids(100);
  EXPECT_TRUE(ValidateTaskSpec(s).ok());

  s.mutable_resources()->set_memory_bytes(1000);
  ExpectInvalid(s, "spec.resources.memory_bytes: must be 0 (no limit) or at least 1048576 (1 MiB)");
  s.mutable_resources()->set_memory_bytes(0);
  s.mutable_resources()->set_cpus(0.001);
  ExpectInvalid(s, "spec.resources.cpus");
  s.mutable_resources()->set_cpus(std::nan(""));
  ExpectInvalid(s, "spec.resources.cpus");
  s.mutable_resources()->set_cpus(0);
  s.mutable_resources()->set_pids(-1);
  ExpectInvalid(s, "spec.resources.pids");
  s.mutable_resources()->set_pids(kMaxPids + 1);
  ExpectInvalid(s, "spec.resources.pids: must be 0 (no limit) or 1 to 4194304");
  s.mutable_resources()->set_pids(0);
  s.mutable_resources()->set_cpus(1025);
  ExpectInvalid(s, "spec.resources.cpus");
  s.mutable_resources()->set_cpus(INFINITY);
  ExpectInvalid(s, "spec.resources.cpus");

  // A container says its limit once.
  v1::TaskSpec c;
  c.mutable_docker()->set_image("alpine");
  c.mutable_docker()->set_memory_bytes(64 << 20);
  c.mutable_resources()->set_memory_bytes(64 << 20);
  EXPECT_TRUE(ValidateTaskSpec(c).ok());
  c.mutable_resources()->set_memory_bytes(128 << 20);
  ExpectInvalid(c, "spec.resources.memory_bytes: differs from spec.docker.memory_bytes");
  c.mutable_resources()->set_memory_bytes(2 << 20);
  ExpectInvalid(c, "at least 6291456 (6 MiB for a container)");
  c.mutable_resources()->set_memory_bytes(0);
  c.mutable_docker()->set_pids_limit(10);
  c.mutable_resources()->set_pids(20);
  ExpectInvalid(c, "spec.resources.pids: differs from spec.docker.pids_limit");
  c.mutable_resources()->set_pids(0);
  c.mutable_docker()->set_cpus(0.005);
  ExpectInvalid(c, "spec.docker.cpus: must be 0 (no limit) or 0.01 to 1024");
}

TEST(TaskValidationTest, NamesTheBadField) {
  v1::TaskSpec s = Valid();
  s.mutable_shell()->set_command("   ");
  ExpectInvalid(s, "spec.shell.command");

  s = v1::TaskSpec();
  ExpectInvalid(s, "spec.shell");

  s = Valid();
  s.mutable_shell()->add_argv("ls");
  ExpectInvalid(s, "spec.shell");

  s = Valid();
  s.mutable_timeout()->set_seconds(-5);
  ExpectInvalid(s, "spec.timeout");

  s = Valid();
  s.mutable_timeout()->set_seconds(0);
  ExpectInvalid(s, "spec.timeout");

  s = Valid();
  s.mutable_timeout()->set_seconds(365LL * 86400);
  ExpectInvalid(s, "spec.timeout");

  s = Valid();
  s.set_priority(static_cast<v1::Priority>(7));
  ExpectInvalid(s, "spec.priority");

  s = Valid();
  s.mutable_shell()->set_command(std::string(kMaxCommandBytes + 1, 'x'));
  ExpectInvalid(s, "spec.shell.command");

  s = Valid();
  (*s.mutable_shell()->mutable_env())["A=B"] = "1";
  ExpectInvalid(s, "spec.shell.env");

  s = Valid();
  (*s.mutable_shell()->mutable_env())["BIG"] = std::string(kMaxEnvBytes, 'x');
  ExpectInvalid(s, "spec.shell.env");

  s = Valid();
  s.mutable_shell()->set_stdin(std::string(kMaxStdinBytes + 1, 'x'));
  ExpectInvalid(s, "spec.shell.stdin");

  s = Valid();
  (*s.mutable_secret_env())["TOKEN"] = "abc";
  ExpectInvalid(s, "spec.secret_env");

  s = Valid();
  s.set_agent_id("has space");
  ExpectInvalid(s, "spec.agent_id");

  s = Valid();
  for (int i = 0; i < 40; ++i) s.add_tags("t");
  ExpectInvalid(s, "spec.tags");
}

}  // namespace
}  // namespace taskgrid
