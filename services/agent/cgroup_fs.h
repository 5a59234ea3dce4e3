// Reading and walking the cgroup file systems (v2, and the v1 controllers'
// hierarchies beside it): the small helpers task cgroups and task limits
// share. Linux only.
#ifndef TASKGRID_SERVICES_AGENT_CGROUP_FS_H_
#define TASKGRID_SERVICES_AGENT_CGROUP_FS_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "services/agent/process_spawn.h"

namespace taskgrid::cgroup_fs {

// The whole of a small file: from `fd` if it is open (pread at 0 makes
// cgroup files anew), else opened by path. nullopt if it cannot be read.
std::optional<std::string> ReadSmallFile(const std::string& path, int fd = -1);
// Writes `text` to `dir`/`file` in one write.
absl::Status WriteFile(const std::string& dir, const char* file, absl::string_view text);
UniqueFd OpenIn(const std::string& dir, const char* file, int flags);

// Where cgroup2 is mounted ("" when it is not), and the agent's own path in it.
std::string V2Mount();
std::string OwnV2Path();
// The directory of the agent's own cgroup in the v1 hierarchy holding
// `controller` (its mount point, and the agent's path from the part of the
// hierarchy mounted there); "" when there is none.
std::string OwnV1Dir(absl::string_view controller);

// A path component made of safe characters only.
std::string SafeName(absl::string_view name);
// "run-<pid>-<start time>": one agent process, even after pid reuse.
std::string RunName(pid_t pid);
// Whether the agent process a run directory is named after still runs: a
// second agent with the same id on this host must not kill the first's tasks.
bool RunIsLive(absl::string_view name);

// mkdir that accepts an existing directory.
absl::Status MakeDir(const std::string& path);
std::vector<std::string> SubDirs(const std::string& path);

}  // namespace taskgrid::cgroup_fs

#endif  // TASKGRID_SERVICES_AGENT_CGROUP_FS_H_
