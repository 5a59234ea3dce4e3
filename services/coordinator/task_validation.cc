#include "services/coordinator/task_validation.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "services/common/enum_names.h"
#include "services/common/proto_time.h"
#include "services/common/secret_redactor.h"
#include "services/common/status_util.h"
#include "services/common/task_resources.h"

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

// Each secret becomes a few dozen patterns in the agent's redactor.
constexpr size_t kMaxSecrets = 16;
constexpr size_t kMaxSecretBytes = 4096;

absl::Status ValidateEnv(absl::string_view field,
                         const google::protobuf::Map<std::string, std::string>& env) {
  if (env.size() > kMaxEnvEntries) {
    return Invalid(field, absl::StrCat("at most ", kMaxEnvEntries, " variables"));
  }
  size_t bytes = 0;
  for (const auto& [k, v] : env) {
    if (k.empty() || k.find('=') != std::string::npos || HasNul(k) || HasNul(v)) {
      return Invalid(field, absl::StrCat("invalid variable name \"", k, "\""));
    }
    bytes += k.size() + v.size() + 2;
  }
  if (bytes > kMaxEnvBytes) return Invalid(field, absl::StrCat("larger than ", kMaxEnvBytes, " bytes"));
  return absl::OkStatus();
}

// Printable, no spaces, at most `max` bytes: image references, container
// names and ids, network modes.
absl::Status ValidateWord(absl::string_view field, absl::string_view s, size_t max) {
  if (s.size() > max) return Invalid(field, absl::StrCat("longer than ", max, " bytes"));
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) {
      return Invalid(field, "must not contain spaces or control characters");
    }
  }
  return absl::OkStatus();
}

// A task's limits, wherever they are set (spec.resources, or a container's own).
struct LimitFields {
  const char* memory;
  const char* cpus;
  const char* pids;
};
absl::Status ValidateLimits(const LimitFields& fields, int64_t memory, double cpus, int64_t pids,
                            bool container) {
  const int64_t least = container ? kMinContainerMemoryBytes : kMinTaskMemoryBytes;
  if (memory < 0 || (memory > 0 && memory < least)) {
    return Invalid(fields.memory, absl::StrCat("must be 0 (no limit) or at least ", least, " (",
                                               FormatBytes(least),
                                               container ? " for a container" : "", "), got ",
                                               memory));
  }
  if (!(cpus == 0 || (cpus >= 0.01 && cpus <= 1024))) {  // Also refuses NaN.
    return Invalid(fields.cpus, absl::StrCat("must be 0 (no limit) or 0.01 to 1024, got ", cpus));
  }
  if (pids < 0 || pids > kMaxPids) {
    return Invalid(fields.pids,
                   absl::StrCat("must be 0 (no limit) or 1 to ", kMaxPids, ", got ", pids));
  }
  return absl::OkStatus();
}

absl::Status ValidateDockerSpec(const v1::DockerSpec& d) {
  using Spec = v1::DockerSpec;
  if (!Spec::Operation_IsValid(d.operation())) {
    return Invalid("spec.docker.operation", absl::StrCat("unknown operation ", d.operation()));
  }
  const Spec::Operation op = d.operation();
  const std::string op_name = EnumWord(Spec::Operation_Name(op), "DOCKER_OPERATION_");
  const bool run = op == Spec::DOCKER_OPERATION_RUN;
  TASKGRID_RETURN_IF_ERROR(ValidateWord("spec.docker.image", d.image(), 512));
  TASKGRID_RETURN_IF_ERROR(ValidateWord("spec.docker.container", d.container(), kMaxIdBytes));
  if ((run || op == Spec::DOCKER_OPERATION_PULL) && d.image().empty()) {
    return Invalid("spec.docker.image", absl::StrCat("is required for ", op_name));
  }
  if (!run && op != Spec::DOCKER_OPERATION_PULL && op != Spec::DOCKER_OPERATION_LIST &&
      d.container().empty()) {
    return Invalid("spec.docker.container",
                   absl::StrCat("is required for ", op_name, " (a container id or name)"));
  }
  if (!run && (d.command_size() > 0 || d.env_size() > 0 || d.memory_bytes() != 0 ||
               d.cpus() != 0 || d.pids_limit() != 0 || !d.network().empty() ||
               d.mounts_size() > 0 || d.keep() || !d.name().empty() ||
               !d.working_dir().empty() || !d.user().empty())) {
    return Invalid("spec.docker", absl::StrCat("command, env, working_dir, user, limits, network, "
                                               "mounts, keep and name apply to run, not to ",
                                               op_name));
  }
  size_t command_bytes = 0;
  for (const auto& a : d.command()) {
    if (HasNul(a)) return Invalid("spec.docker.command", "contains a NUL byte");
    command_bytes += a.size() + 1;
  }
  if (command_bytes > kMaxCommandBytes) {
    return Invalid("spec.docker.command", absl::StrCat("longer than ", kMaxCommandBytes, " bytes"));
  }
  TASKGRID_RETURN_IF_ERROR(ValidateEnv("spec.docker.env", d.env()));
  if (!d.working_dir().empty() && (d.working_dir()[0] != '/' || HasNul(d.working_dir()))) {
    return Invalid("spec.docker.working_dir", "must be an absolute path");
  }
  if (d.user().size() > kMaxIdBytes || HasNul(d.user())) {
    return Invalid("spec.docker.user", "must be a user name or uid[:gid]");
  }
  TASKGRID_RETURN_IF_ERROR(ValidateLimits({"spec.docker.memory_bytes", "spec.docker.cpus",
                                           "spec.docker.pids_limit"},
                                          d.memory_bytes(), d.cpus(), d.pids_limit(), true));
  TASKGRID_RETURN_IF_ERROR(ValidateWord("spec.docker.network", d.network(), 64));
  if (d.mounts_size() > static_cast<int>(kMaxMounts)) {
    return Invalid("spec.docker.mounts", absl::StrCat("at most ", kMaxMounts, " mounts"));
  }
  for (const auto& m : d.mounts()) {
    for (const std::string* p : {&m.source(), &m.target()}) {
      if (p->empty() || (*p)[0] != '/' || HasNul(*p) || p->size() > 4096) {
        return Invalid("spec.docker.mounts",
                       absl::StrCat("source and target must be absolute paths, got \"", *p, "\""));
      }
    }
    if (m.target() == "/") return Invalid("spec.docker.mounts", "target must not be /");
  }
  if (!d.name().empty()) {
    const std::string& n = d.name();
    bool ok = n.size() <= 128 && absl::ascii_isalnum(n[0]);
    for (char c : n) ok = ok && (absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-');
    if (!ok) {
      return Invalid("spec.docker.name",
                     "must start with a letter or digit and hold only letters, digits, _ . - "
                     "(at most 128)");
    }
  }
  if (d.has_stop_timeout()) {
    TASKGRID_RETURN_IF_ERROR(ValidateDuration("spec.docker.stop_timeout", d.stop_timeout(),
                                              absl::ZeroDuration(), absl::Hours(1)));
  }
  return absl::OkStatus();
}

absl::Status ValidateResources(const v1::TaskSpec& spec) {
  const v1::Resources& r = spec.resources();
  TASKGRID_RETURN_IF_ERROR(ValidateLimits({"spec.resources.memory_bytes", "spec.resources.cpus",
                                           "spec.resources.pids"},
                                          r.memory_bytes(), r.cpus(), r.pids(), spec.has_docker()));
  if (spec.has_docker()) {
    const v1::DockerSpec& d = spec.docker();
    for (auto [field, mine, theirs] :
         {std::tuple{"memory_bytes", r.memory_bytes() != 0 && d.memory_bytes() != 0 &&
                                         r.memory_bytes() != d.memory_bytes(), "memory_bytes"},
          std::tuple{"cpus", r.cpus() != 0 && d.cpus() != 0 && r.cpus() != d.cpus(), "cpus"},
          std::tuple{"pids", r.pids() != 0 && d.pids_limit() != 0 && r.pids() != d.pids_limit(),
                     "pids_limit"}}) {
      if (mine) {
        return Invalid(absl::StrCat("spec.resources.", field),
                       absl::StrCat("differs from spec.docker.", theirs, ": set it in one"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateId(absl::string_view field, absl::string_view id, bool required) {
  if (id.empty()) return required ? Invalid(field, "is required") : absl::OkStatus();
  return ValidateWord(field, id, kMaxIdBytes);
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
  TASKGRID_RETURN_IF_ERROR(ValidateEnv("spec.secret_env", spec.secret_env()));
  if (spec.secret_env_size() > static_cast<int>(kMaxSecrets)) {
    return Invalid("spec.secret_env", absl::StrCat("at most ", kMaxSecrets, " secrets"));
  }
  const auto& env = spec.has_docker() ? spec.docker().env() : spec.shell().env();
  for (const auto& [name, value] : spec.secret_env()) {
    if (value.size() < SecretRedactor::kMinSecretBytes || value.size() > kMaxSecretBytes) {
      return Invalid("spec.secret_env",
                     absl::StrCat("the value of ", name, " must be ", SecretRedactor::kMinSecretBytes,
                                  " to ", kMaxSecretBytes,
                                  " bytes (shorter ones cannot be redacted from output)"));
    }
    if (env.contains(name)) {
      return Invalid("spec.secret_env", absl::StrCat(name, " is also in env: set it in one"));
    }
  }
  if (spec.max_output_bytes() < 0) return Invalid("spec.max_output_bytes", "must not be negative");
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
  TASKGRID_RETURN_IF_ERROR(ValidateResources(spec));
  if (spec.has_docker()) return ValidateDockerSpec(spec.docker());
  if (!spec.has_shell()) {
    return Invalid("spec.shell", "is required (the command to run, or spec.docker for a container)");
  }
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
  TASKGRID_RETURN_IF_ERROR(ValidateEnv("spec.shell.env", shell.env()));
  if (HasNul(shell.cwd())) return Invalid("spec.shell.cwd", "contains a NUL byte");
  if (shell.stdin().size() > kMaxStdinBytes) {
    return Invalid("spec.shell.stdin", absl::StrCat("larger than ", kMaxStdinBytes, " bytes"));
  }
  return absl::OkStatus();
}

uint32_t TargetShare::Of(size_t targets) const {
  if (count > 0) return count;
  if (percent == 0) return 0;
  return static_cast<uint32_t>(std::max<size_t>(1, (targets * percent + 99) / 100));
}

absl::StatusOr<TargetShare> ParseTargetShare(absl::string_view field, absl::string_view text) {
  TargetShare share;
  if (text.empty()) return share;
  absl::string_view number = text;
  const bool percent = absl::ConsumeSuffix(&number, "%");
  uint32_t n = 0;
  if (!absl::SimpleAtoi(number, &n) || n == 0 || n > (percent ? 100u : 100'000u)) {
    return Invalid(field, absl::StrCat("\"", text.substr(0, 64),
                                       "\" is not a count of 1 to 100000 or a percentage of 1% "
                                       "to 100% (like 10 or 25%)"));
  }
  (percent ? share.percent : share.count) = n;
  return share;
}

absl::Status InRunTemplate(const absl::Status& s) {
  absl::string_view message = s.message();
  if (s.ok() || !absl::ConsumePrefix(&message, "spec.")) return s;
  return absl::Status(s.code(), absl::StrCat("spec.task.", message));
}

absl::Status ValidateTargeting(const v1::TaskSpec& spec) {
  if (!spec.agent_id().empty() && !spec.selector().empty()) {
    return Invalid("spec.selector",
                   "spec.agent_id and spec.selector are mutually exclusive: pin one agent or "
                   "select agents by label");
  }
  return absl::OkStatus();
}

namespace {

// kInvalidArgument naming `field` for a value `known` refuses, and for 0
// where 0 is the unspecified value.
template <typename Values>
absl::Status ValidateEnums(absl::string_view field, const Values& values, bool (*known)(int),
                           bool zero_is_unspecified = true) {
  for (int v : values) {
    if (!known(v) || (v == 0 && zero_is_unspecified)) {
      return Invalid(field, absl::StrCat("unknown value ", v));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateListRequest(const v1::ListRequest& request) {
  TASKGRID_RETURN_IF_ERROR(ValidateEnums("status", request.status(), v1::TaskStatus_IsValid));
  // PRIORITY_LOW is 0.
  return ValidateEnums("priority", request.priority(), v1::Priority_IsValid, false);
}

absl::Status ValidateWatchRequest(const v1::WatchRequest& request) {
  return ValidateEnums("types", request.types(), v1::EventType_IsValid);
}

absl::Status ValidateRunSpec(const v1::RunSpec& spec) {
  if (!spec.has_task()) return Invalid("spec.task", "is required (what every target runs)");
  TASKGRID_RETURN_IF_ERROR(InRunTemplate(ValidateTaskSpec(spec.task())));
  if (!spec.task().agent_id().empty()) {
    return Invalid("spec.task.agent_id",
                   "must be empty: a run picks its agents with spec.task.selector");
  }
  TASKGRID_RETURN_IF_ERROR(ParseTargetShare("spec.max_concurrency", spec.max_concurrency()).status());
  TASKGRID_RETURN_IF_ERROR(ParseTargetShare("spec.max_errors", spec.max_errors()).status());
  if (spec.has_offline_timeout()) {
    TASKGRID_RETURN_IF_ERROR(ValidateDuration("spec.offline_timeout", spec.offline_timeout(),
                                              absl::Milliseconds(1), absl::Hours(24 * 30)));
  }
  return absl::OkStatus();
}

}  // namespace taskgrid
