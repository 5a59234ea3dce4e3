// Placement: the one rule for whether an agent can take a task now and, when
// it cannot, why. Dispatch, waiting reasons and fleet-run expansion all ask
// it, so a task is never refused by one and promised by another.
#ifndef TASKGRID_SERVICES_COORDINATOR_PLACEMENT_H_
#define TASKGRID_SERVICES_COORDINATOR_PLACEMENT_H_

#include <cstddef>
#include <optional>
#include <string>

#include "services/common/task_resources.h"

#include "taskgrid/v1/task.pb.h"
#include "taskgrid/v1/task_service.pb.h"

namespace taskgrid::placement {

// Lasting reasons come before passing ones: a task the agent will never run
// says so, even while the agent is offline or busy.
enum class Verdict {
  kFits,          // Connected, a slot free, matching and allowed.
  kNotPinned,     // The task names another agent.
  kNoMatch,       // The selector does not match the agent's labels.
  kNoContainers,  // A container task; the agent has no docker=true label.
  kPolicy,        // The agent's operator's policy refuses it.
  kCannotLimit,   // The agent does not enforce a limit the task sets.
  kTooSmall,      // It asks for more than the agent's whole capacity.
  kOffline,       // Registered but not connected.
  kBusy,          // Every slot in use.
  kNoRoom,        // Its request does not fit in what the agent has left.
};

// What placement knows of an agent: its hello, its link, its load.
struct AgentState {
  const v1::Agent& info;
  bool connected = false;
  size_t busy_slots = 0;
  // What its tasks reserve now; needed only for tasks that ask for
  // resources (AsksForResources).
  const v1::Resources* reserved = nullptr;
};

Verdict Judge(const AgentState& agent, const v1::TaskSpec& spec);

// The agent's own refusal (containers, policy, limits or capacity) as a
// reason ("cannot run containers (...)", "refuses to run /bin/sh (allows
// echo) by its operator's policy", "offers 1 GiB of memory to tasks in all,
// less than the 2 GiB of memory asked"); empty when it would take the task.
// Lasting reasons only: a passing one (offline, busy, no room) is the
// caller's to word.
std::string Refusal(const v1::Agent& agent, const v1::TaskSpec& spec);

// What `spec` asks for beyond what the agent has left once `reserved` is
// taken; nullopt when it fits.
std::optional<Shortage> RoomShortfall(const v1::Agent& agent, const v1::Resources& reserved,
                                      const v1::TaskSpec& spec);

}  // namespace taskgrid::placement

#endif  // TASKGRID_SERVICES_COORDINATOR_PLACEMENT_H_
