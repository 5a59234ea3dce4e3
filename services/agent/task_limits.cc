#include "services/agent/task_limits.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
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

// The v1 controller of each limit, and the name the limit goes by.
constexpr std::pair<const char*, const char*> kControllers[] = {
    {"memory", "memory"}, {"cpu", "cpus"}, {"pids", "pids"}};

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

int64_t FileValue(const std::string& path) {
  int64_t value = 0;
  const std::string text = ReadSmallFile(path).value_or("");
  return absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &value) ? value : 0;
}

}  // namespace

TaskLimitCgroup& TaskLimitCgroup::operator=(TaskLimitCgroup&& other) noexcept {
  if (this != &other) {
    Remove();
    dirs_ = std::move(other.dirs_);
    memory_ = std::move(other.memory_);
    memory_limit_ = other.memory_limit_;
    other.dirs_.clear();
  }
  return *this;
}

std::vector<int> TaskLimitCgroup::procs_fds() const {
  std::vector<int> fds;
  for (const Dir& d : dirs_) fds.push_back(d.procs.get());
  return fds;
}

int64_t TaskLimitCgroup::memory_peak_bytes() const {
  return memory_.empty() ? 0 : FileValue(memory_ + "/memory.max_usage_in_bytes");
}

bool TaskLimitCgroup::oom_killed() const {
  // The global OOM killer counts in oom_kill too: only a cgroup whose peak
  // reached its limit was killed at it. (failcnt cannot tell: with swap
  // accounting on, neither count moves.)
  return !memory_.empty() && KeyedValue(memory_ + "/memory.oom_control", "oom_kill") > 0 &&
         memory_peak_bytes() >= memory_limit_ - memory_limit_ / 32;
}

void TaskLimitCgroup::Remove() {
  for (Dir& d : dirs_) {
    d.procs.Reset();
    rmdir(d.path.c_str());
  }
  dirs_.clear();
  memory_.clear();
}

std::unique_ptr<TaskLimits> TaskLimits::Open(absl::string_view agent_dir, absl::string_view run) {
  std::vector<Hierarchy> found;
  for (auto [controller, limit] : kControllers) {
    const std::string own = cgroup_fs::OwnV1Dir(controller);
    if (own.empty()) continue;
    const std::string agent_path = absl::StrCat(own, "/", agent_dir);
    // Controllers mounted together share one directory.
    auto same = std::find_if(found.begin(), found.end(),
                             [&](const Hierarchy& h) { return h.agent_path == agent_path; });
    if (same != found.end()) {
      same->controllers.push_back(controller);
      continue;
    }
    Hierarchy h{{controller}, agent_path, absl::StrCat(agent_path, "/", run)};
    absl::Status made = MakeDir(h.agent_path);
    if (made.ok()) made = MakeDir(h.run_path);
    if (!made.ok()) {
      spdlog::warn("agent_limit_unavailable limit={} reason=\"{}\"", limit,
                   std::string(made.message()));
      continue;
    }
    found.push_back(std::move(h));
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
    if (std::find(h.controllers.begin(), h.controllers.end(), controller) != h.controllers.end()) {
      return &h;
    }
  }
  return nullptr;
}

std::vector<std::string> TaskLimits::enforced() const {
  std::vector<std::string> limits;
  for (auto [controller, limit] : kControllers) {
    if (Find(controller) != nullptr) limits.push_back(limit);
  }
  return limits;
}

absl::StatusOr<TaskLimitCgroup> TaskLimits::Create(const ProcessLimits& limits) {
  const int64_t quota = std::max<int64_t>(
      kMinCpuQuotaUsec, std::llround(limits.cpus * static_cast<double>(kCpuPeriodUsec)));
  struct Setting {
    const char* controller;
    const char* what;
    bool wanted;
    std::vector<std::pair<const char*, std::string>> files;
  };
  // The cpu one last: the child enters them in this order, and its quota
  // throttles the rest of the spawn, in which the agent's thread waits.
  const Setting settings[] = {
      {"memory", "memory", limits.memory_bytes > 0,
       {{"memory.limit_in_bytes", absl::StrCat(limits.memory_bytes)}}},
      {"pids", "processes", limits.pids > 0, {{"pids.max", absl::StrCat(limits.pids)}}},
      {"cpu", "CPU time", limits.cpus > 0,
       {{"cpu.cfs_period_us", absl::StrCat(kCpuPeriodUsec)},
        {"cpu.cfs_quota_us", absl::StrCat(quota)}}},
  };
  // A name of its own: one a task whose processes would not die left is
  // skipped, never reused.
  std::string name;
  TaskLimitCgroup made;
  for (const Setting& s : settings) {
    if (!s.wanted) continue;
    const Hierarchy* h = Find(s.controller);
    if (h == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot limit the task's ", s.what, ": the agent sets limits in the cgroup v1 ",
          s.controller,
          " hierarchy, and none it may write is mounted here"));
    }
    std::string path;
    auto dir = std::find_if(made.dirs_.begin(), made.dirs_.end(), [&](const auto& d) {
      return absl::StartsWith(d.path, h->run_path + "/");
    });
    if (dir != made.dirs_.end()) {
      path = dir->path;  // a hierarchy mounted with another of its controllers
    } else {
      for (;;) {
        if (name.empty()) name = absl::StrCat("limit-", next_id_.fetch_add(1));
        path = absl::StrCat(h->run_path, "/", name);
        if (mkdir(path.c_str(), 0755) == 0) break;
        if (errno != EEXIST) return ErrnoError(absl::StrCat("mkdir ", path), errno);
        name.clear();
      }
      made.dirs_.push_back({path, cgroup_fs::OpenIn(path, "cgroup.procs", O_WRONLY)});
      if (!made.dirs_.back().procs.valid()) {
        return ErrnoError(absl::StrCat("open ", path, "/cgroup.procs"), errno);
      }
    }
    for (const auto& [file, value] : s.files) {
      if (absl::Status w = WriteFile(path, file, value); !w.ok()) return w;
    }
    if (absl::string_view(s.controller) == "memory") {
      made.memory_ = path;
      made.memory_limit_ = limits.memory_bytes;
      // With swap, the limit covers it too (the file exists only then).
      (void)WriteFile(path, "memory.memsw.limit_in_bytes", absl::StrCat(limits.memory_bytes));
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
        rmdir(absl::StrCat(run_path, "/", name).c_str());
      }
      rmdir(run_path.c_str());
    }
  }
}

}  // namespace taskgrid
