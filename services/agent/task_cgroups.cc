#include "services/agent/task_cgroups.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace taskgrid {
namespace {

constexpr absl::Duration kKillWait = absl::Seconds(1);
constexpr absl::Duration kKillPoll = absl::Milliseconds(5);

// Kills this run's cgroups once its stdin (a pipe only the agent holds) ends,
// then removes the run's directory and, when no other run has one, the
// agent's.
constexpr char kGuardianScript[] = R"(cat >/dev/null
run=$1
for d in "$run"/*/; do [ -d "$d" ] && echo 1 >"${d}cgroup.kill"; done
n=0
while [ $n -lt 200 ]; do
  left=0
  for d in "$run"/*/; do [ -d "$d" ] && { rmdir "$d" || left=1; }; done
  [ $left = 0 ] && break
  sleep 0.005; n=$((n+1))
done
rmdir "$run" && rmdir "${run%/*}")";

absl::Status ErrnoError(absl::string_view what, int err) {
  return absl::InternalError(absl::StrCat(what, ": ", ErrnoText(err)));
}

std::string ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Where cgroup2 is mounted, from /proc/self/mountinfo ("" when it is not).
std::string Cgroup2Mount() {
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    // id parent dev root mountpoint options [optional...] - fstype source ...
    const size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    const std::vector<std::string> after = absl::StrSplit(line.substr(dash + 3), ' ');
    if (after.empty() || after[0] != "cgroup2") continue;
    const std::vector<std::string> before = absl::StrSplit(line.substr(0, dash), ' ');
    if (before.size() >= 5) return before[4];
  }
  return "";
}

// The agent's own cgroup v2 path ("0::/path" in /proc/self/cgroup).
std::string OwnCgroup() {
  std::ifstream in("/proc/self/cgroup");
  for (std::string line; std::getline(in, line);) {
    if (absl::StartsWith(line, "0::")) return line.substr(3);
  }
  return "/";
}

// A path component made of safe characters only.
std::string SafeName(absl::string_view name) {
  std::string out(name);
  for (char& c : out) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') {
      c = '_';
    }
  }
  return out.empty() ? std::string("_") : out;
}

// Field 22 of /proc/<pid>/stat: when the process started, in clock ticks
// since boot. With the pid it names one process, even after pid reuse.
std::string StartTime(pid_t pid) {
  const std::string stat = ReadSmallFile(absl::StrCat("/proc/", pid, "/stat"));
  const size_t comm_end = stat.rfind(')');  // comm may hold spaces
  if (comm_end == std::string::npos) return "";
  const std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(stat).substr(comm_end + 2), ' ');
  return fields.size() > 19 ? std::string(fields[19]) : "";
}

// "run-<pid>-<start time>": one agent process.
std::string RunName(pid_t pid) { return absl::StrCat("run-", pid, "-", StartTime(pid)); }

// Whether the agent process a run directory is named after still runs: a
// second agent with the same id on this host must not kill the first's tasks.
bool RunIsLive(absl::string_view name) {
  const std::vector<absl::string_view> parts = absl::StrSplit(name, '-');
  pid_t pid = 0;
  if (parts.size() != 3 || parts[0] != "run" || !absl::SimpleAtoi(parts[1], &pid)) return false;
  return RunName(pid) == name;
}

absl::Status MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoError(absl::StrCat("mkdir ", path), errno);
  }
  return absl::OkStatus();
}

std::vector<std::string> SubDirs(const std::string& path) {
  std::vector<std::string> names;
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return names;
  while (const dirent* e = readdir(dir)) {
    if (e->d_type == DT_DIR && e->d_name[0] != '.') names.emplace_back(e->d_name);
  }
  closedir(dir);
  return names;
}

}  // namespace

TaskCgroup::TaskCgroup(std::string path, UniqueFd procs)
    : path_(std::move(path)), procs_(std::move(procs)) {}

absl::Status TaskCgroup::Kill() const {
  const std::string file = path_ + "/cgroup.kill";
  const int fd = open(file.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(absl::StrCat("open ", file), errno);
  const bool ok = write(fd, "1", 1) == 1;
  const int err = errno;
  close(fd);
  return ok ? absl::OkStatus() : ErrnoError(absl::StrCat("write ", file), err);
}

bool TaskCgroup::Populated() const {
  // A cgroup that cannot be read (removed) holds nothing.
  return absl::StrContains(ReadSmallFile(path_ + "/cgroup.events"), "populated 1");
}

std::vector<pid_t> TaskCgroup::Pids() const {
  std::vector<pid_t> pids;
  for (absl::string_view line :
       absl::StrSplit(ReadSmallFile(path_ + "/cgroup.procs"), '\n', absl::SkipEmpty())) {
    pid_t pid = 0;
    if (absl::SimpleAtoi(line, &pid)) pids.push_back(pid);
  }
  return pids;
}

void TaskCgroup::Terminate() const {
  for (pid_t pid : Pids()) kill(pid, SIGTERM);
}

CgroupUsage TaskCgroup::Usage() const {
  CgroupUsage usage;
  for (absl::string_view line :
       absl::StrSplit(ReadSmallFile(path_ + "/cpu.stat"), '\n', absl::SkipEmpty())) {
    int64_t usec = 0;
    if (absl::ConsumePrefix(&line, "usage_usec ") && absl::SimpleAtoi(line, &usec)) {
      usage.cpu_time = absl::Microseconds(usec);
    }
  }
  return usage;
}

absl::Status TaskCgroup::Remove() {
  procs_.Reset();
  if (rmdir(path_.c_str()) != 0 && errno != ENOENT) {
    return ErrnoError(absl::StrCat("rmdir ", path_), errno);
  }
  return absl::OkStatus();
}

TaskCgroups::TaskCgroups(std::string agent_path, std::string run_path)
    : agent_path_(std::move(agent_path)), run_path_(std::move(run_path)) {}

TaskCgroups::~TaskCgroups() {
  guardian_pipe_.Reset();  // the guardian, if any, removes the directories too
  // The agent's directory goes with its last run.
  if (rmdir(run_path_.c_str()) == 0) rmdir(agent_path_.c_str());
}

absl::StatusOr<std::unique_ptr<TaskCgroups>> TaskCgroups::Open(absl::string_view root,
                                                               absl::string_view agent_id) {
  const std::string mount = Cgroup2Mount();
  if (mount.empty()) return absl::FailedPreconditionError("no cgroup2 file system is mounted");
  std::string base = root.empty() ? OwnCgroup() : std::string(root);
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
  return std::unique_ptr<TaskCgroups>(new TaskCgroups(agent_path, run_path));
}

absl::StatusOr<TaskCgroup> TaskCgroups::Create(absl::string_view name) {
  std::string path = absl::StrCat(run_path_, "/", SafeName(name));
  if (mkdir(path.c_str(), 0755) != 0) {
    if (errno != EEXIST) return ErrnoError(absl::StrCat("mkdir ", path), errno);
    path = absl::StrCat(path, "-", next_id_.fetch_add(1));
    if (mkdir(path.c_str(), 0755) != 0) return ErrnoError(absl::StrCat("mkdir ", path), errno);
  }
  const std::string procs = path + "/cgroup.procs";
  UniqueFd fd(open(procs.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) {
    const int err = errno;
    rmdir(path.c_str());
    return ErrnoError(absl::StrCat("open ", procs), err);
  }
  return TaskCgroup(std::move(path), std::move(fd));
}

std::vector<TaskCgroups::Swept> TaskCgroups::SweepEarlierRuns() {
  std::vector<Swept> swept;
  std::vector<std::string> runs;
  std::vector<TaskCgroup> left;
  for (const std::string& run : SubDirs(agent_path_)) {
    if (RunIsLive(run)) continue;  // this run, or another agent process with our id
    const std::string run_path = absl::StrCat(agent_path_, "/", run);
    runs.push_back(run_path);
    for (const std::string& name : SubDirs(run_path)) {
      TaskCgroup cgroup(absl::StrCat(run_path, "/", name), UniqueFd());
      const size_t processes = cgroup.Pids().size();
      if (processes > 0) {
        swept.push_back({name, static_cast<int>(processes)});
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
  std::string name = "taskgrid-agent-guardian";
  std::string script = kGuardianScript;
  std::string run = run_path_;
  char* argv[] = {const_cast<char*>("/bin/sh"), const_cast<char*>("-c"), script.data(),
                  name.data(), run.data(), nullptr};
  char* envp[] = {const_cast<char*>("PATH=/usr/bin:/bin"), nullptr};
  pid_t pid = 0;
  const int err = posix_spawn(&pid, "/bin/sh", &actions, &attr, argv, envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) {
    guardian_pipe_.Reset();
    return ErrnoError("cannot start the cgroup guardian", err);
  }
  return absl::OkStatus();
}

}  // namespace taskgrid
