// Edge validation of client input: every limit of a TaskSpec, checked before
// anything is created, with errors that name the field and the reason.
#ifndef TASKGRID_SERVICES_COORDINATOR_TASK_VALIDATION_H_
#define TASKGRID_SERVICES_COORDINATOR_TASK_VALIDATION_H_

#include "absl/status/status.h"
#include "taskgrid/v1/task.pb.h"

namespace taskgrid {

inline constexpr size_t kMaxCommandBytes = 64 << 10;
inline constexpr size_t kMaxEnvEntries = 256;
inline constexpr size_t kMaxEnvBytes = 64 << 10;
inline constexpr size_t kMaxStdinBytes = 1 << 20;
inline constexpr size_t kMaxTags = 32;
inline constexpr size_t kMaxTagBytes = 128;
inline constexpr size_t kMaxTypeBytes = 128;
inline constexpr size_t kMaxDescriptionBytes = 4096;
inline constexpr size_t kMaxSelectorEntries = 32;
inline constexpr size_t kMaxIdBytes = 256;
inline constexpr size_t kMaxContextBytes = 16 << 10;
inline constexpr size_t kMaxMounts = 32;
// Docker refuses less memory than this.
inline constexpr int64_t kMinContainerMemoryBytes = 6 << 20;

// Returns kInvalidArgument with "field: reason" for the first problem found.
absl::Status ValidateTaskSpec(const v1::TaskSpec& spec);

// Checks a client-supplied identifier (task id, agent id, idempotency key).
absl::Status ValidateId(absl::string_view field, absl::string_view id, bool required);

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_TASK_VALIDATION_H_
