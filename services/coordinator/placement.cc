#include "services/coordinator/placement.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/agent_policy.h"
#include "services/coordinator/task_registry_util.h"

namespace taskgrid::placement {
namespace {

// The first limit of spec.resources the agent does not enforce ("memory",
// "cpus", "pids"); empty when it enforces them all. A container's own
// limits are Docker's, which every agent passes on.
std::string UnenforcedLimit(const v1::Agent& a, const v1::TaskSpec& spec) {
  const v1::Resources& r = spec.resources();
  if (spec.has_docker()) {
    return (r.memory_bytes() || r.cpus() || r.pids()) && !a.container_limits() ? "memory" : "";
  }
  for (auto [name, asked] : {std::pair{"memory", r.memory_bytes() != 0},
                             std::pair{"cpus", r.cpus() != 0}, std::pair{"pids", r.pids() != 0}}) {
    if (asked && std::find(a.limits().begin(), a.limits().end(), name) == a.limits().end()) {
      return name;
    }
  }
  return "";
}

// What `spec` asks for beyond all the agent offers.
std::optional<Shortage> CapacityShortfall(const v1::Agent& a, const v1::TaskSpec& spec) {
  const v1::Resources request = RequestedResources(spec);
  if (!Reserves(request)) return std::nullopt;
  return Shortfall(request, a.capacity());
}

}  // namespace

std::optional<Shortage> RoomShortfall(const v1::Agent& a, const v1::Resources& reserved,
                                      const v1::TaskSpec& spec) {
  const v1::Resources request = RequestedResources(spec);
  if (!Reserves(request)) return std::nullopt;
  return Shortfall(request, Remaining(a.capacity(), reserved));
}

Verdict Judge(const AgentState& agent, const v1::TaskSpec& spec) {
  const v1::Agent& a = agent.info;
  if (!spec.agent_id().empty() && spec.agent_id() != a.agent_id()) return Verdict::kNotPinned;
  if (!registry::SelectorMatches(spec.selector(), a.labels())) return Verdict::kNoMatch;
  if (spec.has_docker() && !registry::RunsContainers(a.labels())) return Verdict::kNoContainers;
  if (!PolicyRefusal(a.policy(), spec).empty()) return Verdict::kPolicy;
  const bool asks = AsksForResources(spec);
  if (asks && !UnenforcedLimit(a, spec).empty()) return Verdict::kCannotLimit;
  if (asks && CapacityShortfall(a, spec)) return Verdict::kTooSmall;
  if (!agent.connected) return Verdict::kOffline;
  if (agent.busy_slots >= static_cast<size_t>(a.slots())) return Verdict::kBusy;
  if (asks && agent.reserved != nullptr && RoomShortfall(a, *agent.reserved, spec)) {
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
  if (!AsksForResources(spec)) return "";
  if (std::string limit = UnenforcedLimit(agent, spec); !limit.empty()) {
    return absl::StrCat("cannot enforce the task's ", limit, " limit (no cgroup for it there)");
  }
  if (const std::optional<Shortage> missing = CapacityShortfall(agent, spec)) {
    return absl::StrCat("offers ", missing->has, " to tasks in all, less than the ",
                        missing->asked, " asked");
  }
  return "";
}

}  // namespace taskgrid::placement
