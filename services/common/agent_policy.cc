#include "services/common/agent_policy.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace taskgrid {
namespace {

bool Contains(const google::protobuf::RepeatedPtrField<std::string>& list,
              const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::string PolicyRefusal(const v1::AgentPolicy& policy, const v1::TaskSpec& spec) {
  const std::string type = spec.has_docker() ? "docker" : "shell";
  if (!policy.task_types().empty() && !Contains(policy.task_types(), type)) {
    return absl::StrCat("refuses ", type, " tasks (allows ", absl::StrJoin(policy.task_types(), ","),
                        ")");
  }
  if (policy.commands().empty() || spec.has_docker()) return "";
  // A command line runs through /bin/sh, which can then start anything.
  const std::string program =
      spec.shell().argv().empty() ? std::string("sh") : spec.shell().argv(0);
  if (Contains(policy.commands(), program) || Contains(policy.commands(), BaseName(program))) {
    return "";
  }
  return absl::StrCat("refuses to run ", program, " (allows ",
                      absl::StrJoin(policy.commands(), ","), ")");
}

}  // namespace taskgrid
