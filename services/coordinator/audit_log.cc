#include "services/coordinator/audit_log.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "services/common/proto_time.h"
#include "services/coordinator/task_registry_util.h"

namespace taskgrid {

using registry::kMaxPageSize;

v1::AuditEntry NewAuditEntry(absl::string_view actor, absl::string_view action,
                             absl::string_view target, absl::string_view peer,
                             const absl::Status& outcome) {
  // Callers refused before they proved anything still choose some of these
  // fields: bounded, so the log holds what happened, not what they sent.
  constexpr size_t kMaxField = 256;
  auto bounded = [](absl::string_view s) { return std::string(s.substr(0, kMaxField)); };
  v1::AuditEntry e;
  e.set_actor(bounded(actor));
  e.set_action(bounded(action));
  e.set_target(bounded(target));
  e.set_peer(bounded(peer));
  e.set_outcome(outcome.ok() ? "ok" : absl::StatusCodeToString(outcome.code()));
  e.set_detail(bounded(outcome.message()));
  return e;
}

void AuditLog::Keep(v1::AuditEntry entry) {
  next_seq_ = std::max(next_seq_, entry.seq() + 1);
  entries_.push_back(std::move(entry));
  if (entries_.size() > static_cast<size_t>(kAuditLoaded)) entries_.pop_front();
}

void AuditLog::Restore(std::vector<v1::AuditEntry> entries) {
  for (v1::AuditEntry& e : entries) Keep(std::move(e));
}

const v1::AuditEntry& AuditLog::Append(v1::AuditEntry entry, absl::Time now) {
  entry.set_seq(next_seq_);
  if (!entry.has_time()) *entry.mutable_time() = ToProto(now);
  Keep(std::move(entry));
  return entries_.back();
}

absl::StatusOr<v1::ListAuditResponse> AuditLog::List(const v1::ListAuditRequest& request) const {
  if (request.limit() < 0 || request.limit() > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit: must be 0 to ", kMaxPageSize, ", got ", request.limit()));
  }
  const size_t limit = request.limit() == 0 ? kMaxPageSize : static_cast<size_t>(request.limit());
  const absl::Time since =
      request.has_since() ? FromProto(request.since()) : absl::InfinitePast();
  v1::ListAuditResponse response;
  auto it = std::lower_bound(
      entries_.begin(), entries_.end(), request.after_seq() + 1,
      [](const v1::AuditEntry& e, uint64_t seq) { return e.seq() < seq; });
  for (; it != entries_.end(); ++it) {
    if (!request.actor().empty() && it->actor() != request.actor()) continue;
    if (!request.action().empty() && it->action() != request.action()) continue;
    if (FromProto(it->time()) < since) continue;
    if (static_cast<size_t>(response.entries_size()) == limit) {
      response.set_next_after_seq(response.entries().rbegin()->seq());
      break;
    }
    *response.add_entries() = *it;
  }
  return response;
}

}  // namespace taskgrid
