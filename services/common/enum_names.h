// The word of a proto enum value for people: DOCKER_OPERATION_RUN -> "run".
#ifndef TASKGRID_SERVICES_COMMON_ENUM_NAMES_H_
#define TASKGRID_SERVICES_COMMON_ENUM_NAMES_H_

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace taskgrid {

// `name` without `prefix`, in lower case.
inline std::string EnumWord(absl::string_view name, absl::string_view prefix) {
  absl::ConsumePrefix(&name, prefix);
  return absl::AsciiStrToLower(name);
}

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_ENUM_NAMES_H_
