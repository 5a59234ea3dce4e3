#include "services/coordinator/placement.h"

#include "absl/strings/str_cat.h"
#include "services/common/agent_policy.h"
#include "services/common/task_resources.h"
#include "services/coordinator/task_registry_util.h"

namespace taskgrid::placement {

bool Asks(const v1::TaskSpec& spec) { return spec.has_resources() || spec.has_docker(); }

Verdict Judge(const AgentState& agent, const v1::TaskSpec& spec) {
  const v1::Agent& a = agent.info;
  if (!spec.agent_id().empty() && spec.agent_id() != a.agent_id()) return Verdict::kNotPinned;
  if (!registry::SelectorMatches(spec.selector(), a.labels())) return Verdict::kNoMatch;
  if (spec.has_docker() && !registry::RunsContainers(a.labels())) return Verdict::kNoContainers;
  if (!PolicyRefusal(a.policy(), spec).empty()) return Verdict::kPolicy;
  const v1::Resources request = Asks(spec) ? RequestedResources(spec) : v1::Resources();
  const bool reserves = Reserves(request);
  if (reserves && Shortfall(request, a.capacity())) return Verdict::kTooSmall;
  if (!agent.connected) return Verdict::kOffline;
  if (agent.busy_slots >= static_cast<size_t>(a.slots())) return Verdict::kBusy;
  if (reserves && agent.reserved != nullptr &&
      Shortfall(request, Remaining(a.capacity(), *agent.reserved))) {
    return Verdict::kNoRoom;
  }
  return Verdict::kFits;
}

std::string Refusal(const v1::Agent& agent, const v1::TaskSpec& spec) {
  if (spec.has_docker() && !registry::RunsContainers(agent.labels())) {
    return "cannot run containers (label docker is not true: Docker is not reachable there)";
  }
  if (std::string refusal = PolicyRefusal(agent.policy(), spec); !refusal.empty()) {
    return absl::StrCat(refusal, " by its operator's policy");
  }
  if (Asks(spec)) {
    const v1::Resources request = RequestedResources(spec);
    if (const auto missing = Shortfall(request, agent.capacity()); Reserves(request) && missing) {
      return absl::StrCat("offers ", missing->has, " to tasks in all, less than the ",
                          missing->asked, " asked");
    }
  }
  return "";
}

}  // namespace taskgrid::placement
