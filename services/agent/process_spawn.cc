#include "services/agent/process_spawn.h"

#include <fcntl.h>
#include <pwd.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace taskgrid {
namespace {

constexpr char kDefaultPath[] = "/usr/local/bin:/usr/bin:/bin";
constexpr char kSetpriv[] = "/usr/bin/setpriv";  // util-linux, on every Debian.


// The child dup2s our pipe ends onto 0, 1 and 2. If the agent
// runs with one of those closed, pipe2 could hand out such a number and an
// earlier dup2 would clobber a later source, so keep every end above 2.
absl::Status MoveAboveStdio(UniqueFd& fd) {
  if (fd.get() > 2) return absl::OkStatus();
  const int moved = fcntl(fd.get(), F_DUPFD_CLOEXEC, 3);
  if (moved < 0) return ErrnoError("fcntl(F_DUPFD_CLOEXEC)", errno);
  fd = UniqueFd(moved);
  return absl::OkStatus();
}

absl::Status MakePipe(UniqueFd& read_end, UniqueFd& write_end) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return ErrnoError("pipe2", errno);
  read_end = UniqueFd(fds[0]);
  write_end = UniqueFd(fds[1]);
  if (absl::Status s = MoveAboveStdio(read_end); !s.ok()) return s;
  return MoveAboveStdio(write_end);
}

absl::Status SetNonBlocking(const UniqueFd& fd) {
  const int flags = fcntl(fd.get(), F_GETFL);
  if (flags < 0 || fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return ErrnoError("fcntl(O_NONBLOCK)", errno);
  }
  return absl::OkStatus();
}

// A failed chdir in the child would look like a missing program, so the
// directory is checked up front to name the culprit.
absl::Status CheckCwd(const std::string& cwd) {
  if (cwd.empty()) return absl::OkStatus();
  struct stat st;
  int err = 0;
  if (stat(cwd.c_str(), &st) != 0) {
    err = errno;
  } else if (!S_ISDIR(st.st_mode)) {
    err = ENOTDIR;
  } else if (faccessat(AT_FDCWD, cwd.c_str(), X_OK, AT_EACCESS) != 0) {
    err = errno;
  }
  if (err == 0) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("cwd \"", cwd, "\" is not accessible: ", ErrnoText(err)));
}

// The task must see the PATH of its own environment, not the agent's, so
// this mirrors execvp's search over it.
absl::StatusOr<std::string> ResolveProgram(const ProcessSpec& spec) {
  const std::string& name = spec.argv[0];
  if (name.empty()) return absl::NotFoundError("program name is empty");
  if (absl::StrContains(name, '/')) return name;  // execve reports errors

  absl::string_view path = kDefaultPath;
  for (const std::string& entry : spec.env) {
    if (absl::StartsWith(entry, "PATH=")) {
      path = absl::string_view(entry).substr(5);
      break;  // getenv semantics: the first definition wins
    }
  }
  bool saw_denied = false;
  for (absl::string_view dir : absl::StrSplit(path, ':')) {
    // An empty entry means the current directory; "./" keeps the result from
    // being taken for a bare name.
    std::string candidate = dir.empty() ? absl::StrCat("./", name) : absl::StrCat(dir, "/", name);
    // Relative entries resolve in the child, i.e. after the chdir.
    const std::string probe = candidate[0] != '/' && !spec.cwd.empty()
                                  ? absl::StrCat(spec.cwd, "/", candidate)
                                  : candidate;
    struct stat st;
    if (stat(probe.c_str(), &st) != 0) {
      if (errno == EACCES) saw_denied = true;
      continue;
    }
    if (!S_ISREG(st.st_mode) || faccessat(AT_FDCWD, probe.c_str(), X_OK, AT_EACCESS) != 0) {
      saw_denied = true;  // like execvp: keep looking, remember the EACCES
      continue;
    }
    return candidate;
  }
  if (saw_denied) {
    return absl::PermissionDeniedError(
        absl::StrCat("program \"", name, "\" found in PATH=", path, " but not executable"));
  }
  return absl::NotFoundError(absl::StrCat("program \"", name, "\" not found in PATH=", path));
}

absl::Status SpawnError(int err, const std::string& program) {
  std::string message = absl::StrCat("cannot start \"", program, "\": ", ErrnoText(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(message);
    case EACCES:
    case ENOTDIR:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

// Signals the agent ignores: ignored dispositions survive execve, so the
// child resets them (handlers are reset by execve itself). Taken once, after
// the runner set SIGPIPE to SIG_IGN; SIGPIPE is always among them.
const std::vector<int>& IgnoredSignals() {
  static const std::vector<int>* const ignored = [] {
    auto* signals = new std::vector<int>{SIGPIPE};
    for (int sig = 1; sig < NSIG; ++sig) {
      struct sigaction sa;
      if (sig != SIGPIPE && sigaction(sig, nullptr, &sa) == 0 && sa.sa_handler == SIG_IGN) {
        signals->push_back(sig);
      }
    }
    return signals;
  }();
  return *ignored;
}

// Everything the child needs, prepared by the parent: between vfork and
// execve the child shares the parent's memory, so it only makes system calls.
struct ChildPlan {
  const char* program = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  int stdio[3] = {-1, -1, -1};  // all above 2
  const char* cwd = nullptr;
  // cgroup.procs of the task's cgroups (its v2 one, then its limits').
  const int* cgroup_procs = nullptr;
  size_t cgroup_count = 0;
  const std::vector<int>* ignored = nullptr;
};

// How the child failed before its program ran; written by the child into
// the parent's memory, read once vfork returns.
struct ChildFailure {
  enum Step { kNone, kCgroup, kExec };
  volatile int err = 0;
  volatile int step = kNone;
};

[[noreturn]] void RunChild(const ChildPlan& plan, ChildFailure& failure) {
  auto fail = [&failure](ChildFailure::Step step) {
    failure.err = errno;
    failure.step = step;
  };
  // Enter the cgroups first, so whatever the task starts is in them.
  for (size_t i = 0; i < plan.cgroup_count; ++i) {
    if (write(plan.cgroup_procs[i], "0", 1) != 1) {
      fail(ChildFailure::kCgroup);
      _exit(127);
    }
  }
  setsid();
  for (int fd = 0; fd < 3; ++fd) {
    if (dup2(plan.stdio[fd], fd) < 0) {
      fail(ChildFailure::kExec);
      _exit(127);
    }
  }
  if (plan.cwd != nullptr && chdir(plan.cwd) != 0) {
    fail(ChildFailure::kExec);
    _exit(127);
  }
  // Descriptors the agent leaked without O_CLOEXEC stay out of the task.
  syscall(SYS_close_range, 3U, ~0U, 0U);
  for (int sig : *plan.ignored) signal(sig, SIG_DFL);
  sigset_t empty;
  sigemptyset(&empty);
  sigprocmask(SIG_SETMASK, &empty, nullptr);
  execve(plan.program, plan.argv, plan.envp);
  fail(ChildFailure::kExec);
  _exit(127);
}

// vfork: the parent waits until the child has exec'd or failed, without
// copying the agent's page tables. Signals stay blocked meanwhile so no
// handler of the agent's runs on the child's side. Returns -errno on failure.
__attribute__((noinline)) pid_t StartChild(const ChildPlan& plan, ChildFailure& failure) {
  sigset_t all;
  sigset_t old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = vfork();
  if (pid == 0) RunChild(plan, failure);
  const int err = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return pid < 0 ? -err : pid;
}

}  // namespace

void UniqueFd::Reset() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

std::string ErrnoText(int err) {
  char buf[256];
  // GNU strerror_r (g++ always defines _GNU_SOURCE): thread-safe, unlike
  // strerror, and may return a static string instead of filling `buf`.
  return strerror_r(err, buf, sizeof(buf));
}

absl::Status ErrnoError(absl::string_view what, int err) {
  return absl::InternalError(absl::StrCat(what, ": ", ErrnoText(err)));
}

absl::StatusOr<RunAs> LookUpRunAs(const std::string& user) {
  if (geteuid() != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("run_as: only an agent running as root can start tasks as ", user));
  }
  if (access(kSetpriv, X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("run_as: ", kSetpriv, " is missing (install util-linux)"));
  }
  passwd pw{};
  passwd* found = nullptr;
  char buf[4096];
  uid_t uid = 0;
  if (absl::SimpleAtoi(user, &uid)) {
    getpwuid_r(uid, &pw, buf, sizeof(buf), &found);
  } else {
    getpwnam_r(user.c_str(), &pw, buf, sizeof(buf), &found);
  }
  if (found == nullptr) return absl::NotFoundError(absl::StrCat("run_as: no user ", user));
  return RunAs{found->pw_uid, found->pw_gid};
}

absl::StatusOr<SpawnedProcess> SpawnProcess(const ProcessSpec& spec,
                                            const std::optional<RunAs>& run_as,
                                            const std::vector<int>& cgroup_procs_fds) {
  if (spec.argv.empty()) return absl::InvalidArgumentError("argv is empty");
  if (absl::Status s = CheckCwd(spec.cwd); !s.ok()) return s;
  absl::StatusOr<std::string> program = ResolveProgram(spec);
  if (!program.ok()) return program.status();

  UniqueFd stdin_r, stdin_w, stdout_r, stdout_w, stderr_r, stderr_w;
  absl::Status pipes = MakePipe(stdin_r, stdin_w);
  if (pipes.ok()) pipes = MakePipe(stdout_r, stdout_w);
  if (pipes.ok()) pipes = MakePipe(stderr_r, stderr_w);
  if (!pipes.ok()) return pipes;
  // Our ends only: the child gets ordinary blocking pipes.
  for (const UniqueFd* fd : {&stdin_w, &stdout_r, &stderr_r}) {
    if (absl::Status s = SetNonBlocking(*fd); !s.ok()) return s;
  }

  // execve takes char* const[]; it does not write through them.
  std::vector<std::string> wrapper;
  if (run_as) {
    // setpriv changes user and group, then execs the program in the same
    // process: its pid, session, process group and cgroup stay the task's.
    wrapper = {kSetpriv, absl::StrCat("--reuid=", run_as->uid),
               absl::StrCat("--regid=", run_as->gid), "--clear-groups", "--", *program};
    program = std::string(kSetpriv);
  }
  std::vector<char*> argv;
  argv.reserve(wrapper.size() + spec.argv.size() + 1);
  for (const std::string& arg : wrapper) argv.push_back(const_cast<char*>(arg.c_str()));
  for (size_t i = run_as ? 1 : 0; i < spec.argv.size(); ++i) {
    argv.push_back(const_cast<char*>(spec.argv[i].c_str()));
  }
  argv.push_back(nullptr);
  std::vector<char*> envp;
  envp.reserve(spec.env.size() + 1);
  for (const std::string& var : spec.env) envp.push_back(const_cast<char*>(var.c_str()));
  envp.push_back(nullptr);

  ChildPlan plan;
  plan.program = program->c_str();
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.stdio[0] = stdin_r.get();
  plan.stdio[1] = stdout_w.get();
  plan.stdio[2] = stderr_w.get();
  plan.cwd = spec.cwd.empty() ? nullptr : spec.cwd.c_str();
  plan.cgroup_procs = cgroup_procs_fds.data();
  plan.cgroup_count = cgroup_procs_fds.size();
  plan.ignored = &IgnoredSignals();
  ChildFailure failure;
  const pid_t pid = StartChild(plan, failure);
  if (pid < 0) return ErrnoError("vfork", -pid);
  stdin_r.Reset();
  stdout_w.Reset();
  stderr_w.Reset();
  if (failure.err != 0) {
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    if (failure.step == ChildFailure::kCgroup) {
      return ErrnoError("cannot enter the task's cgroup", failure.err);
    }
    return SpawnError(failure.err, spec.argv[0]);
  }

  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd.valid()) {
    const int pidfd_err = errno;
    kill(-pid, SIGKILL);  // unreaped, so the pgid is still ours
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return ErrnoError("pidfd_open", pidfd_err);
  }
  // With nothing to feed, the child sees end of file right away.
  if (spec.stdin_data.empty()) stdin_w.Reset();

  SpawnedProcess spawned;
  spawned.pid = pid;
  spawned.pidfd = std::move(pidfd);
  spawned.stdin_w = std::move(stdin_w);
  spawned.stdout_r = std::move(stdout_r);
  spawned.stderr_r = std::move(stderr_r);
  return spawned;
}

}  // namespace taskgrid
