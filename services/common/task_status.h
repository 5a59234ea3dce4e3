// What a task's status means, for every service that reads one.
#ifndef TASKGRID_SERVICES_COMMON_TASK_STATUS_H_
#define TASKGRID_SERVICES_COMMON_TASK_STATUS_H_

#include "taskgrid/v1/task.pb.h"

namespace taskgrid {

// Succeeded, failed, cancelled, timed out or lost: nothing changes it again.
inline bool IsFinal(v1::TaskStatus s) { return s >= v1::TASK_STATUS_SUCCEEDED; }

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_TASK_STATUS_H_
