#include "services/coordinator/agent_directory.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "services/common/agent_policy.h"
#include "services/common/proto_time.h"

namespace taskgrid {

AgentDirectory::AgentDirectory(absl::Duration heartbeat_ttl, absl::Duration forget_after,
                               prometheus::Gauge* connected_gauge)
    : heartbeat_ttl_(heartbeat_ttl),
      forget_after_(forget_after),
      connected_gauge_(connected_gauge) {}

AgentEntry* AgentDirectory::Find(const std::string& agent_id) {
  auto it = agents_.find(agent_id);
  return it == agents_.end() ? nullptr : &it->second;
}

const AgentEntry* AgentDirectory::Find(const std::string& agent_id) const {
  auto it = agents_.find(agent_id);
  return it == agents_.end() ? nullptr : &it->second;
}

AgentEntry* AgentDirectory::FindByLink(const std::string& agent_id, const AgentLink* link) {
  AgentEntry* a = Find(agent_id);
  return a != nullptr && a->link.get() == link ? a : nullptr;
}

bool AgentDirectory::IsConnected(const std::string& agent_id) const {
  auto it = connected_.find(agent_id);
  return it != connected_.end() && it->second->connected();
}

void AgentDirectory::SetPolicy(AgentEntry& a, const v1::AgentPolicy& policy) {
  policies_ += (HasPolicy(policy) ? 1 : 0) - (HasPolicy(a.info.policy()) ? 1 : 0);
  *a.info.mutable_policy() = policy;
}

void AgentDirectory::Connected(AgentEntry& a, bool yes) {
  if (yes) {
    connected_[a.info.agent_id()] = &a;
  } else {
    connected_.erase(a.info.agent_id());
  }
  if (connected_gauge_ != nullptr) connected_gauge_->Set(static_cast<double>(connected_.size()));
}

void AgentDirectory::Restore(v1::Agent info, absl::Time now) {
  AgentEntry& a = agents_[info.agent_id()];
  const v1::AgentPolicy policy = info.policy();
  info.clear_policy();
  a.info = std::move(info);
  SetPolicy(a, policy);
  a.last_seen = now;
  a.offline_since = now;
  checks_.Set(a.info.agent_id(), now + forget_after_);
}

AgentEntry& AgentDirectory::ExpectBack(const std::string& agent_id, absl::Time now) {
  AgentEntry& a = agents_[agent_id];
  a.info.set_agent_id(agent_id);
  a.online = true;
  a.last_seen = now;
  checks_.Set(agent_id, now + heartbeat_ttl_);
  return a;
}

absl::StatusOr<AgentDirectory::Connection> AgentDirectory::Connect(
    const v1::Hello& hello, const std::string& instance, std::shared_ptr<AgentLink> link,
    const AgentToken* token, absl::Time now) {
  AgentEntry& a = agents_[hello.agent_id()];
  const bool same_process = !instance.empty() && a.info.instance() == instance;
  if (a.connected()) {
    if (!same_process) {
      return absl::AlreadyExistsError(absl::StrCat(
          "agent_id ", hello.agent_id(),
          " is connected (another process holds that id); a second agent with it is refused"));
    }
    a.link->Close(absl::AbortedError("replaced by a newer connection of the same agent process"));
  }
  a.link = std::move(link);
  a.online = true;
  a.last_seen = now;
  checks_.Set(hello.agent_id(), now + heartbeat_ttl_);
  a.info.set_agent_id(hello.agent_id());
  *a.info.mutable_labels() = hello.labels();
  a.info.set_slots(hello.slots());
  // A capacity that is no amount (negative, NaN) offers nothing.
  v1::Resources capacity = hello.capacity();
  if (capacity.memory_bytes() < 0) capacity.set_memory_bytes(0);
  if (!(capacity.cpus() >= 0)) capacity.set_cpus(0);
  *a.info.mutable_capacity() = capacity;
  *a.info.mutable_limits() = hello.limits();
  a.info.set_container_limits(hello.container_limits());
  a.info.set_version(hello.version());
  a.info.set_hostname(hello.hostname());
  SetPolicy(a, hello.policy());
  a.info.set_instance(instance);
  a.info.set_token_name(token != nullptr ? token->name : "");
  a.token_sha256 = token != nullptr ? token->sha256 : "";
  *a.info.mutable_connected_since() = ToProto(now);
  Connected(a, true);
  return Connection{&a, same_process};
}

AgentEntry* AgentDirectory::Disconnect(const std::string& agent_id, const AgentLink* link) {
  AgentEntry* a = FindByLink(agent_id, link);
  if (a == nullptr) return nullptr;
  a->link = nullptr;
  Connected(*a, false);
  return a;
}

std::shared_ptr<AgentLink> AgentDirectory::TakeOffline(AgentEntry& a, absl::Time now) {
  a.online = false;
  a.offline_since = now;
  checks_.Set(a.info.agent_id(), now + forget_after_);
  Connected(a, false);
  return std::move(a.link);
}

AgentDirectory::Due AgentDirectory::Check(absl::Time now) {
  Due due;
  for (const std::string& id : checks_.Due(now)) {
    auto it = agents_.find(id);
    if (it == agents_.end()) {
      checks_.Erase(id);
      continue;
    }
    AgentEntry& a = it->second;
    if (a.online) {
      if (now - a.last_seen < heartbeat_ttl_) {
        checks_.Set(id, a.last_seen + heartbeat_ttl_);
      } else {
        due.silent.push_back(&a);
      }
    } else if (a.connected() || now - a.offline_since < forget_after_) {
      checks_.Set(id, std::max(now + heartbeat_ttl_, a.offline_since + forget_after_));
    } else {
      // Long gone: forgotten, so the directory stays bounded.
      SetPolicy(a, {});
      checks_.Erase(id);
      agents_.erase(it);
      due.forgotten.push_back(id);
    }
  }
  return due;
}

}  // namespace taskgrid
