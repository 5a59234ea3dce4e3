#include "services/common/agent_tokens.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "services/common/auth.h"

namespace taskgrid {

bool AgentToken::MayClaim(absl::string_view agent_id) const {
  if (agents.empty()) return true;
  for (absl::string_view allowed : agents) {
    if (absl::ConsumeSuffix(&allowed, "*") ? absl::StartsWith(agent_id, allowed)
                                           : agent_id == allowed) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<AgentToken> ParseAgentTokenLine(absl::string_view line) {
  std::vector<absl::string_view> parts = absl::StrSplit(line, ' ', absl::SkipWhitespace());
  if (parts.size() < 2) {
    return absl::InvalidArgumentError(
        "want NAME sha256:HEX [agents=ID,PREFIX*,...] [labels=KEY=VALUE,KEY=*,...]");
  }
  AgentToken token;
  if (absl::Status s = ParseNameAndHash(parts[0], parts[1], token.name, token.sha256); !s.ok()) {
    return s;
  }
  for (size_t i = 2; i < parts.size(); ++i) {
    const auto [option, value] = std::pair<absl::string_view, absl::string_view>(
        absl::StrSplit(parts[i], absl::MaxSplits('=', 1)));
    if (option == "agents") {
      for (absl::string_view id : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
        token.agents.emplace_back(id);
      }
      if (token.agents.empty()) return absl::InvalidArgumentError("agents: want ID,PREFIX*,...");
    } else if (option == "labels") {
      token.labels.emplace();
      for (absl::string_view pair : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
        const size_t eq = pair.find('=');
        if (eq == 0 || eq == absl::string_view::npos) {
          return absl::InvalidArgumentError("labels: want KEY=VALUE or KEY=*,...");
        }
        (*token.labels)[std::string(pair.substr(0, eq))] = std::string(pair.substr(eq + 1));
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown option \"", option, "\" (agents, labels)"));
    }
  }
  return token;
}

absl::StatusOr<AgentTokens> AgentTokens::Parse(absl::string_view spec) {
  AgentTokens tokens;
  for (absl::string_view entry : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    entry = absl::StripAsciiWhitespace(entry);
    const size_t at = entry.rfind('@');
    const absl::string_view secret = entry.substr(0, at);
    if (secret.empty() || (at != absl::string_view::npos && at + 1 == entry.size())) {
      return absl::InvalidArgumentError("agent_tokens: want SECRET or SECRET@AGENT_ID, ...");
    }
    AgentToken& t = tokens.tokens_.emplace_back();
    t.sha256 = Sha256Hex(secret);
    t.name = "token-" + t.sha256.substr(0, 8);
    if (at != absl::string_view::npos) t.agents.emplace_back(entry.substr(at + 1));
  }
  return tokens;
}

absl::StatusOr<AgentTokens> AgentTokens::LoadFile(const std::string& path) {
  AgentTokens tokens;
  absl::Status s = ForEachConfigLine(path, "agent_tokens_file", [&](absl::string_view text) {
    absl::StatusOr<AgentToken> token = ParseAgentTokenLine(text);
    if (!token.ok()) return token.status();
    for (const AgentToken& t : tokens.tokens_) {
      if (t.name == token->name) {
        return absl::InvalidArgumentError(absl::StrCat("the name \"", t.name, "\" is taken"));
      }
    }
    tokens.tokens_.push_back(std::move(*token));
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return tokens;
}

absl::StatusOr<AgentTokens> AgentTokens::Load(absl::string_view spec, const std::string& path) {
  absl::StatusOr<AgentTokens> tokens = Parse(spec);
  if (!tokens.ok() || path.empty()) return tokens;
  absl::StatusOr<AgentTokens> from_file = LoadFile(path);
  if (!from_file.ok()) return from_file.status();
  for (AgentToken& t : from_file->tokens_) tokens->tokens_.push_back(std::move(t));
  return tokens;
}

std::vector<std::string> AgentTokens::Unbound() const {
  std::vector<std::string> names;
  for (const AgentToken& t : tokens_) {
    if (t.agents.empty()) names.push_back(t.name);
  }
  return names;
}

absl::StatusOr<const AgentToken*> AgentTokens::Admit(
    absl::string_view presented, absl::string_view agent_id,
    const std::map<std::string, std::string>& labels) const {
  if (tokens_.empty()) return nullptr;
  if (presented.empty()) return absl::UnauthenticatedError("agent token missing");
  return AdmitHash(Sha256Hex(presented), agent_id, labels);
}

absl::StatusOr<const AgentToken*> AgentTokens::AdmitHash(
    absl::string_view sha256, absl::string_view agent_id,
    const std::map<std::string, std::string>& labels) const {
  if (tokens_.empty()) return nullptr;
  const AgentToken* found = nullptr;
  for (const AgentToken& t : tokens_) {  // No early exit: every token is compared.
    if (ConstantTimeEquals(t.sha256, sha256)) found = &t;
  }
  if (found == nullptr) return absl::UnauthenticatedError("agent token rejected");
  if (!found->MayClaim(agent_id)) {
    return absl::PermissionDeniedError(absl::StrCat("agent_id: token ", found->name,
                                                    " may not claim \"", agent_id, "\" (only ",
                                                    absl::StrJoin(found->agents, ", "), ")"));
  }
  if (found->labels) {
    for (const auto& [key, value] : labels) {
      auto it = found->labels->find(key);
      if (it == found->labels->end() || (it->second != "*" && it->second != value)) {
        return absl::PermissionDeniedError(absl::StrCat("labels.", key, ": token ", found->name,
                                                        " may not announce ", key, "=", value));
      }
    }
  }
  return found;
}

}  // namespace taskgrid
