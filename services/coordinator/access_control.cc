#include "services/coordinator/access_control.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace taskgrid {
namespace {

std::string Metadata(grpc::CallbackServerContext* ctx, const char* name) {
  const auto& md = ctx->client_metadata();
  auto it = md.find(name);
  return it == md.end() ? "" : std::string(it->second.data(), it->second.size());
}

// The key a call presents: x-api-key, or authorization: Bearer KEY.
std::string PresentedKey(grpc::CallbackServerContext* ctx) {
  if (std::string key = Metadata(ctx, "x-api-key"); !key.empty()) return key;
  const std::string auth = Metadata(ctx, "authorization");
  return absl::StartsWithIgnoreCase(auth, "bearer ") ? auth.substr(7) : "";
}

// The peer, and the client a gateway says it forwards for: recorded as
// claimed, never trusted for a decision.
std::string PeerOf(grpc::CallbackServerContext* ctx) {
  std::string forwarded = Metadata(ctx, "x-forwarded-for").substr(0, 64);
  std::replace_if(
      forwarded.begin(), forwarded.end(), [](char c) { return c < 0x21 || c > 0x7e; }, '?');
  return forwarded.empty() ? ctx->peer() : absl::StrCat(forwarded, " via ", ctx->peer());
}

}  // namespace

bool Caller::Has(Scope s) const { return ScopesAllow(scopes, s); }

absl::StatusOr<std::unique_ptr<AccessControl>> AccessControl::Create(TaskRegistry& registry,
                                                                     const Clock& clock,
                                                                     std::string inline_keys,
                                                                     std::string keys_file) {
  absl::StatusOr<ApiKeys> keys = ApiKeys::Load(inline_keys, keys_file);
  if (!keys.ok()) return keys.status();
  return std::unique_ptr<AccessControl>(new AccessControl(
      registry, clock, std::move(inline_keys), std::move(keys_file), std::move(*keys)));
}

AccessControl::AccessControl(TaskRegistry& registry, const Clock& clock, std::string inline_keys,
                             std::string keys_file, ApiKeys keys)
    : registry_(registry),
      inline_keys_(std::move(inline_keys)),
      keys_file_(std::move(keys_file)),
      submits_(clock, 0, 0),
      refusals_(clock, kRefusalsPerSecond, kRefusalsBurst),
      keys_(std::make_shared<const ApiKeys>(std::move(keys))) {}

absl::Status AccessControl::Reload() {
  absl::StatusOr<ApiKeys> keys = ApiKeys::Load(inline_keys_, keys_file_);
  if (!keys.ok()) return keys.status();
  const size_t count = keys->size();
  {
    absl::MutexLock lock(&mu_);
    keys_ = std::make_shared<const ApiKeys>(std::move(*keys));
  }
  Caller coordinator;
  coordinator.actor = "coordinator";
  Record(coordinator, "keys.reload", absl::StrCat(count, " keys"), absl::OkStatus());
  return absl::OkStatus();
}

bool AccessControl::keys_required() const {
  absl::MutexLock lock(&mu_);
  return !keys_->empty();
}

absl::StatusOr<Caller> AccessControl::Authorize(grpc::CallbackServerContext* ctx, Scope scope,
                                                absl::string_view action) {
  std::shared_ptr<const ApiKeys> keys;
  {
    absl::MutexLock lock(&mu_);
    keys = keys_;
  }
  Caller caller;
  caller.peer = PeerOf(ctx);
  if (keys->empty()) {
    caller.actor = "anonymous";
    caller.scopes = static_cast<uint32_t>(Scope::kAdmin);
    return caller;
  }
  absl::StatusOr<const ApiKey*> key = keys->Find(PresentedKey(ctx));
  if (!key.ok()) {
    caller.actor = "unknown-key";
    return Refuse(caller, action, key.status());
  }
  caller.key = (*key)->name;
  caller.actor = "key:" + caller.key;
  caller.scopes = (*key)->scopes;
  caller.policy = (*key)->policy;
  if (!caller.Has(scope)) {
    const std::string needed = ScopeNames(static_cast<uint32_t>(scope));
    return Refuse(caller, action,
                  absl::PermissionDeniedError(absl::StrCat(
                      "key ", caller.key, " has scopes ", ScopeNames(caller.scopes), "; ",
                      action, " needs ", needed)));
  }
  return caller;
}

absl::StatusOr<SubmitLimits> AccessControl::AdmitSubmit(const Caller& caller, v1::TaskSpec& spec,
                                                        absl::string_view action) {
  const KeyPolicy& policy = caller.policy;
  const std::string type = spec.has_docker() ? "docker" : "shell";
  if (!policy.task_types.empty() &&
      std::find(policy.task_types.begin(), policy.task_types.end(), type) ==
          policy.task_types.end()) {
    return Refuse(caller, action,
                  absl::PermissionDeniedError(absl::StrCat(
                      "key ", caller.key, " may submit only ",
                      absl::StrJoin(policy.task_types, " and "), " tasks, not ", type)));
  }
  for (const auto& [label, value] : policy.selector) {
    auto it = spec.selector().find(label);
    if (it != spec.selector().end() && it->second != value) {
      return Refuse(caller, action,
                    absl::PermissionDeniedError(absl::StrCat(
                        "spec.selector: key ", caller.key, " may run tasks only on agents with ",
                        label, "=", value, ", not ", label, "=", it->second)));
    }
    (*spec.mutable_selector())[label] = value;
  }
  return SubmitLimits{caller.key, policy.max_running, policy.max_runtime, policy.max_output_bytes};
}

absl::Status AccessControl::TakeSubmits(const Caller& caller, int count, absl::string_view action) {
  const double rate = caller.policy.submit_rate;
  if (rate <= 0) return absl::OkStatus();
  const double burst = std::max(1.0, rate);
  if (count > burst) {
    return Refuse(caller, action,
                  absl::ResourceExhaustedError(absl::StrCat(
                      "a batch of ", count, " submits exceeds key ", caller.key, "'s burst of ",
                      burst, " (submit_rate ", rate, " per second); send smaller batches")));
  }
  for (int i = 0; i < count; ++i) {
    if (absl::Duration wait = submits_.Take(caller.key, rate, burst);
        wait > absl::ZeroDuration()) {
      return Refuse(caller, action,
                    absl::ResourceExhaustedError(absl::StrCat(
                        "key ", caller.key, " may submit ", rate, " tasks per second; retry in ",
                        absl::FormatDuration(absl::Ceil(wait, absl::Milliseconds(1))))));
    }
  }
  return absl::OkStatus();
}

absl::Status AccessControl::MayChangeTask(const Caller& caller, absl::string_view field, const std::string& id,
                                          absl::string_view action) {
  if (caller.Has(Scope::kCancel)) return absl::OkStatus();
  absl::StatusOr<std::string> owner = registry_.OwnerOf(field, id);
  if (!owner.ok()) return owner.status();
  if (caller.Has(Scope::kSubmit) && *owner == caller.key) return absl::OkStatus();
  const absl::string_view verb = action.substr(action.find('.') + 1);
  return Refuse(caller, action,
                absl::PermissionDeniedError(
                    caller.Has(Scope::kSubmit)
                        ? absl::StrCat("key ", caller.key, " may ", verb,
                                       " only tasks it submitted (or needs the cancel scope)")
                        : absl::StrCat("key ", caller.key, " has scopes ",
                                       ScopeNames(caller.scopes), "; ", action,
                                       " needs cancel (or submit, for its own tasks)")));
}

absl::StatusOr<std::shared_ptr<void>> AccessControl::OpenStream(const Caller& caller,
                                                                absl::string_view action) {
  const int limit = caller.policy.max_streams;
  if (limit <= 0) return std::shared_ptr<void>();
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    int& open = streams_[caller.key];
    if (open < limit) {
      ++open;
    } else {
      refused = absl::ResourceExhaustedError(absl::StrCat(
          "key ", caller.key, " already has ", open, " open streams, its max_streams"));
    }
  }
  if (!refused.ok()) return Refuse(caller, action, std::move(refused));
  return std::shared_ptr<void>(nullptr, [this, key = caller.key](void*) {
    absl::MutexLock lock(&mu_);
    if (--streams_[key] <= 0) streams_.erase(key);
  });
}

void AccessControl::Record(const Caller& caller, absl::string_view action,
                           absl::string_view target, const absl::Status& outcome) {
  registry_.Audit({NewAuditEntry(caller.actor, action, target, caller.peer, outcome)});
}

void AccessControl::RecordEach(const Caller& caller, absl::string_view action,
                               const std::vector<std::pair<std::string, absl::Status>>& results) {
  std::vector<v1::AuditEntry> entries;
  entries.reserve(results.size());
  for (const auto& [target, outcome] : results) {
    entries.push_back(NewAuditEntry(caller.actor, action, target, caller.peer, outcome));
  }
  registry_.Audit(std::move(entries));
}

absl::Status AccessControl::Refuse(const Caller& caller, absl::string_view action,
                                   absl::Status status) {
  // Refusals cost a caller nothing, so each peer's are audited at a bounded
  // rate: a flood cannot fill the store.
  const std::string host = caller.peer.substr(0, caller.peer.rfind(':'));
  if (refusals_.Take(host) == absl::ZeroDuration()) Record(caller, action, "", status);
  return status;
}

}  // namespace taskgrid
