// Byte counts as people write them: "64m", "1g", "512k" or plain bytes.
#ifndef TASKGRID_SERVICES_COMMON_BYTE_SIZE_H_
#define TASKGRID_SERVICES_COMMON_BYTE_SIZE_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace taskgrid {

// kInvalidArgument (without a field name: callers add theirs) for anything
// else, a negative size or one beyond 1 PiB.
absl::StatusOr<int64_t> ParseByteSize(absl::string_view value);

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_BYTE_SIZE_H_
