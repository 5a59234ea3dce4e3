// The tokens agents say hello with, and what each lets its holder claim: the
// agent ids it may take and the labels it may announce. A token bound to one
// host's id and labels, if a task there reads it, cannot make another agent
// or draw tasks meant for other labels.
#ifndef TASKGRID_SERVICES_COMMON_AGENT_TOKENS_H_
#define TASKGRID_SERVICES_COMMON_AGENT_TOKENS_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace taskgrid {

// One agent token, kept as the SHA-256 of its secret.
struct AgentToken {
  std::string name;    // For the audit log and ListAgents.
  std::string sha256;  // Lowercase hex.
  // Agent ids it may claim; "web-*" is a prefix. Empty: any.
  std::vector<std::string> agents;
  // Labels it may announce, each with its value or "*" for any value; an
  // agent must not announce others. Unset: any labels.
  std::optional<std::map<std::string, std::string>> labels;

  // Whether the token lets its holder claim `agent_id`.
  bool MayClaim(absl::string_view agent_id) const;
};

// Parses one agent tokens file line, "NAME sha256:HEX [agents=ID,PREFIX*,...]
// [labels=KEY=VALUE,KEY=*,...]"; kInvalidArgument naming the malformed part.
absl::StatusOr<AgentToken> ParseAgentTokenLine(absl::string_view line);

// The tokens a coordinator accepts. Immutable; thread-safe.
class AgentTokens {
 public:
  AgentTokens() = default;
  // Parses --agent_tokens, "SECRET[@AGENT_ID],...": a secret in the clear,
  // bound to one agent id when one follows '@' (for development: prefer a
  // tokens file). kInvalidArgument for an empty entry.
  static absl::StatusOr<AgentTokens> Parse(absl::string_view spec);
  // Reads an agent tokens file (see ParseAgentTokenLine); blank lines and #
  // comments are ignored. kNotFound when it cannot be read, kInvalidArgument
  // naming the line otherwise.
  static absl::StatusOr<AgentTokens> LoadFile(const std::string& path);
  // Both together; either may be empty.
  static absl::StatusOr<AgentTokens> Load(absl::string_view spec, const std::string& path);

  bool empty() const { return tokens_.empty(); }
  size_t size() const { return tokens_.size(); }
  // Names of the tokens that let their holder claim any agent id.
  std::vector<std::string> Unbound() const;

  // The token `presented` is, if it lets its holder be `agent_id` with
  // `labels`: null when no tokens are configured; kUnauthenticated for a
  // missing or unknown token; kPermissionDenied naming agent_id or
  // labels.KEY when the claim is outside the token's binding. Compares
  // against every token, so timing reveals nothing.
  absl::StatusOr<const AgentToken*> Admit(absl::string_view presented, absl::string_view agent_id,
                                          const std::map<std::string, std::string>& labels) const;
  // Admit for the token whose SHA-256 (lowercase hex) is `sha256`: to check
  // an agent admitted earlier against tokens read since.
  absl::StatusOr<const AgentToken*> AdmitHash(
      absl::string_view sha256, absl::string_view agent_id,
      const std::map<std::string, std::string>& labels) const;

 private:
  std::vector<AgentToken> tokens_;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_AGENT_TOKENS_H_
