// Command-line parsing for the taskgrid CLI: `--name value`, `--name=value`,
// repeatable flags and `--` before a command, with errors that name the flag.
#ifndef TASKGRID_SERVICES_CLI_ARGS_H_
#define TASKGRID_SERVICES_CLI_ARGS_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace taskgrid::cli {

struct FlagSpec {
  std::set<std::string> with_value;  // Flags that take a value.
  std::set<std::string> boolean;     // Flags that take none.
};

struct ParsedArgs {
  std::map<std::string, std::vector<std::string>> flags;  // Every occurrence.
  std::vector<std::string> positional;                    // Includes what follows `--`.

  bool Has(const std::string& name) const { return flags.count(name) > 0; }
  // Last value of `name`, or `fallback`.
  std::string Get(const std::string& name, const std::string& fallback = "") const;
};

// Parses `args` (without the program and command name). kInvalidArgument for
// an unknown flag or a missing value.
absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args, const FlagSpec& spec);

}  // namespace taskgrid::cli

#endif  // TASKGRID_SERVICES_CLI_ARGS_H_
