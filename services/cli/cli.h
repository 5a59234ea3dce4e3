// The taskgrid command: submit and follow tasks, inspect and manage them,
// list agents, watch events. RunCli is main() minus process setup, so tests
// can drive it.
#ifndef TASKGRID_SERVICES_CLI_CLI_H_
#define TASKGRID_SERVICES_CLI_CLI_H_

#include <string>
#include <vector>

namespace taskgrid::cli {

// Exit codes beyond a task's own.
inline constexpr int kExitTargetFailed = 1;  // A fleet run's target did not succeed.
inline constexpr int kExitUsage = 2;
inline constexpr int kExitTimedOut = 124;
inline constexpr int kExitError = 125;  // taskgrid itself failed, or the task was lost.
inline constexpr int kExitCancelled = 130;

// Runs one command; `args` excludes the program name. Returns the exit code.
int RunCli(const std::vector<std::string>& args);

}  // namespace taskgrid::cli

#endif  // TASKGRID_SERVICES_CLI_CLI_H_
