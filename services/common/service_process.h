// Process-wide setup shared by the service binaries' main(): logging, Abseil's
// lock bookkeeping, and SIGINT/SIGTERM taken synchronously by the main thread.
#ifndef TASKGRID_SERVICES_COMMON_SERVICE_PROCESS_H_
#define TASKGRID_SERVICES_COMMON_SERVICE_PROCESS_H_

#include <functional>
#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace taskgrid {

// Sets each of the binary's flags that is not given on the command line
// from TASKGRID_<FLAG NAME IN CAPITALS>, if that is set (--api_keys from
// TASKGRID_API_KEYS). Call before absl::ParseCommandLine, so the command line
// wins. Returns kInvalidArgument naming the variable whose value is bad.
absl::Status ApplyEnvironmentFlags();

// Overwrites, in place, the values of the flags named `flags` in `argv`
// (--token=SECRET, --token SECRET) and of the environment variables named
// `variables` in the process's original environment block, then unsets the
// variables: /proc/PID/cmdline and /proc/PID/environ, which other processes
// of the user (the tasks among them) can read, no longer show them, and no
// child inherits them. Call after absl::ParseCommandLine.
void HideSecrets(int argc, char** argv, std::initializer_list<const char*> flags,
                 std::initializer_list<const char*> variables);

// The secret in the file at `path`, surrounding whitespace removed.
// kPermissionDenied naming `flag` when the file is readable by group or
// others, kNotFound when it cannot be read, kInvalidArgument when empty.
absl::StatusOr<std::string> ReadSecretFile(const std::string& path, absl::string_view flag);

// Installs the `service` logger at `log_level`, turns off Abseil's per-lock
// deadlock graph (lock order is checked by the Clang thread-safety build
// instead) and blocks SIGINT, SIGTERM and SIGHUP in this thread and every thread
// started after it. Call first in main(), before any thread exists.
// Returns kInvalidArgument for an unknown level.
absl::Status InitServiceProcess(const std::string& service, const std::string& log_level);

// Blocks until SIGINT or SIGTERM arrives; returns its number. Each SIGHUP
// meanwhile runs `on_reload` (and is otherwise ignored).
int WaitForStopSignal(const std::function<void()>& on_reload = nullptr);

// Writes `ports`, one per line, to `path` (nothing when empty), for scripts
// that start a service on port 0. The file appears whole or not at all.
void WritePortFile(const std::string& path, std::initializer_list<int> ports);

// This machine's host name (empty if it cannot be read).
std::string HostName();

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_SERVICE_PROCESS_H_
