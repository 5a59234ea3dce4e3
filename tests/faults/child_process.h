// A real service binary run by a fault test: started with posix_spawn, killed
// by signal from outside, always reaped (SIGKILL on destruction).
#ifndef TASKGRID_TESTS_FAULTS_CHILD_PROCESS_H_
#define TASKGRID_TESTS_FAULTS_CHILD_PROCESS_H_

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"

extern char** environ;

namespace taskgrid {

class ChildProcess {
 public:
  ChildProcess() = default;
  explicit ChildProcess(std::vector<std::string> argv) : argv_(std::move(argv)) {}
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() { Kill(SIGKILL); }

  // Starts (again) with the same arguments. Returns false if spawning failed.
  bool Start() {
    std::vector<char*> args;
    for (std::string& a : argv_) args.push_back(a.data());
    args.push_back(nullptr);
    return posix_spawn(&pid_, args[0], nullptr, nullptr, args.data(), environ) == 0;
  }

  // Sends `sig` and reaps the process.
  void Kill(int sig) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    waitpid(pid_, nullptr, 0);
    pid_ = 0;
  }

  // Sends `sig` without waiting (SIGSTOP, SIGCONT).
  void Signal(int sig) {
    if (pid_ > 0) kill(pid_, sig);
  }

  // Waits up to `timeout` for the process to exit on its own; returns its
  // exit code, or -1 if it is still running (or died by a signal).
  int WaitExit(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (pid_ > 0 && absl::Now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return -1;
  }

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

 private:
  std::vector<std::string> argv_;
  pid_t pid_ = 0;
};

// Starts one agent binary per id, all dialing `coordinators`.
inline std::vector<std::unique_ptr<ChildProcess>> StartAgents(const std::string& binary,
                                                              const std::string& coordinators,
                                                              const std::vector<std::string>& ids,
                                                              int slots) {
  std::vector<std::unique_ptr<ChildProcess>> agents;
  for (const std::string& id : ids) {
    agents.push_back(std::make_unique<ChildProcess>(std::vector<std::string>{
        binary, "--coordinator=" + coordinators, "--agent_id=" + id,
        "--slots=" + std::to_string(slots), "--metrics_address=", "--log_level=warn"}));
    agents.back()->Start();
  }
  return agents;
}

}  // namespace taskgrid

#endif  // TASKGRID_TESTS_FAULTS_CHILD_PROCESS_H_
