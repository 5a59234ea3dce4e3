#include "services/common/agent_policy.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace taskgrid {
namespace {

bool Contains(const google::protobuf::RepeatedPtrField<std::string>& list,
              const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// Variables that would make an allowed program run something else.
bool Redirects(const std::string& name) {
  return name == "PATH" || name == "BASH_ENV" || name == "ENV" || name == "SHELLOPTS" ||
         absl::StartsWith(name, "LD_");
}

}  // namespace

bool HasPolicy(const v1::AgentPolicy& policy) {
  return policy.task_types_size() + policy.commands_size() > 0;
}

std::string PolicyRefusal(const v1::AgentPolicy& policy, const v1::TaskSpec& spec) {
  const std::string type = spec.has_docker() ? "docker" : "shell";
  if (!policy.task_types().empty() && !Contains(policy.task_types(), type)) {
    return absl::StrCat("refuses ", type, " tasks (allows ", absl::StrJoin(policy.task_types(), ","),
                        ")");
  }
  if (policy.commands().empty() || spec.has_docker()) return "";
  // A command line runs through /bin/sh, which can then start anything.
  const std::string program =
      spec.shell().argv().empty() ? std::string("/bin/sh") : spec.shell().argv(0);
  if (!Contains(policy.commands(), program)) {
    return absl::StrCat("refuses to run ", program, " (allows ",
                        absl::StrJoin(policy.commands(), ","), ")");
  }
  for (const auto* env : {&spec.shell().env(), &spec.secret_env()}) {
    for (const auto& [name, value] : *env) {
      if (Redirects(name)) return absl::StrCat("refuses to let a task set ", name);
    }
  }
  return "";
}

}  // namespace taskgrid
