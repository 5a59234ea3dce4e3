// Small test helpers Debian's Abseil and GoogleTest lack: a status matcher,
// a bounded wait for real I/O, loopback addresses and ports, whether a
// process is gone, and the pids a test process printed.
#ifndef TASKGRID_SERVICES_COMMON_TESTING_TEST_UTIL_H_
#define TASKGRID_SERVICES_COMMON_TESTING_TEST_UTIL_H_

#include <gmock/gmock.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace taskgrid {

inline absl::Status GetStatus(const absl::Status& s) { return s; }
template <typename T>
absl::Status GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER_P(StatusIs, code, "has status code " + testing::PrintToString(code)) {
  const absl::Status s = GetStatus(arg);
  *result_listener << "status is " << s.ToString();
  return s.code() == code;
}

// The code, and a message that `message_matcher` accepts.
MATCHER_P2(StatusIs, code, message_matcher,
           "has status code " + testing::PrintToString(code) + " and a matching message") {
  const absl::Status s = GetStatus(arg);
  *result_listener << "status is " << s.ToString();
  return s.code() == code &&
         testing::Matches(message_matcher)(std::string(s.message()));
}

// Polls `cond` until it holds or `timeout` passes; returns its last value.
inline bool WaitFor(const std::function<bool()>& cond, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!cond()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

// 127.0.0.1:port (0: any port, for bind).
inline sockaddr_in LoopbackAddress(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
}

// A loopback TCP port nobody listens on right now.
inline int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = LoopbackAddress(0);
  socklen_t len = sizeof(addr);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// True when `pid` no longer runs: no /proc entry, or a zombie.
inline bool ProcessGone(int64_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return true;
  const size_t paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size() || line[paren + 2] == 'Z';
}

// The pids in `text`, one per line (what `echo $!` printed).
inline std::vector<pid_t> ParsePids(const std::string& text) {
  std::vector<pid_t> pids;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    pid_t pid = 0;
    if (absl::SimpleAtoi(line, &pid)) pids.push_back(pid);
  }
  return pids;
}

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_TESTING_TEST_UTIL_H_
