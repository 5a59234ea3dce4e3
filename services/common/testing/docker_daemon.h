// A throwaway Docker daemon for tests: dockerd with private data and exec
// roots and its own socket in a fresh directory (no bridge, no iptables, so
// nothing on the host changes), and a test image "taskgrid-test" imported
// from a busybox-static root filesystem, since no registry is reachable.
// Stopped by its PID and deleted on destruction.
#ifndef TASKGRID_SERVICES_COMMON_TESTING_DOCKER_DAEMON_H_
#define TASKGRID_SERVICES_COMMON_TESTING_DOCKER_DAEMON_H_

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/testing/test_util.h"

namespace taskgrid {

class DockerDaemon {
 public:
  static constexpr char kImage[] = "taskgrid-test";

  // Null, with the reason in `why`, when dockerd cannot run here.
  static std::unique_ptr<DockerDaemon> Start(std::string& why) {
    std::unique_ptr<DockerDaemon> d(new DockerDaemon());
    char tmpl[] = "/tmp/tgdock_XXXXXX";  // Short: socket paths have a length limit.
    if (mkdtemp(tmpl) == nullptr) {
      why = "mkdtemp failed";
      return nullptr;
    }
    d->dir_ = tmpl;
    const std::string& dir = d->dir_;
    if (std::system("command -v dockerd >/dev/null && test -x /bin/busybox") != 0) {
      why = "dockerd or /bin/busybox is missing (apt-get install docker.io busybox-static)";
      return nullptr;
    }
    d->Run(absl::StrCat("dockerd --data-root ", dir, "/data --exec-root ", dir,
                        "/exec -H unix://", d->socket(), " --pidfile ", dir,
                        "/dockerd.pid --bridge=none --iptables=false --ip6tables=false ",
                        "--log-level=warn >", dir, "/dockerd.log 2>&1 &"));
    const bool up = WaitFor(
        [&] { return d->Run(absl::StrCat(d->Curl(), "http://x/_ping >/dev/null 2>&1")); },
        absl::Seconds(30));
    std::ifstream(dir + "/dockerd.pid") >> d->pid_;
    if (!up) {
      why = absl::StrCat("dockerd did not answer within 30 s; see ", dir, "/dockerd.log");
      d->keep_dir_ = true;
      return nullptr;
    }
    const std::string root = dir + "/rootfs";
    if (!d->Run(absl::StrCat("mkdir -p ", root, "/bin ", root, "/tmp && cp /bin/busybox ", root,
                             "/bin/ && for a in $(/bin/busybox --list | grep -vx busybox); do ln -s busybox ",
                             root, "/bin/$a; done && tar -C ", root, " -c . | ", d->Curl(),
                             "-XPOST -H 'Content-Type: application/x-tar' --data-binary @- ",
                             "'http://x/v1.41/images/create?fromSrc=-&repo=", kImage,
                             "&tag=latest' >/dev/null"))) {
      why = "importing the test image failed";
      return nullptr;
    }
    return d;
  }

  ~DockerDaemon() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      if (!WaitFor([&] { return ProcessGone(pid_); }, absl::Seconds(20))) kill(pid_, SIGKILL);
      WaitFor([&] { return ProcessGone(pid_); }, absl::Seconds(5));
    }
    Run(absl::StrCat("umount ", dir_, "/exec/netns/default ", dir_, "/data/overlay2/*/merged ",
                     ">/dev/null 2>&1"));
    if (!dir_.empty() && !keep_dir_) Run("rm -rf " + dir_);
  }

  std::string socket() const { return dir_ + "/docker.sock"; }

  // Runs `curl` against the daemon with `args`; its stdout.
  std::string Api(const std::string& args) const {
    std::string out;
    if (FILE* f = popen((Curl() + args).c_str(), "r")) {
      char buf[4096];
      for (size_t n; (n = fread(buf, 1, sizeof(buf), f)) > 0;) out.append(buf, n);
      pclose(f);
    }
    return out;
  }

  // Containers on the daemon, stopped ones included, as the Engine's JSON.
  std::string Containers() const { return Api("'http://x/v1.41/containers/json?all=1'"); }

 private:
  DockerDaemon() = default;
  std::string Curl() const { return absl::StrCat("curl -s --unix-socket ", socket(), " "); }
  bool Run(const std::string& command) const { return std::system(command.c_str()) == 0; }

  std::string dir_;
  pid_t pid_ = 0;
  bool keep_dir_ = false;
};

// One daemon per test process, started on first use and stopped at exit;
// null, with the reason in `why`, when it cannot start.
inline DockerDaemon* SharedDockerDaemon(std::string& why) {
  static std::string failure;
  static const std::unique_ptr<DockerDaemon> daemon = DockerDaemon::Start(failure);
  why = failure;
  return daemon.get();
}

}  // namespace taskgrid

// In a fixture's SetUp: without a daemon the container tests fail in CI (so
// they can never pass silently) and are skipped, saying so, elsewhere.
#define TASKGRID_REQUIRE_DOCKER(daemon, why)                                            \
  do {                                                                                 \
    if ((daemon) == nullptr) {                                                         \
      if (std::getenv("CI") != nullptr) FAIL() << "no Docker daemon could start: " << (why); \
      GTEST_SKIP() << "*** CONTAINER TESTS NOT RUN: no Docker daemon: " << (why);      \
    }                                                                                  \
  } while (0)

#endif  // TASKGRID_SERVICES_COMMON_TESTING_DOCKER_DAEMON_H_
