#include "services/agent/task_limits.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "services/agent/cgroup_fs.h"

namespace taskgrid {
namespace {

using cgroup_fs::MakeDir;
using cgroup_fs::ReadSmallFile;
using cgroup_fs::SubDirs;
using cgroup_fs::WriteFile;

constexpr int64_t kCpuPeriodUsec = 100'000;
// The kernel's least CFS quota.
constexpr int64_t kMinCpuQuotaUsec = 1'000;
// A v1 directory can be busy a moment after its last process was reaped.
constexpr absl::Duration kRemoveWait = absl::Milliseconds(100);

// "name value" from a flat-keyed cgroup file; -1 when absent.
int64_t KeyedValue(const std::string& path, absl::string_view key) {
  for (absl::string_view line :
       absl::StrSplit(ReadSmallFile(path).value_or(""), '\n', absl::SkipEmpty())) {
    int64_t value = 0;
    if (absl::ConsumePrefix(&line, key) && absl::ConsumePrefix(&line, " ") &&
        absl::SimpleAtoi(line, &value)) {
      return value;
    }
  }
  return -1;
}

bool RemoveDir(const std::string& path) {
  const absl::Time deadline = absl::Now() + kRemoveWait;
  for (;;) {
    if (rmdir(path.c_str()) == 0 || errno == ENOENT) return true;
    if (errno != EBUSY || absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
}

}  // namespace

std::vector<int> TaskLimitCgroup::procs_fds() const {
  std::vector<int> fds;
  for (const Dir& d : dirs_) fds.push_back(d.procs.get());
  return fds;
}

int64_t TaskLimitCgroup::memory_peak_bytes() const {
  if (memory_.empty()) return 0;
  int64_t peak = 0;
  const std::string text =
      ReadSmallFile(memory_ + "/memory.max_usage_in_bytes").value_or("");
  return absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &peak) ? peak : 0;
}

bool TaskLimitCgroup::oom_killed() const {
  return !memory_.empty() && KeyedValue(memory_ + "/memory.oom_control", "oom_kill") > 0;
}

void TaskLimitCgroup::Remove() {
  for (Dir& d : dirs_) {
    d.procs.Reset();
    RemoveDir(d.path);
  }
  dirs_.clear();
  memory_.clear();
}

std::unique_ptr<TaskLimits> TaskLimits::Open(absl::string_view agent_dir, absl::string_view run) {
  std::vector<Hierarchy> found;
  for (const char* controller : {"memory", "cpu", "pids"}) {
    const std::string mount = cgroup_fs::V1Mount(controller);
    const std::string own = cgroup_fs::OwnV1Path(controller);
    if (mount.empty() || own.empty()) continue;
    const std::string base = own == "/" ? mount : absl::StrCat(mount, own);
    Hierarchy h{controller, absl::StrCat(base, "/", agent_dir), ""};
    h.run_path = absl::StrCat(h.agent_path, "/", run);
    if (MakeDir(h.agent_path).ok() && MakeDir(h.run_path).ok()) found.push_back(std::move(h));
  }
  return std::unique_ptr<TaskLimits>(new TaskLimits(std::move(found)));
}

TaskLimits::~TaskLimits() {
  for (const Hierarchy& h : hierarchies_) {
    for (const std::string& name : SubDirs(h.run_path)) {
      rmdir(absl::StrCat(h.run_path, "/", name).c_str());
    }
    // The agent's directory goes with its last run.
    if (rmdir(h.run_path.c_str()) == 0) rmdir(h.agent_path.c_str());
  }
}

const TaskLimits::Hierarchy* TaskLimits::Find(absl::string_view controller) const {
  for (const Hierarchy& h : hierarchies_) {
    if (h.controller == controller) return &h;
  }
  return nullptr;
}

absl::StatusOr<TaskLimitCgroup> TaskLimits::Create(const ProcessLimits& limits,
                                                   absl::string_view name) const {
  TaskLimitCgroup made;
  const int64_t quota = std::max<int64_t>(
      kMinCpuQuotaUsec, std::llround(limits.cpus * static_cast<double>(kCpuPeriodUsec)));
  struct Setting {
    const char* controller;
    const char* what;
    bool wanted;
    std::vector<std::pair<const char*, std::string>> files;
  };
  const Setting settings[] = {
      {"memory", "memory", limits.memory_bytes > 0,
       {{"memory.limit_in_bytes", absl::StrCat(limits.memory_bytes)}}},
      {"cpu", "CPU time", limits.cpus > 0,
       {{"cpu.cfs_period_us", absl::StrCat(kCpuPeriodUsec)},
        {"cpu.cfs_quota_us", absl::StrCat(quota)}}},
      {"pids", "processes", limits.pids > 0, {{"pids.max", absl::StrCat(limits.pids)}}},
  };
  for (const Setting& s : settings) {
    if (!s.wanted) continue;
    const Hierarchy* h = Find(s.controller);
    if (h == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot limit the task's ", s.what, ": this host has no ", s.controller,
          " cgroup controller the agent can use (cgroup v2 delegates none, and no v1 ",
          s.controller, " hierarchy it may write is mounted)"));
    }
    const std::string path = absl::StrCat(h->run_path, "/", name);
    // One left by a task whose processes would not die is removed first.
    if (!RemoveDir(path) || mkdir(path.c_str(), 0755) != 0) {
      return ErrnoError(absl::StrCat("mkdir ", path), errno);
    }
    made.dirs_.push_back({path, UniqueFd()});
    for (const auto& [file, value] : s.files) {
      if (absl::Status w = WriteFile(path, file, value); !w.ok()) return w;
    }
    if (absl::string_view(s.controller) == "memory") {
      made.memory_ = path;
      made.memory_limit_ = limits.memory_bytes;
      // With swap, the limit covers it too (the file exists only then).
      (void)WriteFile(path, "memory.memsw.limit_in_bytes", absl::StrCat(limits.memory_bytes));
    }
    made.dirs_.back().procs = cgroup_fs::OpenIn(path, "cgroup.procs", O_WRONLY);
    if (!made.dirs_.back().procs.valid()) {
      return ErrnoError(absl::StrCat("open ", path, "/cgroup.procs"), errno);
    }
  }
  return made;
}

std::vector<std::string> TaskLimits::run_paths() const {
  std::vector<std::string> paths;
  for (const Hierarchy& h : hierarchies_) paths.push_back(h.run_path);
  return paths;
}

void TaskLimits::SweepEarlierRuns() const {
  for (const Hierarchy& h : hierarchies_) {
    for (const std::string& run : SubDirs(h.agent_path)) {
      if (cgroup_fs::RunIsLive(run)) continue;
      const std::string run_path = absl::StrCat(h.agent_path, "/", run);
      for (const std::string& name : SubDirs(run_path)) {
        RemoveDir(absl::StrCat(run_path, "/", name));
      }
      rmdir(run_path.c_str());
    }
  }
}

}  // namespace taskgrid
