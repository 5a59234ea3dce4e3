// PosixProcessRunner: vfork + execve, and one epoll thread for all processes.
//
// Lifetime of a process as the loop sees it:
//   1. running: its pidfd, its stdin pipe while data remains and its
//      stdout/stderr unless paused are in the epoll set; the loop wakes for
//      the SIGKILL deadline set by Terminate().
//   2. main exited (pidfd readable): reap it with wait4, then SIGKILL the
//      group. An empty cgroup (cgroup.events), or without cgroups ESRCH,
//      means nothing is left (the common case); otherwise kill and check the
//      cgroup (or /proc) until no live member remains (or give up after a
//      second and report survivors) while draining the pipes until EOF.
//   3. call on_exit; the process leaves the loop.
//
// Reaping first is safe for the kill(-pgid) that follows: while any member of
// the group lives, the kernel keeps its id reserved; when none does, the kill
// fails with ESRCH unless the whole pid space wrapped in between.
//
// The pipes are level-triggered and read one chunk per wake-up, so one chatty
// process cannot starve the others. A paused pipe leaves the epoll set
// altogether: with no events requested, epoll would still report its hang-up
// on every wait.
#include "services/agent/posix_process_runner.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/common/task_resources.h"

namespace taskgrid {
namespace {

constexpr size_t kChunkBytes = 64 * 1024;
// How long to keep re-killing the group after the main process exited before
// reporting survivors (a process in uninterruptible sleep dies late).
constexpr absl::Duration kGroupCheckTimeout = absl::Seconds(1);
constexpr absl::Duration kGroupCheckInterval = absl::Milliseconds(10);
// Once the group is gone, only a process that escaped it can still hold the
// pipes open; this bounds how long such a process can delay on_exit.
constexpr absl::Duration kOrphanDrainTimeout = absl::Seconds(1);
// The same bound while the RunningProcess is being destroyed.
constexpr absl::Duration kStopOrphanDrainTimeout = absl::Milliseconds(100);
// epoll_wait is re-armed at least this often so a huge deadline cannot overflow.
constexpr int64_t kMaxWaitMs = 60'000;
constexpr int kMaxEvents = 64;

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

int WaitTimeoutMs(absl::Time wake_at, absl::Time now) {
  if (wake_at == absl::InfiniteFuture()) return -1;
  if (wake_at <= now) return 0;
  // Rounding up keeps epoll_wait from returning just before the deadline and
  // spinning on zero timeouts.
  const int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(wake_at - now, absl::Milliseconds(1)));
  return static_cast<int>(std::min(ms, kMaxWaitMs));
}

}  // namespace

// One process group in the loop. The loop's thread alone touches the fields
// without a lock; the handle and the loop share the ones under `mu`.
struct LoopProcess {
  enum Fd { kPidfd, kStdin, kStdout, kStderr, kFdCount };
  // What an epoll event points at.
  struct Slot {
    LoopProcess* process = nullptr;
    Fd fd = kPidfd;
    uint32_t armed = 0;  // The events it is registered for; 0: not in the set.
  };

  LoopProcess(SpawnedProcess spawned, std::optional<TaskCgroup> group, std::string stdin,
              OutputCallback output, ExitCallback exit)
      : pid(spawned.pid),
        cgroup(std::move(group)),
        on_output(std::move(output)),
        on_exit(std::move(exit)),
        stdin_data(std::move(stdin)) {
    fds[kPidfd] = std::move(spawned.pidfd);
    fds[kStdin] = std::move(spawned.stdin_w);
    fds[kStdout] = std::move(spawned.stdout_r);
    fds[kStderr] = std::move(spawned.stderr_r);
    for (int i = 0; i < kFdCount; ++i) slots[i] = Slot{this, static_cast<Fd>(i)};
  }

  // Sends SIGKILL to the group and, with a cgroup, to everything in it.
  // Only while the main process is unreaped (the pgid is still ours) or after.
  void KillAll() const {
    kill(-pid, SIGKILL);
    if (cgroup) (void)cgroup->Kill();
  }

  const pid_t pid;  // also the pgid and sid
  std::optional<TaskCgroup> cgroup;  // where the whole tree lives, if cgroups are on
  const OutputCallback on_output;
  const ExitCallback on_exit;

  UniqueFd fds[kFdCount];
  Slot slots[kFdCount];
  const std::string stdin_data;
  size_t stdin_written = 0;
  bool main_exited = false;
  bool group_gone = false;  // the post-exit group check has finished
  bool finished = false;    // on_exit has run
  int survivors = 0;
  absl::Time group_check_deadline = absl::InfiniteFuture();
  absl::Time next_group_check = absl::InfiniteFuture();
  absl::Duration orphan_budget = kOrphanDrainTimeout;
  // Since when unpaused waiting for an orphan's end of file is unaccounted.
  absl::Time orphan_clock = absl::InfiniteFuture();
  absl::Time wake_at = absl::InfiniteFuture();  // its key in the loop's timers
  uint64_t stepped_in = 0;                        // the loop round that last stepped it
  int status = 0;
  rusage usage{};
  bool reaped = false;

  absl::Mutex mu;
  bool paused ABSL_GUARDED_BY(mu) = false;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  // Set when the pidfd fires; the process is reaped only later, so while this
  // is false kill(-pid, ...) cannot hit a reused pid.
  bool exited ABSL_GUARDED_BY(mu) = false;
  absl::Time kill_deadline ABSL_GUARDED_BY(mu) = absl::InfiniteFuture();
  bool done ABSL_GUARDED_BY(mu) = false;  // on_exit has returned
};

// The I/O thread of a PosixProcessRunner and of the processes it started.
class ProcessLoop {
 public:
  ProcessLoop();
  // Every process must be done.
  ~ProcessLoop();
  ProcessLoop(const ProcessLoop&) = delete;
  ProcessLoop& operator=(const ProcessLoop&) = delete;

  // Whether the epoll set and the thread exist.
  const absl::Status& status() const { return status_; }
  // Puts the process's descriptors in the epoll set; the loop follows it
  // from then on.
  absl::Status Add(std::shared_ptr<LoopProcess> p) ABSL_LOCKS_EXCLUDED(mu_);
  // Asks the loop to look at `p` again: a field under its `mu` changed.
  void Poke(std::shared_ptr<LoopProcess> p) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  void Wake();
  // Registers fd `which` of `p` for `events` (0: takes it out of the set).
  void Arm(LoopProcess& p, LoopProcess::Fd which, uint32_t events);
  void Close(LoopProcess& p, LoopProcess::Fd which);
  void OnReady(LoopProcess& p, LoopProcess::Fd which, absl::Time now);
  void OnMainExit(LoopProcess& p, absl::Time now);
  void WriteStdin(LoopProcess& p);
  void ReadOutput(LoopProcess& p, LoopProcess::Fd which);
  // Moves `p` along its lifetime after whatever happened to it this round.
  void Step(LoopProcess& p, absl::Time now);
  void Finish(LoopProcess& p);
  void SetWakeAt(LoopProcess& p, absl::Time at);

  absl::Status status_;
  UniqueFd epoll_;
  UniqueFd wake_;  // eventfd: written by any thread, drained by the loop

  absl::Mutex mu_;
  std::vector<std::shared_ptr<LoopProcess>> added_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<LoopProcess>> poked_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;

  // The loop thread's own.
  absl::flat_hash_map<LoopProcess*, std::shared_ptr<LoopProcess>> live_;
  std::set<std::pair<absl::Time, LoopProcess*>> timers_;
  std::vector<LoopProcess*> round_;  // the processes to step this round
  uint64_t rounds_ = 0;
  std::unique_ptr<char[]> buf_;

  std::thread thread_;  // last: starts once every member above exists
};

ProcessLoop::ProcessLoop() : buf_(new char[kChunkBytes]) {
  epoll_ = UniqueFd(epoll_create1(EPOLL_CLOEXEC));
  wake_ = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the wake-up
  if (!epoll_.valid()) {
    status_ = ErrnoError("epoll_create1", errno);
  } else if (!wake_.valid()) {
    status_ = ErrnoError("eventfd", errno);
  } else if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev) != 0) {
    status_ = ErrnoError("epoll_ctl", errno);
  } else {
    thread_ = std::thread([this] { Run(); });
  }
}

ProcessLoop::~ProcessLoop() {
  if (!thread_.joinable()) return;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  Wake();
  thread_.join();
}

void ProcessLoop::Wake() {
  const uint64_t one = 1;
  // EAGAIN means the counter is saturated, i.e. a wake-up is pending anyway.
  if (write(wake_.get(), &one, sizeof(one)) < 0) return;
}

absl::Status ProcessLoop::Add(std::shared_ptr<LoopProcess> p) {
  // Registered under mu_, so the loop, which takes added_ under mu_ before
  // it handles any event, never sees an event of a process it does not know.
  // No wake-up: nothing is due until one of these descriptors fires.
  absl::MutexLock lock(&mu_);
  const uint32_t events[LoopProcess::kFdCount] = {EPOLLIN, EPOLLOUT, EPOLLIN, EPOLLIN};
  for (int i = 0; i < LoopProcess::kFdCount; ++i) {
    if (!p->fds[i].valid()) continue;
    epoll_event ev{};
    ev.events = events[i];
    ev.data.ptr = &p->slots[i];
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, p->fds[i].get(), &ev) != 0) {
      const int err = errno;
      for (int j = 0; j < i; ++j) {
        if (p->fds[j].valid()) epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, p->fds[j].get(), nullptr);
      }
      return ErrnoError("epoll_ctl", err);
    }
    p->slots[i].armed = events[i];
  }
  added_.push_back(std::move(p));
  return absl::OkStatus();
}

void ProcessLoop::Poke(std::shared_ptr<LoopProcess> p) {
  {
    absl::MutexLock lock(&mu_);
    poked_.push_back(std::move(p));
  }
  // From a callback the loop steps the process later in the same round.
  if (std::this_thread::get_id() != thread_.get_id()) Wake();
}

void ProcessLoop::Arm(LoopProcess& p, LoopProcess::Fd which, uint32_t events) {
  LoopProcess::Slot& slot = p.slots[which];
  if (!p.fds[which].valid() || slot.armed == events) return;
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = &slot;
  const int op = events == 0 ? EPOLL_CTL_DEL : slot.armed == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
  // Fails only on ENOMEM for ADD; the fd then stays out and is retried next step.
  if (epoll_ctl(epoll_.get(), op, p.fds[which].get(), &ev) == 0) slot.armed = events;
}

void ProcessLoop::Close(LoopProcess& p, LoopProcess::Fd which) {
  Arm(p, which, 0);
  p.fds[which].Reset();
}

void ProcessLoop::SetWakeAt(LoopProcess& p, absl::Time at) {
  if (p.wake_at == at) return;
  if (p.wake_at != absl::InfiniteFuture()) timers_.erase({p.wake_at, &p});
  p.wake_at = at;
  if (at != absl::InfiniteFuture()) timers_.insert({at, &p});
}

void ProcessLoop::Run() {
  std::array<epoll_event, kMaxEvents> events;
  while (true) {
    int timeout = timers_.empty() ? -1 : WaitTimeoutMs(timers_.begin()->first, absl::Now());
    {
      absl::MutexLock lock(&mu_);
      if (!poked_.empty()) timeout = 0;  // poked from a callback after the last round
    }
    int ready = epoll_wait(epoll_.get(), events.data(), kMaxEvents, timeout);
    if (ready < 0) {
      // EINTR is routine; anything else is transient at best, so back off
      // instead of spinning.
      if (errno != EINTR) absl::SleepFor(absl::Milliseconds(10));
      ready = 0;
    }
    const absl::Time now = absl::Now();
    ++rounds_;
    round_.clear();
    auto step_later = [this](LoopProcess* p) {
      if (p->stepped_in == rounds_) return;
      p->stepped_in = rounds_;
      round_.push_back(p);
    };
    std::vector<std::shared_ptr<LoopProcess>> poked;
    bool stop;
    {
      absl::MutexLock lock(&mu_);
      for (std::shared_ptr<LoopProcess>& p : added_) {
        LoopProcess* raw = p.get();
        live_.emplace(raw, std::move(p));
      }
      added_.clear();
      stop = stop_;
    }
    for (int i = 0; i < ready; ++i) {
      auto* slot = static_cast<LoopProcess::Slot*>(events[i].data.ptr);
      if (slot == nullptr) {
        uint64_t count;
        if (read(wake_.get(), &count, sizeof(count)) < 0) {
          // EAGAIN: drained already.
        }
        continue;
      }
      LoopProcess& p = *slot->process;
      // An earlier event of this round may have closed the fd.
      if (!p.fds[slot->fd].valid()) continue;
      OnReady(p, slot->fd, now);
      step_later(&p);
    }
    // Callbacks above may have poked; take those in this round too.
    {
      absl::MutexLock lock(&mu_);
      poked.swap(poked_);
    }
    for (const std::shared_ptr<LoopProcess>& p : poked) {
      if (live_.contains(p.get())) step_later(p.get());
    }
    while (!timers_.empty() && timers_.begin()->first <= now) {
      step_later(timers_.begin()->second);
      SetWakeAt(*timers_.begin()->second, absl::InfiniteFuture());
    }
    for (LoopProcess* p : round_) Step(*p, now);
    for (LoopProcess* p : round_) {
      if (p->finished) live_.erase(p);
    }
    if (stop && live_.empty()) return;
  }
}

void ProcessLoop::OnReady(LoopProcess& p, LoopProcess::Fd which, absl::Time now) {
  switch (which) {
    case LoopProcess::kPidfd:
      return OnMainExit(p, now);
    case LoopProcess::kStdin:
      return WriteStdin(p);
    default:
      return ReadOutput(p, which);
  }
}

void ProcessLoop::OnMainExit(LoopProcess& p, absl::Time now) {
  {
    absl::MutexLock lock(&p.mu);
    p.exited = true;
    p.kill_deadline = absl::InfiniteFuture();
  }
  p.main_exited = true;
  Close(p, LoopProcess::kPidfd);
  pid_t r;
  do {
    r = wait4(p.pid, &p.status, 0, &p.usage);
  } while (r < 0 && errno == EINTR);
  p.reaped = r == p.pid;
  // Whatever else runs in the group (or the cgroup) dies with the task.
  bool gone = kill(-p.pid, SIGKILL) != 0 && errno == ESRCH;
  if (p.cgroup) {
    // Only its own processes can enter a task's cgroup (TaskCgroups::Create
    // hands out no populated one), so an empty one needs no kill.
    gone = !p.cgroup->Populated() || (p.cgroup->Kill().ok() && !p.cgroup->Populated());
  }
  if (gone) {
    p.group_gone = true;
  } else {
    p.group_check_deadline = now + kGroupCheckTimeout;
    p.next_group_check = now;
  }
  Close(p, LoopProcess::kStdin);  // nobody is left to read it
}

// Feeds stdin_data as far as the pipe accepts; closes stdin when all is
// written or the reader is gone (EPIPE: the rest is dropped).
void ProcessLoop::WriteStdin(LoopProcess& p) {
  const size_t left = p.stdin_data.size() - p.stdin_written;
  const ssize_t n = write(p.fds[LoopProcess::kStdin].get(), p.stdin_data.data() + p.stdin_written,
                          std::min(left, kChunkBytes));
  if (n > 0) {
    p.stdin_written += static_cast<size_t>(n);
    if (p.stdin_written == p.stdin_data.size()) Close(p, LoopProcess::kStdin);
  } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
    Close(p, LoopProcess::kStdin);
  }
}

// Reads one chunk; closes the pipe on end of file or error.
void ProcessLoop::ReadOutput(LoopProcess& p, LoopProcess::Fd which) {
  const ssize_t n = read(p.fds[which].get(), buf_.get(), kChunkBytes);
  if (n > 0) {
    const StdStream stream = which == LoopProcess::kStdout ? StdStream::kStdout : StdStream::kStderr;
    if (p.on_output) p.on_output(stream, absl::string_view(buf_.get(), n));
  } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
    Close(p, which);
  }
}

void ProcessLoop::Step(LoopProcess& p, absl::Time now) {
  if (p.finished) return;
  bool paused;
  bool stopping;
  absl::Time kill_deadline;
  {
    absl::MutexLock lock(&p.mu);
    if (!p.main_exited && now >= p.kill_deadline) {
      p.KillAll();  // not exited: the pgid is still ours
      p.kill_deadline = absl::InfiniteFuture();
    }
    stopping = p.stopping;
    paused = p.paused && !p.stopping;  // destruction drains regardless
    kill_deadline = p.kill_deadline;
  }
  if (p.main_exited && !p.group_gone && now >= p.next_group_check) {
    p.survivors = p.cgroup ? static_cast<int>(p.cgroup->Pids().size())
                           : CountLiveGroupMembers(p.pid);
    if (p.survivors == 0 || now >= p.group_check_deadline) {
      p.group_gone = true;
    } else {
      p.KillAll();
      p.next_group_check = now + kGroupCheckInterval;
    }
  }
  // Only unpaused time spent waiting for an orphan's end of file counts.
  const bool orphan_wait = p.main_exited && p.group_gone;
  if (p.orphan_clock != absl::InfiniteFuture()) p.orphan_budget -= now - p.orphan_clock;
  p.orphan_clock = orphan_wait && !paused ? now : absl::InfiniteFuture();
  if (stopping) p.orphan_budget = std::min(p.orphan_budget, kStopOrphanDrainTimeout);
  bool pipes_open = p.fds[LoopProcess::kStdout].valid() || p.fds[LoopProcess::kStderr].valid();
  if (orphan_wait && pipes_open && p.orphan_budget <= absl::ZeroDuration()) {
    Close(p, LoopProcess::kStdout);
    Close(p, LoopProcess::kStderr);
    pipes_open = false;
  }
  if (orphan_wait && !pipes_open) return Finish(p);

  Arm(p, LoopProcess::kStdout, paused ? 0u : static_cast<uint32_t>(EPOLLIN));
  Arm(p, LoopProcess::kStderr, paused ? 0u : static_cast<uint32_t>(EPOLLIN));
  absl::Time wake_at = absl::InfiniteFuture();
  if (!p.main_exited) {
    wake_at = kill_deadline;
  } else if (!p.group_gone) {
    wake_at = p.next_group_check;
  } else if (!paused) {
    wake_at = now + p.orphan_budget;
  }
  // Paused after the exit with nothing else to do, it waits for a poke:
  // SetOutputPaused(false) or the destructor.
  SetWakeAt(p, wake_at);
}

void ProcessLoop::Finish(LoopProcess& p) {
  for (int i = 0; i < LoopProcess::kFdCount; ++i) Close(p, static_cast<LoopProcess::Fd>(i));
  SetWakeAt(p, absl::InfiniteFuture());
  p.finished = true;
  ProcessExit exit;
  exit.survivors = p.survivors;
  if (p.reaped) {
    if (WIFEXITED(p.status)) exit.exit_code = WEXITSTATUS(p.status);
    if (WIFSIGNALED(p.status)) exit.signal = WTERMSIG(p.status);
    exit.cpu_time =
        absl::DurationFromTimeval(p.usage.ru_utime) + absl::DurationFromTimeval(p.usage.ru_stime);
    exit.max_rss_bytes = static_cast<int64_t>(p.usage.ru_maxrss) * 1024;
    // wait4 counts the main process and the children it reaped; the cgroup
    // counts every process of the tree.
    if (p.cgroup) {
      const CgroupUsage usage = p.cgroup->Usage();
      exit.cpu_time = std::max(exit.cpu_time, usage.cpu_time);
      exit.memory_peak_bytes = usage.memory_peak_bytes;
      exit.oom_killed = usage.oom_killed;
      if (usage.oom_killed) exit.error = OutOfMemoryReason(usage.memory_limit_bytes);
    }
  } else {
    // Someone else reaped our child (SIGCHLD ignored or waitpid(-1) in the
    // agent); the status is lost.
    exit.exit_code = -1;
  }
  // A cgroup with a survivor stays, and a restarted agent sweeps it. Once
  // released it may hold the next task: nothing here may touch it again.
  if (p.cgroup && p.survivors == 0) {
    p.cgroup->Release();
    p.cgroup.reset();
  }
  if (p.on_exit) p.on_exit(exit);
  absl::MutexLock lock(&p.mu);
  p.done = true;
}

namespace {

// A process group started by PosixProcessRunner: the handle the caller owns.
// Its destructor kills the group and waits until on_exit has returned.
class PosixRunningProcess final : public RunningProcess {
 public:
  PosixRunningProcess(std::shared_ptr<ProcessLoop> loop, std::shared_ptr<LoopProcess> process)
      : loop_(std::move(loop)), p_(std::move(process)) {}

  ~PosixRunningProcess() override {
    {
      absl::MutexLock lock(&p_->mu);
      p_->stopping = true;
      if (!p_->exited) p_->KillAll();
    }
    loop_->Poke(p_);
    absl::MutexLock lock(&p_->mu);
    p_->mu.Await(absl::Condition(&p_->done));
  }

  int64_t pid() const override { return p_->pid; }

  void Terminate(absl::Duration grace) override {
    {
      absl::MutexLock lock(&p_->mu);
      // After the main process exited the loop has killed the group already;
      // signalling now could hit a reused pid once it is reaped.
      if (p_->exited) return;
      kill(-p_->pid, SIGTERM);
      if (p_->cgroup) p_->cgroup->Terminate();  // those that left the session too
      p_->kill_deadline = std::min(p_->kill_deadline, absl::Now() + grace);
    }
    loop_->Poke(p_);
  }

  void SetOutputPaused(bool paused) override {
    {
      absl::MutexLock lock(&p_->mu);
      if (p_->paused == paused) return;
      p_->paused = paused;
    }
    loop_->Poke(p_);
  }

 private:
  const std::shared_ptr<ProcessLoop> loop_;  // first: outlives p_'s last use
  const std::shared_ptr<LoopProcess> p_;
};

}  // namespace

PosixProcessRunner::PosixProcessRunner(std::optional<RunAs> run_as, TaskCgroups* cgroups)
    : run_as_(run_as), cgroups_(cgroups), loop_(std::make_shared<ProcessLoop>()) {
  // A child that stops reading stdin must cost an EPIPE, not the agent's
  // life. Function-local static: done once, thread-safely.
  [[maybe_unused]] static const bool sigpipe_ignored = signal(SIGPIPE, SIG_IGN) != SIG_ERR;
}

absl::StatusOr<std::unique_ptr<RunningProcess>> PosixProcessRunner::Start(const ProcessSpec& spec,
                                                                          OutputCallback on_output,
                                                                          ExitCallback on_exit) {
  if (!loop_->status().ok()) return loop_->status();
  std::optional<TaskCgroup> cgroup;
  if (cgroups_ != nullptr) {
    absl::StatusOr<TaskCgroup> made =
        cgroups_->Create(spec.name.empty() ? "process" : spec.name, spec.limits);
    if (absl::IsFailedPrecondition(made.status())) return made.status();
    if (!made.ok()) {
      return absl::InternalError(absl::StrCat("cannot make the task's cgroup: ",
                                              made.status().message()));
    }
    cgroup = std::move(*made);
  } else if (spec.limits.any()) {
    return absl::FailedPreconditionError(
        "cannot limit the task's resources: this agent runs tasks without cgroups");
  }
  absl::StatusOr<SpawnedProcess> spawned =
      SpawnProcess(spec, run_as_, cgroup ? cgroup->procs_fds() : std::vector<int>());
  if (!spawned.ok()) {
    if (cgroup) cgroup->Release();
    return spawned.status();
  }
  const pid_t pid = spawned->pid;
  auto process = std::make_shared<LoopProcess>(std::move(*spawned), std::move(cgroup),
                                               spec.stdin_data, std::move(on_output),
                                               std::move(on_exit));
  if (absl::Status added = loop_->Add(process); !added.ok()) {
    process->KillAll();  // unreaped, so the pgid is still ours
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    if (process->cgroup) process->cgroup->Release();
    return added;
  }
  return std::make_unique<PosixRunningProcess>(loop_, std::move(process));
}

std::vector<std::string> PosixProcessRunner::EnforcedLimits() const {
  return cgroups_ != nullptr ? cgroups_->enforced_limits() : std::vector<std::string>();
}

}  // namespace taskgrid
