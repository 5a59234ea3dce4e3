// Who may do what at the coordinator's client edge: the caller's API key
// (scopes and policy), per-key quotas (submit rate, unfinished tasks, open
// streams, runtime, output), and the audit entry for every mutating call and
// every refusal. Shared by TaskService and MonitoringService.
#ifndef TASKGRID_SERVICES_COORDINATOR_ACCESS_CONTROL_H_
#define TASKGRID_SERVICES_COORDINATOR_ACCESS_CONTROL_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "services/common/auth.h"
#include "services/common/clock.h"
#include "services/common/rate_limiter.h"
#include "services/coordinator/task_registry.h"

namespace taskgrid {

// The authenticated caller of one call.
struct Caller {
  std::string actor;  // "key:NAME", or "anonymous" when no keys are configured.
  std::string key;    // The key's name; empty when anonymous.
  uint32_t scopes = 0;
  KeyPolicy policy;
  std::string peer;  // Where the call came from.

  bool Has(Scope s) const;
};

// Thread-safe. Outlived by the registry.
class AccessControl {
 public:
  // `inline_keys` as ApiKeys::Parse takes them, `keys_file` as LoadFile.
  static absl::StatusOr<std::unique_ptr<AccessControl>> Create(TaskRegistry& registry,
                                                               const Clock& clock,
                                                               std::string inline_keys,
                                                               std::string keys_file);

  // Whether callers need a key (any is configured).
  bool keys_required() const ABSL_LOCKS_EXCLUDED(mu_);

  // Reads the keys again (SIGHUP); on an error keeps the current ones.
  absl::Status Reload() ABSL_LOCKS_EXCLUDED(mu_);

  // The caller of `ctx` if its key has `scope`: kUnauthenticated or
  // kPermissionDenied otherwise, audited as `action`.
  absl::StatusOr<Caller> Authorize(grpc::CallbackServerContext* ctx, Scope scope,
                                   absl::string_view action) ABSL_LOCKS_EXCLUDED(mu_);

  // Applies the key's policy to a submit of `spec`: refuses task types it
  // does not allow and selectors outside its own (which it adds), and
  // returns the limits the registry enforces. Refusals are audited as
  // `action`.
  absl::StatusOr<SubmitLimits> AdmitSubmit(const Caller& caller, v1::TaskSpec& spec,
                                           absl::string_view action) ABSL_LOCKS_EXCLUDED(mu_);
  // Takes `count` submits from the caller's submit_rate (kResourceExhausted
  // beyond, or for a batch larger than its burst).
  absl::Status TakeSubmits(const Caller& caller, int count, absl::string_view action)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Cancel and Delete of a task, or cancel of a run: the cancel scope, or the
  // submit scope on what the caller submitted.
  absl::Status MayChangeTask(const Caller& caller, absl::string_view field, const std::string& id,
                             absl::string_view action);

  // Counts an open Watch stream until the returned handle is released;
  // kResourceExhausted beyond the key's max_streams.
  absl::StatusOr<std::shared_ptr<void>> OpenStream(const Caller& caller, absl::string_view action)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Appends one audit entry of `action` for each (target, outcome).
  void RecordEach(const Caller& caller, absl::string_view action,
                  const std::vector<std::pair<std::string, absl::Status>>& results);
  // Appends the audit entry of `action` on `target` with its outcome.
  void Record(const Caller& caller, absl::string_view action, absl::string_view target,
              const absl::Status& outcome);

 private:
  AccessControl(TaskRegistry& registry, const Clock& clock, std::string inline_keys,
                std::string keys_file, ApiKeys keys);
  // Audits `status` (a refusal) and returns it.
  absl::Status Refuse(const Caller& caller, absl::string_view action, absl::Status status);

  TaskRegistry& registry_;
  const std::string inline_keys_;
  const std::string keys_file_;
  static constexpr double kRefusalsPerSecond = 10;
  static constexpr double kRefusalsBurst = 100;
  RateLimiter submits_;
  RateLimiter refusals_;  // Audited refusals per peer host.
  mutable absl::Mutex mu_;
  std::shared_ptr<const ApiKeys> keys_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_ACCESS_CONTROL_H_
