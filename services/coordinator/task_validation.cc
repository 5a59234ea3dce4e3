#include "services/coordinator/task_validation.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "services/common/proto_time.h"
#include "services/common/status_util.h"

namespace taskgrid {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view reason) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", reason));
}

absl::Status ValidateDuration(absl::string_view field, const google::protobuf::Duration& d,
                              absl::Duration min, absl::Duration max) {
  if (d.nanos() < 0 || d.nanos() > 999'999'999 || (d.seconds() < 0)) {
    return Invalid(field, "must be a non-negative duration");
  }
  const absl::Duration v = FromProto(d);
  if (v < min || v > max) {
    return Invalid(field,
                   absl::StrCat("must be between ", absl::FormatDuration(min), " and ",
                                absl::FormatDuration(max), ", got ", absl::FormatDuration(v)));
  }
  return absl::OkStatus();
}

bool HasNul(absl::string_view s) { return s.find('\0') != absl::string_view::npos; }

}  // namespace

absl::Status ValidateId(absl::string_view field, absl::string_view id, bool required) {
  if (id.empty()) return required ? Invalid(field, "is required") : absl::OkStatus();
  if (id.size() > kMaxIdBytes)
    return Invalid(field, absl::StrCat("longer than ", kMaxIdBytes, " bytes"));
  for (char c : id) {
    if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) {
      return Invalid(field, "must not contain spaces or control characters");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTaskSpec(const v1::TaskSpec& spec) {
  if (spec.type().size() > kMaxTypeBytes) {
    return Invalid("spec.type", absl::StrCat("longer than ", kMaxTypeBytes, " bytes"));
  }
  if (spec.description().size() > kMaxDescriptionBytes) {
    return Invalid("spec.description",
                   absl::StrCat("longer than ", kMaxDescriptionBytes, " bytes"));
  }
  if (spec.has_priority() && !v1::Priority_IsValid(spec.priority())) {
    return Invalid("spec.priority",
                   absl::StrCat("must be 0 (low) to 3 (critical), got ", spec.priority()));
  }
  if (spec.tags_size() > static_cast<int>(kMaxTags)) {
    return Invalid("spec.tags", absl::StrCat("at most ", kMaxTags, " tags"));
  }
  for (const auto& tag : spec.tags()) {
    if (tag.empty() || tag.size() > kMaxTagBytes || HasNul(tag)) {
      return Invalid("spec.tags", absl::StrCat("each tag must be 1 to ", kMaxTagBytes, " bytes"));
    }
  }
  TASKGRID_RETURN_IF_ERROR(ValidateId("spec.agent_id", spec.agent_id(), false));
  if (!spec.agent_id().empty() && !spec.selector().empty()) {
    return Invalid("spec.selector", "set either agent_id or selector, not both");
  }
  if (spec.selector_size() > static_cast<int>(kMaxSelectorEntries)) {
    return Invalid("spec.selector", absl::StrCat("at most ", kMaxSelectorEntries, " labels"));
  }
  for (const auto& [k, v] : spec.selector()) {
    if (k.empty() || k.size() > kMaxIdBytes || v.size() > kMaxIdBytes) {
      return Invalid("spec.selector", "label keys must be 1 to 256 bytes, values at most 256");
    }
  }
  if (spec.has_timeout()) {
    TASKGRID_RETURN_IF_ERROR(ValidateDuration("spec.timeout", spec.timeout(), absl::Milliseconds(1),
                                              absl::Hours(24 * 30)));
  }
  if (spec.has_queue_timeout()) {
    TASKGRID_RETURN_IF_ERROR(ValidateDuration("spec.queue_timeout", spec.queue_timeout(),
                                              absl::Milliseconds(1), absl::Hours(24 * 30)));
  }
  if (spec.has_kill_grace()) {
    TASKGRID_RETURN_IF_ERROR(ValidateDuration("spec.kill_grace", spec.kill_grace(),
                                              absl::ZeroDuration(), absl::Hours(1)));
  }
  if (spec.has_retry()) {
    const v1::RetryPolicy& r = spec.retry();
    if (r.max_attempts() > 100) {
      return Invalid("spec.retry.max_attempts",
                     absl::StrCat("at most 100, got ", r.max_attempts()));
    }
    if (r.has_backoff()) {
      TASKGRID_RETURN_IF_ERROR(ValidateDuration("spec.retry.backoff", r.backoff(),
                                                absl::ZeroDuration(), absl::Hours(24)));
    }
    if (r.has_max_backoff()) {
      TASKGRID_RETURN_IF_ERROR(ValidateDuration("spec.retry.max_backoff", r.max_backoff(),
                                                absl::ZeroDuration(), absl::Hours(24)));
    }
  }
  if (spec.context().ByteSizeLong() > kMaxContextBytes) {
    return Invalid("spec.context", absl::StrCat("larger than ", kMaxContextBytes, " bytes"));
  }
  if (!spec.has_shell()) return Invalid("spec.shell", "is required (the command to run)");
  const v1::ShellSpec& shell = spec.shell();
  if (shell.argv_size() > 0 && !shell.command().empty()) {
    return Invalid("spec.shell", "set either argv or command, not both");
  }
  size_t command_bytes = shell.command().size();
  if (shell.argv_size() == 0) {
    if (absl::StripAsciiWhitespace(shell.command()).empty()) {
      return Invalid("spec.shell.command", "is empty");
    }
    if (HasNul(shell.command())) return Invalid("spec.shell.command", "contains a NUL byte");
  } else {
    if (shell.argv(0).empty()) return Invalid("spec.shell.argv", "argv[0] (the program) is empty");
    for (const auto& a : shell.argv()) {
      if (HasNul(a)) return Invalid("spec.shell.argv", "contains a NUL byte");
      command_bytes += a.size() + 1;
    }
  }
  if (command_bytes > kMaxCommandBytes) {
    return Invalid(shell.argv_size() ? "spec.shell.argv" : "spec.shell.command",
                   absl::StrCat("longer than ", kMaxCommandBytes, " bytes"));
  }
  if (shell.env_size() > static_cast<int>(kMaxEnvEntries)) {
    return Invalid("spec.shell.env", absl::StrCat("at most ", kMaxEnvEntries, " variables"));
  }
  size_t env_bytes = 0;
  for (const auto& [k, v] : shell.env()) {
    if (k.empty() || k.find('=') != std::string::npos || HasNul(k) || HasNul(v)) {
      return Invalid("spec.shell.env", absl::StrCat("invalid variable name \"", k, "\""));
    }
    env_bytes += k.size() + v.size() + 2;
  }
  if (env_bytes > kMaxEnvBytes) {
    return Invalid("spec.shell.env", absl::StrCat("larger than ", kMaxEnvBytes, " bytes"));
  }
  if (HasNul(shell.cwd())) return Invalid("spec.shell.cwd", "contains a NUL byte");
  if (shell.stdin().size() > kMaxStdinBytes) {
    return Invalid("spec.shell.stdin", absl::StrCat("larger than ", kMaxStdinBytes, " bytes"));
  }
  return absl::OkStatus();
}

}  // namespace taskgrid
