// What a started process reported, for tests of the process runner.
#ifndef TASKGRID_SERVICES_AGENT_TESTING_PROCESS_COLLECTOR_H_
#define TASKGRID_SERVICES_AGENT_TESTING_PROCESS_COLLECTOR_H_

#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "services/agent/process_runner.h"

namespace taskgrid {

// Records what a process reports. Must outlive the RunningProcess it watches.
class Collector {
 public:
  OutputCallback OnOutput() {
    return [this](StdStream stream, absl::string_view data) {
      absl::MutexLock lock(&mu_);
      if (exit_calls_ > 0) output_after_exit_ = true;
      (stream == StdStream::kStdout ? out_ : err_).append(data.data(), data.size());
    };
  }
  ExitCallback OnExit() {
    return [this](const ProcessExit& exit) {
      {
        absl::MutexLock lock(&mu_);
        exit_ = exit;
        ++exit_calls_;
      }
      if (!done_.HasBeenNotified()) done_.Notify();
    };
  }

  bool WaitExit(absl::Duration timeout = absl::Seconds(10)) {
    return done_.WaitForNotificationWithTimeout(timeout);
  }
  bool exited() const { return done_.HasBeenNotified(); }
  std::string out() const {
    absl::MutexLock lock(&mu_);
    return out_;
  }
  std::string err() const {
    absl::MutexLock lock(&mu_);
    return err_;
  }
  size_t out_size() const {
    absl::MutexLock lock(&mu_);
    return out_.size();
  }
  ProcessExit exit() const {
    absl::MutexLock lock(&mu_);
    return exit_;
  }
  int exit_calls() const {
    absl::MutexLock lock(&mu_);
    return exit_calls_;
  }
  bool output_after_exit() const {
    absl::MutexLock lock(&mu_);
    return output_after_exit_;
  }

 private:
  mutable absl::Mutex mu_;
  std::string out_ ABSL_GUARDED_BY(mu_);
  std::string err_ ABSL_GUARDED_BY(mu_);
  ProcessExit exit_ ABSL_GUARDED_BY(mu_);
  int exit_calls_ ABSL_GUARDED_BY(mu_) = 0;
  bool output_after_exit_ ABSL_GUARDED_BY(mu_) = false;
  absl::Notification done_;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_AGENT_TESTING_PROCESS_COLLECTOR_H_
