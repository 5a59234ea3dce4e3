// Credentials shared by every service: API keys with scopes and a policy,
// kept as SHA-256 hashes in a keys file; constant-time comparison for
// secrets; and the loopback check behind "safe by default".
#ifndef TASKGRID_SERVICES_COMMON_AUTH_H_
#define TASKGRID_SERVICES_COMMON_AUTH_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace taskgrid {

// What a key may do. submit and cancel include read; admin includes all.
// A submit key may also cancel and delete the tasks it submitted.
enum class Scope : uint32_t { kRead = 1, kSubmit = 2, kCancel = 4, kAdmin = 8 };

// Parses "read", "submit", "cancel", "admin" joined by `separator`.
absl::StatusOr<uint32_t> ParseScopes(absl::string_view text, char separator);
std::string ScopeNames(uint32_t scopes);
// Whether a key with `scopes` may act at `s`.
bool ScopesAllow(uint32_t scopes, Scope s);

// Limits on what a key's callers may do; zero or empty means no limit.
struct KeyPolicy {
  std::map<std::string, std::string> selector;  // Tasks run only on agents with these labels.
  std::vector<std::string> task_types;          // "shell", "docker".
  int max_running = 0;                          // Tasks submitted and not yet final.
  double submit_rate = 0;                       // Submits per second (bursts of as many).
  absl::Duration max_runtime = absl::ZeroDuration();
  int64_t max_output_bytes = 0;  // Per task.
  int max_streams = 0;           // Open Watch streams.
};

struct ApiKey {
  std::string name;
  std::string sha256;  // Lowercase hex of the key's SHA-256.
  uint32_t scopes = 0;
  KeyPolicy policy;

  // The keys-file line for this key.
  std::string ToLine() const;
};

// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(absl::string_view data);
// A new random key ("tgk_" and 43 base64url characters, 256 bits).
std::string NewApiKeySecret();
// The NAME and "sha256:HEX" that open a line of a keys or agent tokens
// file, into `name_out` and lower-case `sha256_out`; kInvalidArgument saying
// which is malformed.
absl::Status ParseNameAndHash(absl::string_view name, absl::string_view hash,
                              std::string& name_out, std::string& sha256_out);
// Calls `parse` with each line of `path` that is neither blank nor a #
// comment; its error comes back as "FLAG PATH line N: reason". kNotFound
// when the file cannot be read.
absl::Status ForEachConfigLine(const std::string& path, absl::string_view flag,
                               const std::function<absl::Status(absl::string_view)>& parse);

// Parses one keys-file line (see ApiKey::ToLine); kInvalidArgument naming
// the part that is malformed.
absl::StatusOr<ApiKey> ParseKeyLine(absl::string_view line);

// The configured client keys. Immutable after construction; thread-safe.
class ApiKeys {
 public:
  ApiKeys() = default;
  // Parses "KEY:SCOPE,KEY:SCOPE" (scopes joined by '+': "k:submit+cancel"),
  // keys given in the clear, each named "key-" and its hash's first 8 hex
  // digits. kInvalidArgument naming the entry that is malformed.
  static absl::StatusOr<ApiKeys> Parse(absl::string_view spec);
  // Reads a keys file: one key per line as written by `taskgrid keys
  // create`; blank lines and # comments ignored.
  static absl::StatusOr<ApiKeys> LoadFile(const std::string& path);
  // Both kinds together; either may be empty.
  static absl::StatusOr<ApiKeys> Load(absl::string_view spec, const std::string& path);

  bool empty() const { return keys_.empty(); }
  size_t size() const { return keys_.size(); }
  // The key `presented` is; kUnauthenticated for a missing or unknown key.
  // Compares against every key, so timing reveals nothing.
  absl::StatusOr<const ApiKey*> Find(absl::string_view presented) const;

 private:
  std::vector<ApiKey> keys_;
};

// Compares without an early exit, so timing does not reveal a prefix match.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// True for 127.0.0.0/8, [::1] and localhost addresses ("host:port").
bool IsLoopbackAddress(absl::string_view address);

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_AUTH_H_
