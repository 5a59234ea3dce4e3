// Credentials shared by every service: scoped API keys for clients, constant-
// time comparison for secrets, and the loopback check behind "safe by default".
#ifndef TASKGRID_SERVICES_COMMON_AUTH_H_
#define TASKGRID_SERVICES_COMMON_AUTH_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace taskgrid {

// What a key may do; each scope includes the ones below it.
enum class Scope { kRead = 1, kSubmit = 2, kAdmin = 3 };

// Compares without an early exit, so timing does not reveal a prefix match.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// True for 127.0.0.0/8, [::1] and localhost addresses ("host:port").
bool IsLoopbackAddress(absl::string_view address);

// The configured client keys. Immutable after Parse; thread-safe.
class ApiKeys {
 public:
  ApiKeys() = default;
  // Parses "KEY:SCOPE,KEY:SCOPE" (scope: read, submit, admin). Returns
  // kInvalidArgument naming the entry that is malformed.
  static absl::StatusOr<ApiKeys> Parse(absl::string_view spec);

  bool empty() const { return keys_.empty(); }
  // OK when no keys are configured or `presented` has at least `needed`.
  // kUnauthenticated for a missing or unknown key, kPermissionDenied for a
  // key whose scope is too low.
  absl::Status Check(absl::string_view presented, Scope needed) const;

 private:
  std::vector<std::pair<std::string, Scope>> keys_;
};

// The agent tokens a coordinator accepts. Immutable; thread-safe.
class AgentTokens {
 public:
  AgentTokens() = default;
  explicit AgentTokens(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {}
  bool empty() const { return tokens_.empty(); }
  // OK when no tokens are configured or `token` matches one;
  // kUnauthenticated otherwise.
  absl::Status Check(absl::string_view token) const;

 private:
  std::vector<std::string> tokens_;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_AUTH_H_
