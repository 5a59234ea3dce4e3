// An agent operator's limits on what it runs (AgentPolicy), checked by the
// coordinator before dispatch and by the agent again on receipt.
#ifndef TASKGRID_SERVICES_COMMON_AGENT_POLICY_H_
#define TASKGRID_SERVICES_COMMON_AGENT_POLICY_H_

#include <string>

#include "taskgrid/v1/task.pb.h"

namespace taskgrid {

// Whether `policy` limits anything.
bool HasPolicy(const v1::AgentPolicy& policy);

// Why `policy` refuses `spec` ("refuses docker tasks (allows shell)"), or
// empty when it allows it.
std::string PolicyRefusal(const v1::AgentPolicy& policy, const v1::TaskSpec& spec);

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_AGENT_POLICY_H_
