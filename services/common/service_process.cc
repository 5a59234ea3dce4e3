#include "services/common/service_process.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
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

void HideSecrets(int argc, char** argv, std::initializer_list<const char*> flags,
                 std::initializer_list<const char*> variables) {
  auto blank = [](char* value) { std::memset(value, '*', std::strlen(value)); };
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "--")) absl::ConsumePrefix(&arg, "-");
    for (const char* flag : flags) {
      if (arg == flag && i + 1 < argc) {
        blank(argv[++i]);
      } else if (absl::StartsWith(arg, absl::StrCat(flag, "="))) {
        blank(argv[i] + (arg.data() - argv[i]) + std::strlen(flag) + 1);  // After '='.
      }
    }
  }
  for (const char* variable : variables) {
    const std::string prefix = absl::StrCat(variable, "=");
    for (char** e = environ; *e != nullptr; ++e) {
      if (absl::StartsWith(*e, prefix)) {
        char* value = *e + prefix.size();
        std::memset(value, 0, std::strlen(value));
      }
    }
    unsetenv(variable);
  }
}

absl::StatusOr<std::string> ReadSecretFile(const std::string& path, absl::string_view flag) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(flag, ": cannot read ", path));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "%s: %s has mode %04o, which lets other users read it (chmod 600 %s)", flag, path,
        st.st_mode & 07777, path));
  }
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) return absl::NotFoundError(absl::StrCat(flag, ": cannot read ", path));
  std::string secret(absl::StripAsciiWhitespace(text.str()));
  if (secret.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " is empty"));
  return secret;
}

std::string HostName() {
  char buf[256] = {0};
  gethostname(buf, sizeof(buf) - 1);
  return buf;
}

}  // namespace taskgrid
