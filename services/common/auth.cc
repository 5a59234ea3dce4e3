#include "services/common/auth.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace taskgrid {

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  // Length differences still leak, which reveals nothing useful about a
  // random key; the content comparison never exits early.
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? a[i] : 0;
    const unsigned char y = i < b.size() ? b[i] : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

bool IsLoopbackAddress(absl::string_view address) {
  absl::string_view host = address;
  if (absl::StartsWith(host, "[")) {
    host = host.substr(1, host.find(']') == absl::string_view::npos ? absl::string_view::npos
                                                                    : host.find(']') - 1);
    return host == "::1";
  }
  if (const size_t colon = host.rfind(':'); colon != absl::string_view::npos) {
    host = host.substr(0, colon);
  }
  return host == "localhost" || absl::StartsWith(host, "127.");
}

absl::StatusOr<ApiKeys> ApiKeys::Parse(absl::string_view spec) {
  ApiKeys keys;
  for (absl::string_view entry : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    entry = absl::StripAsciiWhitespace(entry);
    const size_t colon = entry.rfind(':');
    if (colon == absl::string_view::npos || colon == 0) {
      return absl::InvalidArgumentError(
          "api_keys: entry must be KEY:SCOPE (scope read, submit or admin)");
    }
    const absl::string_view scope = entry.substr(colon + 1);
    Scope s;
    if (scope == "read") {
      s = Scope::kRead;
    } else if (scope == "submit") {
      s = Scope::kSubmit;
    } else if (scope == "admin") {
      s = Scope::kAdmin;
    } else {
      return absl::InvalidArgumentError("api_keys: unknown scope \"" + std::string(scope) +
                                        "\" (want read, submit or admin)");
    }
    keys.keys_.emplace_back(std::string(entry.substr(0, colon)), s);
  }
  return keys;
}

absl::Status ApiKeys::Check(absl::string_view presented, Scope needed) const {
  if (keys_.empty()) return absl::OkStatus();
  if (presented.empty()) {
    return absl::UnauthenticatedError("missing API key (x-api-key or authorization: Bearer)");
  }
  const std::pair<std::string, Scope>* found = nullptr;
  for (const auto& key : keys_) {  // No early exit: every key is compared.
    if (ConstantTimeEquals(key.first, presented)) found = &key;
  }
  if (found == nullptr) return absl::UnauthenticatedError("unknown API key");
  if (static_cast<int>(found->second) < static_cast<int>(needed)) {
    return absl::PermissionDeniedError("API key lacks the scope this call needs");
  }
  return absl::OkStatus();
}

absl::Status AgentTokens::Check(absl::string_view token) const {
  if (tokens_.empty()) return absl::OkStatus();
  bool ok = false;
  for (const auto& t : tokens_) ok |= ConstantTimeEquals(t, token);
  return ok ? absl::OkStatus() : absl::UnauthenticatedError("agent token rejected");
}

}  // namespace taskgrid
