#include "services/coordinator/placement.h"

#include "absl/strings/str_cat.h"
#include "services/common/agent_policy.h"
#include "services/coordinator/task_registry_util.h"

namespace taskgrid::placement {

Verdict Judge(const AgentState& agent, const v1::TaskSpec& spec) {
  const v1::Agent& a = agent.info;
  if (!spec.agent_id().empty() && spec.agent_id() != a.agent_id()) return Verdict::kNotPinned;
  if (!registry::SelectorMatches(spec.selector(), a.labels())) return Verdict::kNoMatch;
  if (spec.has_docker() && !registry::RunsContainers(a.labels())) return Verdict::kNoContainers;
  if (!PolicyRefusal(a.policy(), spec).empty()) return Verdict::kPolicy;
  if (!agent.connected) return Verdict::kOffline;
  if (agent.busy_slots >= static_cast<size_t>(a.slots())) return Verdict::kBusy;
  return Verdict::kFits;
}

std::string Refusal(const v1::Agent& agent, const v1::TaskSpec& spec) {
  if (spec.has_docker() && !registry::RunsContainers(agent.labels())) {
    return "cannot run containers (label docker is not true: Docker is not reachable there)";
  }
  if (std::string refusal = PolicyRefusal(agent.policy(), spec); !refusal.empty()) {
    return absl::StrCat(refusal, " by its operator's policy");
  }
  return "";
}

}  // namespace taskgrid::placement
