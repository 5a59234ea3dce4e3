#include "services/common/service_process.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/common/logging.h"

namespace taskgrid {
namespace {

sigset_t TakenSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

}  // namespace

absl::Status InitServiceProcess(const std::string& service, const std::string& log_level) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const sigset_t set = TakenSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return InitLogging(service, log_level);
}

int WaitForStopSignal(const std::function<void()>& on_reload) {
  const sigset_t set = TakenSignals();
  for (;;) {
    int sig = 0;
    sigwait(&set, &sig);
    if (sig != SIGHUP) return sig;
    if (on_reload) on_reload();
  }
}

void WritePortFile(const std::string& path, std::initializer_list<int> ports) {
  if (path.empty()) return;
  {
    std::ofstream out(path + ".tmp");
    for (int port : ports) out << port << "\n";
  }
  std::rename((path + ".tmp").c_str(), path.c_str());
}

absl::Status ApplyEnvironmentFlags() {
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (absl::StrContains(flag->Filename(), "absl/")) continue;  // Abseil's own.
    const std::string var = absl::StrCat("TASKGRID_", absl::AsciiStrToUpper(name));
    const char* value = std::getenv(var.c_str());
    if (value == nullptr) continue;
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(absl::StrCat(var, ": ", error));
    }
  }
  return absl::OkStatus();
}

std::string HostName() {
  char buf[256] = {0};
  gethostname(buf, sizeof(buf) - 1);
  return buf;
}

}  // namespace taskgrid
