// Structured logging setup: one named spdlog logger per service, installed as
// the default so libraries log with spdlog::info("event key=value ...").
#ifndef TASKGRID_SERVICES_COMMON_LOGGING_H_
#define TASKGRID_SERVICES_COMMON_LOGGING_H_

#include <string>

#include "absl/status/status.h"

namespace taskgrid {

// Installs a stderr logger named `service` at `level` (trace, debug, info,
// warn, error, critical, off). Returns kInvalidArgument for an unknown level.
absl::Status InitLogging(const std::string& service, const std::string& level);

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_LOGGING_H_
