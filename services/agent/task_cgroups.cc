#include "services/agent/task_cgroups.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

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
using cgroup_fs::OpenIn;
using cgroup_fs::ReadSmallFile;
using cgroup_fs::RunName;
using cgroup_fs::SafeName;
using cgroup_fs::SubDirs;

constexpr absl::Duration kKillWait = absl::Seconds(1);
// Idle cgroups kept for reuse; more than a busy agent's slots is waste.
constexpr size_t kMaxIdle = 64;
constexpr char kTaskAttribute[] = "user.taskgrid.task";
constexpr absl::Duration kKillPoll = absl::Milliseconds(5);

// Kills this run's cgroups once its stdin (a pipe only the agent holds) ends,
// then removes the run's directories (the v2 one, then the limits' v1 ones
// given after it) and, when no other run has one, the agent's.
constexpr char kGuardianScript[] = R"(cat >/dev/null
for d in "$1"/*/; do [ -d "$d" ] && echo 1 >"${d}cgroup.kill"; done
n=0
while [ $n -lt 200 ]; do
  left=0
  for run in "$@"; do
    for d in "$run"/*/; do [ -d "$d" ] && { rmdir "$d" || left=1; }; done
  done
  [ $left = 0 ] && break
  sleep 0.005; n=$((n+1))
done
for run in "$@"; do rmdir "$run" && rmdir "${run%/*}"; done)";

}  // namespace

TaskCgroup::TaskCgroup(std::string path, UniqueFd procs)
    : path_(std::move(path)), procs_(std::move(procs)) {}

absl::Status TaskCgroup::Kill() const {
  UniqueFd fd = OpenIn(path_, "cgroup.kill", O_WRONLY);
  if (!fd.valid()) return ErrnoError(absl::StrCat("open ", path_, "/cgroup.kill"), errno);
  if (write(fd.get(), "1", 1) != 1) {
    return ErrnoError(absl::StrCat("write ", path_, "/cgroup.kill"), errno);
  }
  return absl::OkStatus();
}

bool TaskCgroup::Populated() const {
  // One that cannot be read may hold anything: callers then kill and count.
  const std::optional<std::string> events = ReadSmallFile(path_ + "/cgroup.events", events_.get());
  return !events || absl::StrContains(*events, "populated 1");
}

std::vector<pid_t> TaskCgroup::Pids() const {
  std::vector<pid_t> pids;
  for (absl::string_view line :
       absl::StrSplit(ReadSmallFile(path_ + "/cgroup.procs").value_or(""), '\n',
                      absl::SkipEmpty())) {
    pid_t pid = 0;
    if (absl::SimpleAtoi(line, &pid)) pids.push_back(pid);
  }
  return pids;
}

void TaskCgroup::Terminate() const {
  for (pid_t pid : Pids()) kill(pid, SIGTERM);
}

absl::Duration TaskCgroup::CpuSinceCreated() const {
  const std::string stat = ReadSmallFile(path_ + "/cpu.stat", cpu_stat_.get()).value_or("");
  for (absl::string_view line : absl::StrSplit(stat, '\n', absl::SkipEmpty())) {
    int64_t usec = 0;
    if (absl::ConsumePrefix(&line, "usage_usec ") && absl::SimpleAtoi(line, &usec)) {
      return absl::Microseconds(usec);
    }
  }
  return absl::ZeroDuration();
}

std::vector<int> TaskCgroup::procs_fds() const {
  std::vector<int> fds = {procs_.get()};
  if (limits_) {
    for (int fd : limits_->procs_fds()) fds.push_back(fd);
  }
  return fds;
}

CgroupUsage TaskCgroup::Usage() const {
  CgroupUsage usage{std::max(absl::ZeroDuration(), CpuSinceCreated() - cpu_base_)};
  if (limits_) {
    usage.memory_limit_bytes = limits_->memory_limit_bytes();
    usage.memory_peak_bytes = limits_->memory_peak_bytes();
    usage.oom_killed = limits_->oom_killed();
  }
  return usage;
}

absl::Status TaskCgroup::Remove() {
  limits_.reset();
  procs_.Reset();
  events_.Reset();
  cpu_stat_.Reset();
  if (rmdir(path_.c_str()) != 0 && errno != ENOENT) {
    return ErrnoError(absl::StrCat("rmdir ", path_), errno);
  }
  return absl::OkStatus();
}

void TaskCgroup::Release() {
  TaskCgroups* const pool = std::exchange(pool_, nullptr);
  if (pool != nullptr && !Populated()) {
    limits_.reset();  // the next task has its own, or none
    return pool->Recycle(std::move(*this));
  }
  // Left for the guardian or the next run's sweep if it will not empty.
  (void)Kill();
  (void)Remove();
}

TaskCgroups::TaskCgroups(std::string agent_path, std::string run_path,
                         std::unique_ptr<TaskLimits> limits)
    : agent_path_(std::move(agent_path)),
      run_path_(std::move(run_path)),
      limits_(std::move(limits)) {}

TaskCgroups::~TaskCgroups() {
  {
    absl::MutexLock lock(&mu_);
    for (TaskCgroup& idle : idle_) (void)idle.Remove();
    idle_.clear();
  }
  // And those killed earlier that have emptied since.
  for (const std::string& name : SubDirs(run_path_)) {
    rmdir(absl::StrCat(run_path_, "/", name).c_str());
  }
  guardian_pipe_.Reset();  // the guardian, if any, removes the directories too
  // The agent's directory goes with its last run.
  if (rmdir(run_path_.c_str()) == 0) rmdir(agent_path_.c_str());
}

absl::StatusOr<std::unique_ptr<TaskCgroups>> TaskCgroups::Open(absl::string_view root,
                                                               absl::string_view agent_id) {
  const std::string mount = cgroup_fs::V2Mount();
  if (mount.empty()) return absl::FailedPreconditionError("no cgroup2 file system is mounted");
  std::string base = root.empty() ? cgroup_fs::OwnV2Path() : std::string(root);
  if (!absl::StartsWith(base, "/")) {
    return absl::InvalidArgumentError(
        absl::StrCat("cgroup_root: \"", base, "\" is not an absolute cgroup path"));
  }
  if (base == "/") base.clear();
  const std::string agent_path = absl::StrCat(mount, base, "/taskgrid-", SafeName(agent_id));
  const std::string run_path = absl::StrCat(agent_path, "/", RunName(getpid()));
  for (const std::string& dir : {absl::StrCat(mount, base), agent_path, run_path}) {
    if (absl::Status s = MakeDir(dir); !s.ok()) return s;
  }
  return std::unique_ptr<TaskCgroups>(new TaskCgroups(
      agent_path, run_path,
      TaskLimits::Open(absl::StrCat("taskgrid-", SafeName(agent_id)), RunName(getpid()))));
}

absl::StatusOr<TaskCgroup> TaskCgroups::Make() {
  // One left by a task whose processes would not die keeps its name.
  std::string path;
  for (;;) {
    path = absl::StrCat(run_path_, "/task-", next_id_.fetch_add(1));
    if (mkdir(path.c_str(), 0755) == 0) break;
    if (errno != EEXIST) return ErrnoError(absl::StrCat("mkdir ", path), errno);
  }
  TaskCgroup cgroup(path, UniqueFd());
  for (auto [fd, file, flags] : {std::tuple{&cgroup.procs_, "cgroup.procs", O_WRONLY},
                                 std::tuple{&cgroup.events_, "cgroup.events", O_RDONLY},
                                 std::tuple{&cgroup.cpu_stat_, "cpu.stat", O_RDONLY}}) {
    *fd = OpenIn(path, file, flags);
    if (!fd->valid()) {
      const int err = errno;
      (void)cgroup.Remove();
      return ErrnoError(absl::StrCat("open ", path, "/", file), err);
    }
  }
  return cgroup;
}

absl::StatusOr<TaskCgroup> TaskCgroups::Create(absl::string_view name,
                                               const ProcessLimits& limits) {
  std::optional<TaskCgroup> cgroup;
  while (!cgroup) {
    {
      absl::MutexLock lock(&mu_);
      if (idle_.empty()) break;
      cgroup.emplace(std::move(idle_.back()));
      idle_.pop_back();
    }
    // A process of the agent's user may have moved itself into an idle
    // cgroup: such a one is killed and left, never handed out.
    if (cgroup->Populated()) {
      cgroup->Release();
      cgroup.reset();
    }
  }
  if (!cgroup) {
    absl::StatusOr<TaskCgroup> made = Make();
    if (!made.ok()) return made.status();
    cgroup.emplace(std::move(*made));
  }
  cgroup->cpu_base_ = cgroup->CpuSinceCreated();
  // Only the sweep after a crash reads it; without user xattrs on cgroups
  // its report names the cgroup instead of the task.
  if (setxattr(cgroup->path_.c_str(), kTaskAttribute, name.data(), name.size(), 0) != 0) {
    removexattr(cgroup->path_.c_str(), kTaskAttribute);
  }
  cgroup->pool_ = this;
  if (limits.any()) {
    absl::StatusOr<TaskLimitCgroup> limited = limits_->Create(limits);
    if (!limited.ok()) {
      cgroup->Release();
      return limited.status();
    }
    cgroup->limits_.emplace(std::move(*limited));
  }
  return std::move(*cgroup);
}

void TaskCgroups::Recycle(TaskCgroup cgroup) {
  {
    absl::MutexLock lock(&mu_);
    if (idle_.size() < kMaxIdle) {
      idle_.push_back(std::move(cgroup));
      return;
    }
  }
  (void)cgroup.Remove();
}

std::string TaskCgroups::TaskOf(const std::string& path) {
  const ssize_t size = getxattr(path.c_str(), kTaskAttribute, nullptr, 0);
  if (size <= 0) return "";
  std::string name(static_cast<size_t>(size), '\0');
  const ssize_t n = getxattr(path.c_str(), kTaskAttribute, name.data(), name.size());
  name.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return name;
}

std::vector<TaskCgroups::Swept> TaskCgroups::SweepEarlierRuns() {
  std::vector<Swept> swept;
  std::vector<std::string> runs;
  std::vector<TaskCgroup> left;
  for (const std::string& run : SubDirs(agent_path_)) {
    if (cgroup_fs::RunIsLive(run)) continue;  // this run, or another agent process with our id
    const std::string run_path = absl::StrCat(agent_path_, "/", run);
    runs.push_back(run_path);
    for (const std::string& name : SubDirs(run_path)) {
      TaskCgroup cgroup(absl::StrCat(run_path, "/", name), UniqueFd());
      const size_t processes = cgroup.Pids().size();
      if (processes > 0) {
        // Any process of the agent's user can write the attribute.
        const std::string task = SafeName(TaskOf(cgroup.path()));
        swept.push_back({task == "_" ? name : task, static_cast<int>(processes)});
        (void)cgroup.Kill();
      }
      left.push_back(std::move(cgroup));
    }
  }
  const absl::Time deadline = absl::Now() + kKillWait;
  for (TaskCgroup& cgroup : left) {
    while (cgroup.Populated() && absl::Now() < deadline) absl::SleepFor(kKillPoll);
    (void)cgroup.Remove();
  }
  for (const std::string& run : runs) rmdir(run.c_str());
  limits_->SweepEarlierRuns();
  return swept;
}

absl::Status TaskCgroups::StartGuardian() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return ErrnoError("pipe2", errno);
  UniqueFd read_end(fds[0]);
  guardian_pipe_ = UniqueFd(fds[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, read_end.get(), 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty_mask;
  sigset_t all_signals;
  sigemptyset(&empty_mask);
  sigfillset(&all_signals);
  // Its own session: a terminal's ^C for the agent must not stop it first.
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setsigmask(&attr, &empty_mask);
  posix_spawnattr_setsigdefault(&attr, &all_signals);
  std::vector<std::string> args = {"/bin/sh", "-c", kGuardianScript, "taskgrid-agent-guardian",
                                   run_path_};
  for (std::string& path : limits_->run_paths()) args.push_back(std::move(path));
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  char* envp[] = {const_cast<char*>("PATH=/usr/bin:/bin"), nullptr};
  pid_t pid = 0;
  const int err = posix_spawn(&pid, "/bin/sh", &actions, &attr, argv.data(), envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) {
    guardian_pipe_.Reset();
    return ErrnoError("cannot start the cgroup guardian", err);
  }
  return absl::OkStatus();
}

}  // namespace taskgrid
