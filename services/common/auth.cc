#include "services/common/auth.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "services/common/byte_size.h"

namespace taskgrid {
namespace {

constexpr std::pair<Scope, const char*> kScopeNames[] = {
    {Scope::kRead, "read"}, {Scope::kSubmit, "submit"}, {Scope::kCancel, "cancel"},
    {Scope::kAdmin, "admin"}};

}  // namespace

absl::StatusOr<uint32_t> ParseScopes(absl::string_view text, char separator) {
  uint32_t scopes = 0;
  for (absl::string_view name : absl::StrSplit(text, separator, absl::SkipWhitespace())) {
    name = absl::StripAsciiWhitespace(name);
    bool known = false;
    for (const auto& [scope, word] : kScopeNames) {
      if (name == word) {
        scopes |= static_cast<uint32_t>(scope);
        known = true;
      }
    }
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown scope \"", name, "\" (want read, submit, cancel or admin)"));
    }
  }
  if (scopes == 0) return absl::InvalidArgumentError("no scope given (read, submit, cancel, admin)");
  return scopes;
}

std::string ScopeNames(uint32_t scopes) {
  std::vector<std::string> names;
  for (const auto& [scope, word] : kScopeNames) {
    if (scopes & static_cast<uint32_t>(scope)) names.push_back(word);
  }
  return absl::StrJoin(names, ",");
}

bool ScopesAllow(uint32_t scopes, Scope s) {
  if (scopes & static_cast<uint32_t>(Scope::kAdmin)) return true;
  if (s == Scope::kRead) return scopes != 0;
  return (scopes & static_cast<uint32_t>(s)) != 0;
}

std::string ApiKey::ToLine() const {
  std::string line = absl::StrCat(name, " sha256:", sha256, " scopes=", ScopeNames(scopes));
  if (!policy.selector.empty()) {
    absl::StrAppend(&line, " selector=", absl::StrJoin(policy.selector, ",", absl::PairFormatter("=")));
  }
  if (!policy.task_types.empty()) {
    absl::StrAppend(&line, " types=", absl::StrJoin(policy.task_types, ","));
  }
  if (policy.max_running > 0) absl::StrAppend(&line, " max_running=", policy.max_running);
  if (policy.submit_rate > 0) absl::StrAppend(&line, " submit_rate=", policy.submit_rate);
  if (policy.max_runtime > absl::ZeroDuration()) {
    absl::StrAppend(&line, " max_runtime=", absl::FormatDuration(policy.max_runtime));
  }
  if (policy.max_output_bytes > 0) absl::StrAppend(&line, " max_output=", policy.max_output_bytes);
  if (policy.max_streams > 0) absl::StrAppend(&line, " max_streams=", policy.max_streams);
  return line;
}

std::string Sha256Hex(absl::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(), nullptr);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), static_cast<size_t>(size)));
}

std::string NewApiKeySecret() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) std::abort();  // No entropy: never issue a key.
  return "tgk_" + absl::WebSafeBase64Escape(
                      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

absl::Status ParseNameAndHash(absl::string_view name, absl::string_view hash,
                              std::string& name_out, std::string& sha256_out) {
  if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) {
        return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-';
      })) {
    return absl::InvalidArgumentError("the name may hold only letters, digits, '.', '_', '-'");
  }
  if (!absl::ConsumePrefix(&hash, "sha256:") || hash.size() != 64 ||
      !std::all_of(hash.begin(), hash.end(), [](char c) { return absl::ascii_isxdigit(c); })) {
    return absl::InvalidArgumentError("the hash must be sha256: and 64 hex digits");
  }
  name_out = std::string(name);
  sha256_out = absl::AsciiStrToLower(hash);
  return absl::OkStatus();
}

absl::Status ForEachConfigLine(const std::string& path, absl::string_view flag,
                               const std::function<absl::Status(absl::string_view)>& parse) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(flag, ": cannot read ", path));
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text[0] == '#') continue;
    if (absl::Status s = parse(text); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, " ", path, " line ", number, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ApiKey> ParseKeyLine(absl::string_view line) {
  std::vector<absl::string_view> parts = absl::StrSplit(line, ' ', absl::SkipWhitespace());
  if (parts.size() < 3) {
    return absl::InvalidArgumentError("want NAME sha256:HEX scopes=... [option=value ...]");
  }
  ApiKey key;
  if (absl::Status s = ParseNameAndHash(parts[0], parts[1], key.name, key.sha256); !s.ok()) {
    return s;
  }
  for (size_t i = 2; i < parts.size(); ++i) {
    const auto [option, value] =
        std::pair<absl::string_view, absl::string_view>(absl::StrSplit(parts[i], absl::MaxSplits('=', 1)));
    auto bad = [&, option = option](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat(option, ": ", why));
    };
    int n = 0;
    if (option == "scopes") {
      absl::StatusOr<uint32_t> scopes = ParseScopes(value, ',');
      if (!scopes.ok()) return bad(scopes.status().message());
      key.scopes = *scopes;
    } else if (option == "selector") {
      for (absl::string_view pair : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
        const size_t eq = pair.find('=');
        if (eq == 0 || eq == absl::string_view::npos) return bad("want LABEL=VALUE,...");
        key.policy.selector[std::string(pair.substr(0, eq))] = std::string(pair.substr(eq + 1));
      }
    } else if (option == "types") {
      for (absl::string_view type : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
        if (type != "shell" && type != "docker") return bad("want shell and/or docker");
        key.policy.task_types.emplace_back(type);
      }
    } else if (option == "max_running" || option == "max_streams") {
      if (!absl::SimpleAtoi(value, &n) || n < 0) return bad("want a count");
      (option == "max_running" ? key.policy.max_running : key.policy.max_streams) = n;
    } else if (option == "submit_rate") {
      if (!absl::SimpleAtod(value, &key.policy.submit_rate) ||
          !std::isfinite(key.policy.submit_rate) || key.policy.submit_rate < 0) {
        return bad("want submits per second");
      }
    } else if (option == "max_runtime") {
      if (!absl::ParseDuration(value, &key.policy.max_runtime) ||
          key.policy.max_runtime < absl::ZeroDuration()) {
        return bad("want a duration such as 30m or 2h");
      }
    } else if (option == "max_output") {
      absl::StatusOr<int64_t> bytes = ParseByteSize(value);
      if (!bytes.ok()) return bad(bytes.status().message());
      key.policy.max_output_bytes = *bytes;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown option \"", option,
          "\" (scopes, selector, types, max_running, submit_rate, max_runtime, max_output, "
          "max_streams)"));
    }
  }
  if (key.scopes == 0) return absl::InvalidArgumentError("scopes: missing");
  return key;
}

absl::StatusOr<ApiKeys> ApiKeys::Parse(absl::string_view spec) {
  ApiKeys keys;
  for (absl::string_view entry : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    entry = absl::StripAsciiWhitespace(entry);
    const size_t colon = entry.rfind(':');
    if (colon == absl::string_view::npos || colon == 0) {
      return absl::InvalidArgumentError(
          "api_keys: entry must be KEY:SCOPE (scopes read, submit, cancel, admin, joined by +)");
    }
    absl::StatusOr<uint32_t> scopes = ParseScopes(entry.substr(colon + 1), '+');
    if (!scopes.ok()) return absl::InvalidArgumentError("api_keys: " + std::string(scopes.status().message()));
    ApiKey& key = keys.keys_.emplace_back();
    key.sha256 = Sha256Hex(entry.substr(0, colon));
    key.name = "key-" + key.sha256.substr(0, 8);
    key.scopes = *scopes;
  }
  return keys;
}

absl::StatusOr<ApiKeys> ApiKeys::LoadFile(const std::string& path) {
  ApiKeys keys;
  absl::Status s = ForEachConfigLine(path, "keys_file", [&](absl::string_view text) {
    absl::StatusOr<ApiKey> key = ParseKeyLine(text);
    if (!key.ok()) return key.status();
    for (const ApiKey& k : keys.keys_) {
      if (k.name == key->name) {
        return absl::InvalidArgumentError(absl::StrCat("the name \"", k.name, "\" is taken"));
      }
    }
    keys.keys_.push_back(std::move(*key));
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return keys;
}

absl::StatusOr<ApiKeys> ApiKeys::Load(absl::string_view spec, const std::string& path) {
  absl::StatusOr<ApiKeys> keys = Parse(spec);
  if (!keys.ok() || path.empty()) return keys;
  absl::StatusOr<ApiKeys> from_file = LoadFile(path);
  if (!from_file.ok()) return from_file.status();
  if (from_file->keys_.empty()) {
    // No keys means no checks: a file caught empty (mid-edit, truncated)
    // must not open every call. A reload keeps the keys it had.
    return absl::InvalidArgumentError(absl::StrCat(
        "keys file ", path, ": lists no keys; with none every call would be allowed"));
  }
  for (ApiKey& k : from_file->keys_) keys->keys_.push_back(std::move(k));
  return keys;
}

absl::StatusOr<const ApiKey*> ApiKeys::Find(absl::string_view presented) const {
  if (presented.empty()) {
    return absl::UnauthenticatedError("missing API key (x-api-key or authorization: Bearer)");
  }
  const std::string hash = Sha256Hex(presented);
  const ApiKey* found = nullptr;
  for (const ApiKey& key : keys_) {  // No early exit: every key is compared.
    if (ConstantTimeEquals(key.sha256, hash)) found = &key;
  }
  if (found == nullptr) return absl::UnauthenticatedError("unknown API key");
  return found;
}

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

}  // namespace taskgrid
