// The agents the coordinator knows: connected ones with their stream, and
// ones away (disconnected, or silent past the heartbeat TTL) until they come
// back or are forgotten. It keeps the set dispatch looks at (connected and
// online) and when each agent next needs a look, so that checking thousands
// of agents costs nothing until one is due. Not thread-safe: the registry's
// lock guards it.
#ifndef TASKGRID_SERVICES_COORDINATOR_AGENT_DIRECTORY_H_
#define TASKGRID_SERVICES_COORDINATOR_AGENT_DIRECTORY_H_

#include <prometheus/gauge.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/agent_tokens.h"
#include "services/coordinator/deadline_index.h"
#include "taskgrid/v1/agent.pb.h"
#include "taskgrid/v1/task_service.pb.h"

namespace taskgrid {

// The coordinator's handle on one agent's open stream. Implemented by the
// agent stream reactor; thread-safe; calls never block.
class AgentLink {
 public:
  virtual ~AgentLink() = default;
  // Queues a message; dropped once the stream is ending.
  virtual void Send(v1::CoordinatorMessage message) = 0;
  // Ends the stream with `status` after queued messages are written.
  virtual void Close(const absl::Status& status) = 0;
};

struct AgentEntry {
  v1::Agent info;
  std::shared_ptr<AgentLink> link;  // Null while disconnected.
  absl::Time last_seen;
  bool online = false;  // Connected, or disconnected but within the TTL.
  absl::Time offline_since;
  absl::flat_hash_set<std::string> assigned;  // Tasks holding a slot.
  std::string token_sha256;                   // Of the token it connected with.

  bool connected() const { return link != nullptr; }
};

class AgentDirectory {
 public:
  // An online agent silent for `heartbeat_ttl` is due to go offline; an
  // offline one is forgotten `forget_after` after it went away.
  // `connected_gauge` (may be null) follows connected().size().
  AgentDirectory(absl::Duration heartbeat_ttl, absl::Duration forget_after,
                 prometheus::Gauge* connected_gauge = nullptr);

  // Null when unknown.
  AgentEntry* Find(const std::string& agent_id);
  const AgentEntry* Find(const std::string& agent_id) const;
  // The agent if `link` is its current stream; null once replaced.
  AgentEntry* FindByLink(const std::string& agent_id, const AgentLink* link);

  // Recovery: an agent from the store, offline since `now`.
  void Restore(v1::Agent info, absl::Time now);
  // Recovery: the agent of a task that was running, online without a link
  // so it has a heartbeat TTL from `now` to reconnect.
  AgentEntry& ExpectBack(const std::string& agent_id, absl::Time now);

  struct Connection {
    AgentEntry* agent = nullptr;
    bool same_process = false;  // The hello's instance is the one last seen.
  };
  // Registers the agent behind `link` (fingerprint `instance` of its
  // hello's instance_id, "" without one). A connected agent's link is
  // replaced, and closed, only by the same process; kAlreadyExists if
  // another process holds the id.
  absl::StatusOr<Connection> Connect(const v1::Hello& hello, const std::string& instance,
                                     std::shared_ptr<AgentLink> link, const AgentToken* token,
                                     absl::Time now);
  // The stream behind `link` ended: the agent keeps its tasks (and stays
  // online) until its TTL. Null when the link was already replaced.
  AgentEntry* Disconnect(const std::string& agent_id, const AgentLink* link);
  // Takes the agent offline from `now`; returns its link (null if none),
  // which the caller closes.
  std::shared_ptr<AgentLink> TakeOffline(AgentEntry& a, absl::Time now);

  // Agents whose look is due at `now`: online ones silent past the TTL
  // (still online: the caller takes each offline), and the ids of offline
  // ones past forget_after, which are already erased.
  struct Due {
    std::vector<AgentEntry*> silent;
    std::vector<std::string> forgotten;
  };
  Due Check(absl::Time now);

  // Connected and online: the agents dispatch can use.
  const std::map<std::string, AgentEntry*>& connected() const { return connected_; }
  bool IsConnected(const std::string& agent_id) const;
  const std::map<std::string, AgentEntry>& all() const { return agents_; }
  size_t size() const { return agents_.size(); }
  // Whether any agent's policy may refuse tasks.
  bool any_policy() const { return policies_ > 0; }

 private:
  void SetPolicy(AgentEntry& a, const v1::AgentPolicy& policy);
  void Connected(AgentEntry& a, bool yes);

  const absl::Duration heartbeat_ttl_;
  const absl::Duration forget_after_;
  prometheus::Gauge* const connected_gauge_;
  std::map<std::string, AgentEntry> agents_;  // Entries never move.
  std::map<std::string, AgentEntry*> connected_;
  // An online agent's check is at its TTL, an offline one's when it may be
  // forgotten. Messages move last_seen, not the check: each agent is looked
  // at once a TTL.
  DeadlineIndex<std::string> checks_;
  int policies_ = 0;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_AGENT_DIRECTORY_H_
