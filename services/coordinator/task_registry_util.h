// Small rules the registry's translation units share: spec defaults, status
// and priority names, and how a selector matches an agent's labels.
#ifndef TASKGRID_SERVICES_COORDINATOR_TASK_REGISTRY_UTIL_H_
#define TASKGRID_SERVICES_COORDINATOR_TASK_REGISTRY_UTIL_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "services/common/proto_time.h"
#include "taskgrid/v1/task.pb.h"

namespace taskgrid::registry {

inline constexpr char kRedacted[] = "[REDACTED]";
inline constexpr int kDefaultPageSize = 100;
inline constexpr int kMaxPageSize = 1000;

// A spec as readers see it: secret names without their values.
inline void RedactSecrets(v1::TaskSpec& spec) {
  for (auto& [name, value] : *spec.mutable_secret_env()) value = kRedacted;
}

// Idempotency keys are each owner's own: another key's choice of the same
// word never hands over its task.
inline std::string IdempotencyKey(const std::string& owner, const std::string& key) {
  return absl::StrCat(owner, "\n", key);
}

inline int StreamIndex(v1::OutputStream s) { return s == v1::OUTPUT_STREAM_STDERR ? 1 : 0; }

inline std::string StatusName(v1::TaskStatus s) {
  return absl::AsciiStrToLower(v1::TaskStatus_Name(s).substr(sizeof("TASK_STATUS_") - 1));
}

inline std::string PriorityName(v1::Priority p) {
  return absl::AsciiStrToLower(v1::Priority_Name(p).substr(sizeof("PRIORITY_") - 1));
}

// How long a task may wait in the queue (from submit, or from a retry).
inline absl::Duration QueueWindow(const v1::TaskSpec& spec, absl::Duration timeout) {
  return spec.has_queue_timeout() ? FromProto(spec.queue_timeout()) : timeout;
}

inline v1::Priority PriorityOf(const v1::TaskSpec& spec) {
  return spec.has_priority() ? spec.priority() : v1::PRIORITY_MEDIUM;
}

inline bool SelectorMatches(const google::protobuf::Map<std::string, std::string>& selector,
                            const google::protobuf::Map<std::string, std::string>& labels) {
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

// Agents with a reachable Docker daemon label themselves docker=true.
inline bool RunsContainers(const google::protobuf::Map<std::string, std::string>& labels) {
  auto it = labels.find("docker");
  return it != labels.end() && it->second == "true";
}

inline std::string FormatSelector(const google::protobuf::Map<std::string, std::string>& selector) {
  std::map<std::string, std::string> sorted(selector.begin(), selector.end());
  return absl::StrJoin(sorted, ",", absl::PairFormatter("="));
}

// Failed, timed out or lost: what a run's max_errors counts.
inline bool IsError(v1::TaskStatus s) {
  return s == v1::TASK_STATUS_FAILED || s == v1::TASK_STATUS_TIMED_OUT ||
         s == v1::TASK_STATUS_LOST;
}

// List page tokens: the sequence number to continue below.
inline std::string EncodePageToken(uint64_t seq) {
  return absl::WebSafeBase64Escape(absl::StrCat("v1:", seq));
}

inline absl::StatusOr<uint64_t> DecodePageToken(const std::string& token) {
  std::string raw;
  uint64_t seq = 0;
  if (!absl::WebSafeBase64Unescape(token, &raw) || raw.rfind("v1:", 0) != 0 ||
      !absl::SimpleAtoi(raw.substr(3), &seq)) {
    return absl::InvalidArgumentError("page_token: malformed (use next_page_token as returned)");
  }
  return seq;
}

// A list request's page: entries below `before` (by sequence number), at
// most `size` of them. kInvalidArgument for a bad page_size or token.
struct Page {
  uint64_t before = UINT64_MAX;
  int size = kDefaultPageSize;
};
inline absl::StatusOr<Page> ParsePage(int32_t page_size, const std::string& page_token) {
  if (page_size < 0 || page_size > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: must be 0 to ", kMaxPageSize, ", got ", page_size));
  }
  Page page;
  if (page_size > 0) page.size = page_size;
  if (!page_token.empty()) {
    absl::StatusOr<uint64_t> before = DecodePageToken(page_token);
    if (!before.ok()) return before.status();
    page.before = *before;
  }
  return page;
}

}  // namespace taskgrid::registry

#endif  // TASKGRID_SERVICES_COORDINATOR_TASK_REGISTRY_UTIL_H_
