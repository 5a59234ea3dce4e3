// Placement: the one rule for whether an agent can take a task now and, when
// it cannot, why. Dispatch, waiting reasons and fleet-run expansion all ask
// it, so a task is never refused by one and promised by another.
#ifndef TASKGRID_SERVICES_COORDINATOR_PLACEMENT_H_
#define TASKGRID_SERVICES_COORDINATOR_PLACEMENT_H_

#include <cstddef>
#include <string>

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
  // What its tasks reserve now; needed only for tasks that ask (Asks).
  const v1::Resources* reserved = nullptr;
};

// Whether `spec` may ask for resources (spec.resources, or a container's
// limits): only then does placement need AgentState::reserved.
bool Asks(const v1::TaskSpec& spec);

Verdict Judge(const AgentState& agent, const v1::TaskSpec& spec);

// The agent's own refusal (containers, policy or capacity) as a reason ("cannot run
// containers (...)", "refuses to run /bin/sh (allows echo) by its
// operator's policy", "offers 1 GiB of memory to tasks in all, less than
// the 2 GiB of memory asked"); empty when it would take the task.
std::string Refusal(const v1::Agent& agent, const v1::TaskSpec& spec);

}  // namespace taskgrid::placement

#endif  // TASKGRID_SERVICES_COORDINATOR_PLACEMENT_H_
