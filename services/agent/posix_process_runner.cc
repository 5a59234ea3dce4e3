// PosixProcessRunner: posix_spawn + one poll() thread per process.
//
// Lifetime of a process as the I/O thread sees it:
//   1. running: poll the pidfd, the wake eventfd, the stdin pipe while data
//      remains, stdout/stderr unless paused; the poll timeout is the SIGKILL
//      deadline set by Terminate().
//   2. main exited (pidfd readable): reap it with wait4, then SIGKILL the
//      group. ESRCH means the group is empty (the common case, no /proc scan);
//      otherwise check /proc until no live member remains (or give up after a
//      second and report survivors) while draining the pipes until EOF.
//   3. call on_exit.
//
// Reaping first is safe for the kill(-pgid) that follows: while any member of
// the group lives, the kernel keeps its id reserved; when none does, the kill
// fails with ESRCH unless the whole pid space wrapped in between.
#include "services/agent/posix_process_runner.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace taskgrid {
namespace {

constexpr size_t kChunkBytes = 64 * 1024;
constexpr char kDefaultPath[] = "/usr/local/bin:/usr/bin:/bin";
constexpr char kSetpriv[] = "/usr/bin/setpriv";  // util-linux, on every Debian.
// How long to keep re-killing the group after the main process exited before
// reporting survivors (a process in uninterruptible sleep dies late).
constexpr absl::Duration kGroupCheckTimeout = absl::Seconds(1);
constexpr absl::Duration kGroupCheckInterval = absl::Milliseconds(10);
// Once the group is gone, only a process that escaped it can still hold the
// pipes open; this bounds how long such a process can delay on_exit.
constexpr absl::Duration kOrphanDrainTimeout = absl::Seconds(1);
// The same bound while the RunningProcess is being destroyed.
constexpr absl::Duration kStopOrphanDrainTimeout = absl::Milliseconds(100);
// poll() is re-armed at least this often so a huge deadline cannot overflow.
constexpr int64_t kMaxPollMs = 60'000;

std::string ErrnoText(int err) {
  char buf[256];
  // GNU strerror_r (g++ always defines _GNU_SOURCE): thread-safe, unlike
  // strerror, and may return a static string instead of filling `buf`.
  return strerror_r(err, buf, sizeof(buf));
}

// Owns a file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

absl::Status ErrnoError(absl::string_view what, int err) {
  return absl::InternalError(absl::StrCat(what, ": ", ErrnoText(err)));
}

// The child's file actions dup2 our pipe ends onto 0, 1 and 2. If the agent
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

// posix_spawn reports a failed chdir file action with the same errno as a
// missing program, so the directory is checked up front to name the culprit.
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

// posix_spawnp would search the agent's own PATH, but the task must see the
// PATH of its own environment, so this mirrors execvp's search over it.
absl::StatusOr<std::string> ResolveProgram(const ProcessSpec& spec) {
  const std::string& name = spec.argv[0];
  if (name.empty()) return absl::NotFoundError("program name is empty");
  if (absl::StrContains(name, '/')) return name;  // posix_spawn reports errors

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
    // being searched again by posix_spawnp.
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

// Counts processes of group `pgid` that are not zombies. Zombies count as
// gone: they hold no resources and, reparented to an init that never reaps,
// would otherwise be reported forever. Without /proc it reports 0.
int CountLiveGroupMembers(pid_t pgid) {
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return 0;
  int count = 0;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] < '1' || entry->d_name[0] > '9') continue;
    const std::string path = absl::StrCat("/proc/", entry->d_name, "/stat");
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;  // exited meanwhile
    char buf[512];
    const ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) continue;
    buf[n] = '\0';
    // comm may contain spaces and parentheses; the fields follow the last ')'.
    const char* fields = strrchr(buf, ')');
    if (fields == nullptr) continue;
    char state = 0;
    int ppid = 0;
    int pgrp = 0;
    if (sscanf(fields + 1, " %c %d %d", &state, &ppid, &pgrp) != 3) continue;
    if (pgrp == pgid && state != 'Z' && state != 'X') ++count;
  }
  closedir(dir);
  return count;
}

int PollTimeoutMs(absl::Time wake_at, absl::Time now) {
  if (wake_at == absl::InfiniteFuture()) return -1;
  if (wake_at <= now) return 0;
  // Rounding up keeps poll from returning just before the deadline and
  // spinning on zero timeouts.
  const int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(wake_at - now, absl::Milliseconds(1)));
  return static_cast<int>(std::min(ms, kMaxPollMs));
}

// A process group started by PosixProcessRunner. Thread-safe. Owns the I/O
// thread, which owns the pipes and the pidfd; the destructor kills the group
// and joins the thread, so no callback runs after it returns.
class PosixRunningProcess final : public RunningProcess {
 public:
  struct Fds {
    UniqueFd pidfd;
    UniqueFd wake;  // eventfd
    UniqueFd stdin_w;
    UniqueFd stdout_r;
    UniqueFd stderr_r;
  };

  PosixRunningProcess(pid_t pid, Fds fds, std::string stdin_data, OutputCallback on_output,
                      ExitCallback on_exit)
      : pid_(pid),
        wake_fd_(std::move(fds.wake)),
        pidfd_(std::move(fds.pidfd)),
        stdin_w_(std::move(fds.stdin_w)),
        stdout_r_(std::move(fds.stdout_r)),
        stderr_r_(std::move(fds.stderr_r)),
        stdin_data_(std::move(stdin_data)),
        on_output_(std::move(on_output)),
        on_exit_(std::move(on_exit)) {
    thread_ = std::thread([this] { Run(); });
  }

  ~PosixRunningProcess() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      if (!main_exited_) kill(-pid_, SIGKILL);
    }
    Wake();
    thread_.join();
  }

  int64_t pid() const override { return pid_; }

  void Terminate(absl::Duration grace) override ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      // After the main process exited the I/O thread has killed the group
      // already; signalling now could hit a reused pid once it is reaped.
      if (main_exited_) return;
      kill(-pid_, SIGTERM);
      kill_deadline_ = std::min(kill_deadline_, absl::Now() + grace);
    }
    Wake();
  }

  void SetOutputPaused(bool paused) override ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (paused_ == paused) return;
      paused_ = paused;
    }
    Wake();
  }

 private:
  void Wake() {
    const uint64_t one = 1;
    // EAGAIN means the counter is saturated, i.e. a wake-up is pending anyway.
    if (write(wake_fd_.get(), &one, sizeof(one)) < 0) return;
  }

  // Feeds stdin_data_ as far as the pipe accepts; closes stdin when all is
  // written or the reader is gone (EPIPE: the rest is dropped).
  void WriteStdin() {
    const size_t left = stdin_data_.size() - stdin_written_;
    const ssize_t n =
        write(stdin_w_.get(), stdin_data_.data() + stdin_written_, std::min(left, kChunkBytes));
    if (n > 0) {
      stdin_written_ += static_cast<size_t>(n);
      if (stdin_written_ == stdin_data_.size()) stdin_w_.Reset();
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      stdin_w_.Reset();
    }
  }

  // Reads one chunk; closes `fd` on end of file or error.
  void ReadOutput(UniqueFd& fd, StdStream stream, char* buf) {
    const ssize_t n = read(fd.get(), buf, kChunkBytes);
    if (n > 0) {
      if (on_output_) on_output_(stream, absl::string_view(buf, n));
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      fd.Reset();
    }
  }

  void Run() ABSL_LOCKS_EXCLUDED(mu_) {
    std::unique_ptr<char[]> buf(new char[kChunkBytes]);
    bool main_exited = false;
    bool group_gone = false;  // the post-exit group check has finished
    int survivors = 0;
    absl::Time group_check_deadline = absl::InfiniteFuture();
    absl::Time next_group_check = absl::InfiniteFuture();
    absl::Duration orphan_budget = kOrphanDrainTimeout;
    int status = 0;
    rusage usage{};
    bool reaped = false;

    while (true) {
      bool paused;
      bool stopping;
      absl::Time kill_deadline;
      {
        absl::MutexLock lock(&mu_);
        stopping = stopping_;
        paused = paused_ && !stopping_;  // destruction drains regardless
        kill_deadline = kill_deadline_;
      }
      absl::Time now = absl::Now();

      if (!main_exited && now >= kill_deadline) {
        absl::MutexLock lock(&mu_);
        kill(-pid_, SIGKILL);  // main_exited_ is false: the pgid is still ours
        kill_deadline_ = kill_deadline = absl::InfiniteFuture();
      }
      if (main_exited && !group_gone && now >= next_group_check) {
        survivors = CountLiveGroupMembers(pid_);
        if (survivors == 0 || now >= group_check_deadline) {
          group_gone = true;
        } else {
          kill(-pid_, SIGKILL);
          next_group_check = now + kGroupCheckInterval;
        }
      }
      if (stopping) orphan_budget = std::min(orphan_budget, kStopOrphanDrainTimeout);
      bool pipes_open = stdout_r_.valid() || stderr_r_.valid();
      if (main_exited && group_gone && pipes_open && orphan_budget <= absl::ZeroDuration()) {
        stdout_r_.Reset();
        stderr_r_.Reset();
        pipes_open = false;
      }
      if (main_exited && group_gone && !pipes_open) break;

      pollfd fds[5];
      nfds_t nfds = 0;
      auto add = [&](const UniqueFd& fd, short events) {
        fds[nfds] = pollfd{fd.get(), events, 0};
        return static_cast<int>(nfds++);
      };
      const int wake_i = add(wake_fd_, POLLIN);
      const int pid_i = main_exited ? -1 : add(pidfd_, POLLIN);
      const int in_i = stdin_w_.valid() ? add(stdin_w_, POLLOUT) : -1;
      const int out_i = !paused && stdout_r_.valid() ? add(stdout_r_, POLLIN) : -1;
      const int err_i = !paused && stderr_r_.valid() ? add(stderr_r_, POLLIN) : -1;

      absl::Time wake_at = absl::InfiniteFuture();
      if (!main_exited) {
        wake_at = kill_deadline;
      } else if (!group_gone) {
        wake_at = next_group_check;
      } else if (!paused) {
        wake_at = now + orphan_budget;
      }
      // Paused after the exit with nothing else to do, this blocks on the
      // eventfd alone until SetOutputPaused(false) or the destructor.
      const int ready = poll(fds, nfds, PollTimeoutMs(wake_at, now));
      const absl::Time after = absl::Now();
      if (main_exited && group_gone && !paused) orphan_budget -= after - now;
      if (ready < 0) {
        // EINTR is routine; anything else (ENOMEM) is transient at best, so
        // back off instead of spinning.
        if (errno != EINTR) absl::SleepFor(absl::Milliseconds(10));
        continue;
      }

      if (fds[wake_i].revents != 0) {
        uint64_t count;
        if (read(wake_fd_.get(), &count, sizeof(count)) < 0) {
          // EAGAIN: another iteration consumed it already.
        }
      }
      if (pid_i >= 0 && fds[pid_i].revents != 0) {
        {
          absl::MutexLock lock(&mu_);
          main_exited_ = true;
          kill_deadline_ = absl::InfiniteFuture();
        }
        main_exited = true;
        pid_t r;
        do {
          r = wait4(pid_, &status, 0, &usage);
        } while (r < 0 && errno == EINTR);
        reaped = r == pid_;
        // Whatever else runs in the group dies with the task.
        if (kill(-pid_, SIGKILL) != 0 && errno == ESRCH) {
          group_gone = true;
        } else {
          group_check_deadline = after + kGroupCheckTimeout;
          next_group_check = after;
        }
        stdin_w_.Reset();  // nobody is left to read it
      }
      if (in_i >= 0 && stdin_w_.valid() && fds[in_i].revents != 0) WriteStdin();
      if (out_i >= 0 && fds[out_i].revents != 0) {
        ReadOutput(stdout_r_, StdStream::kStdout, buf.get());
      }
      if (err_i >= 0 && fds[err_i].revents != 0) {
        ReadOutput(stderr_r_, StdStream::kStderr, buf.get());
      }
    }

    ProcessExit exit;
    exit.survivors = survivors;
    if (reaped) {
      if (WIFEXITED(status)) exit.exit_code = WEXITSTATUS(status);
      if (WIFSIGNALED(status)) exit.signal = WTERMSIG(status);
      exit.cpu_time =
          absl::DurationFromTimeval(usage.ru_utime) + absl::DurationFromTimeval(usage.ru_stime);
      exit.max_rss_bytes = static_cast<int64_t>(usage.ru_maxrss) * 1024;
    } else {
      // Someone else reaped our child (SIGCHLD ignored or waitpid(-1) in the
      // agent); the status is lost.
      exit.exit_code = -1;
    }
    if (on_exit_) on_exit_(exit);
  }

  const pid_t pid_;         // also the pgid and sid
  const UniqueFd wake_fd_;  // written by any thread, drained by the I/O thread

  // Owned by the I/O thread while it runs.
  UniqueFd pidfd_;
  UniqueFd stdin_w_;
  UniqueFd stdout_r_;
  UniqueFd stderr_r_;
  const std::string stdin_data_;
  size_t stdin_written_ = 0;
  const OutputCallback on_output_;
  const ExitCallback on_exit_;

  absl::Mutex mu_;
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Set by the I/O thread when the pidfd fires; the process is reaped only
  // later, so while this is false kill(-pid_, ...) cannot hit a reused pid.
  bool main_exited_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time kill_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();

  std::thread thread_;  // last: starts once every member above exists
};

}  // namespace

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

PosixProcessRunner::PosixProcessRunner(std::optional<RunAs> run_as) : run_as_(run_as) {
  // A child that stops reading stdin must cost an EPIPE, not the agent's
  // life. Function-local static: done once, thread-safely.
  [[maybe_unused]] static const bool sigpipe_ignored = signal(SIGPIPE, SIG_IGN) != SIG_ERR;
}

absl::StatusOr<std::unique_ptr<RunningProcess>> PosixProcessRunner::Start(const ProcessSpec& spec,
                                                                          OutputCallback on_output,
                                                                          ExitCallback on_exit) {
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
  UniqueFd wake(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) return ErrnoError("eventfd", errno);

  posix_spawn_file_actions_t actions;
  if (int err = posix_spawn_file_actions_init(&actions); err != 0) {
    return ErrnoError("posix_spawn_file_actions_init", err);
  }
  absl::Cleanup destroy_actions = [&actions] { posix_spawn_file_actions_destroy(&actions); };
  posix_spawnattr_t attr;
  if (int err = posix_spawnattr_init(&attr); err != 0) {
    return ErrnoError("posix_spawnattr_init", err);
  }
  absl::Cleanup destroy_attr = [&attr] { posix_spawnattr_destroy(&attr); };

  // The parent ignores SIGPIPE (and the agent may ignore or block more);
  // ignored dispositions and the mask survive exec, so reset both.
  sigset_t empty_mask;
  sigset_t all_signals;
  sigemptyset(&empty_mask);
  sigfillset(&all_signals);
  int err = posix_spawn_file_actions_adddup2(&actions, stdin_r.get(), 0);
  if (err == 0) err = posix_spawn_file_actions_adddup2(&actions, stdout_w.get(), 1);
  if (err == 0) err = posix_spawn_file_actions_adddup2(&actions, stderr_w.get(), 2);
  if (err == 0 && !spec.cwd.empty()) {
    err = posix_spawn_file_actions_addchdir_np(&actions, spec.cwd.c_str());
  }
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 34)
  // Descriptors the agent leaked without O_CLOEXEC (sockets, files) stay out
  // of the task.
  if (err == 0) err = posix_spawn_file_actions_addclosefrom_np(&actions, 3);
#endif
  if (err == 0) {
    err = posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  }
  if (err == 0) err = posix_spawnattr_setsigmask(&attr, &empty_mask);
  if (err == 0) err = posix_spawnattr_setsigdefault(&attr, &all_signals);
  if (err != 0) return ErrnoError("posix_spawn setup", err);

  // posix_spawn takes char* const[]; it does not write through them.
  std::vector<std::string> wrapper;
  if (run_as_) {
    // setpriv changes user and group, then execs the program in the same
    // process: its pid, session and process group stay the task's.
    wrapper = {kSetpriv, absl::StrCat("--reuid=", run_as_->uid),
               absl::StrCat("--regid=", run_as_->gid), "--clear-groups", "--", *program};
    program = std::string(kSetpriv);
  }
  std::vector<char*> argv;
  argv.reserve(wrapper.size() + spec.argv.size() + 1);
  for (const std::string& arg : wrapper) argv.push_back(const_cast<char*>(arg.c_str()));
  for (size_t i = run_as_ ? 1 : 0; i < spec.argv.size(); ++i) {
    argv.push_back(const_cast<char*>(spec.argv[i].c_str()));
  }
  argv.push_back(nullptr);
  std::vector<char*> envp;
  envp.reserve(spec.env.size() + 1);
  for (const std::string& var : spec.env) envp.push_back(const_cast<char*>(var.c_str()));
  envp.push_back(nullptr);

  // `program` contains a '/', so posix_spawnp does no PATH search of its own.
  pid_t pid = 0;
  err = posix_spawnp(&pid, program->c_str(), &actions, &attr, argv.data(), envp.data());
  if (err != 0) return SpawnError(err, spec.argv[0]);
  stdin_r.Reset();
  stdout_w.Reset();
  stderr_w.Reset();

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

  PosixRunningProcess::Fds fds;
  fds.pidfd = std::move(pidfd);
  fds.wake = std::move(wake);
  fds.stdin_w = std::move(stdin_w);
  fds.stdout_r = std::move(stdout_r);
  fds.stderr_r = std::move(stderr_r);
  return std::make_unique<PosixRunningProcess>(pid, std::move(fds), spec.stdin_data,
                                               std::move(on_output), std::move(on_exit));
}

}  // namespace taskgrid
