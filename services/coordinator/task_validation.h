// Edge validation of client input: every limit of a TaskSpec, checked before
// anything is created, with errors that name the field and the reason.
#ifndef TASKGRID_SERVICES_COORDINATOR_TASK_VALIDATION_H_
#define TASKGRID_SERVICES_COORDINATOR_TASK_VALIDATION_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "taskgrid/v1/task.pb.h"
#include "taskgrid/v1/task_service.pb.h"

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
// Less than this cannot even start a shell.
inline constexpr int64_t kMinTaskMemoryBytes = 1 << 20;
// The kernel's most processes (PID_MAX_LIMIT).
inline constexpr int64_t kMaxPids = 4 << 20;

// Returns kInvalidArgument with "field: reason" for the first problem found.
absl::Status ValidateTaskSpec(const v1::TaskSpec& spec);

// kInvalidArgument when `spec` both pins an agent and selects by labels.
// Checked before a key's policy adds its own selector to the spec.
absl::Status ValidateTargeting(const v1::TaskSpec& spec);

// The filters of a List and a Watch: kInvalidArgument naming the field of
// an unknown (or unspecified) status, priority or event type.
absl::Status ValidateListRequest(const v1::ListRequest& request);
absl::Status ValidateWatchRequest(const v1::WatchRequest& request);

// A number of a run's targets: a count ("10") or a share of them ("25%").
struct TargetShare {
  uint32_t count = 0;
  uint32_t percent = 0;
  // The count for `targets` targets (a share rounded up, at least 1); 0 when unset.
  uint32_t Of(size_t targets) const;
};

// kInvalidArgument naming `field` unless `text` is empty, a count of 1 to
// 100000 or a percentage of 1 to 100.
absl::StatusOr<TargetShare> ParseTargetShare(absl::string_view field, absl::string_view text);

// ValidateTaskSpec for the template (its fields named spec.task.*), plus the
// run's own fields.
absl::Status ValidateRunSpec(const v1::RunSpec& spec);

// `s` with a leading field name spec.X renamed spec.task.X: an error about a
// task spec, said of a run's template.
absl::Status InRunTemplate(const absl::Status& s);

// Checks a client-supplied identifier (task id, agent id, idempotency key).
absl::Status ValidateId(absl::string_view field, absl::string_view id, bool required);

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_TASK_VALIDATION_H_
