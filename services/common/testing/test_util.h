// Small test helpers Debian's Abseil and GoogleTest lack: a status matcher
// and a bounded wait for real I/O.
#ifndef TASKGRID_SERVICES_COMMON_TESTING_TEST_UTIL_H_
#define TASKGRID_SERVICES_COMMON_TESTING_TEST_UTIL_H_

#include <gmock/gmock.h>

#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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

// Polls `cond` until it holds or `timeout` passes; returns its last value.
inline bool WaitFor(const std::function<bool()>& cond, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!cond()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_TESTING_TEST_UTIL_H_
