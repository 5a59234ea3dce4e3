// The audit log as the coordinator holds it: who did what to which target,
// from where, and how it ended. Entries are numbered here in the order the
// registry journals them; the newest kAuditLoaded stay in memory for
// ListAudit (older ones stay in the store for export). Not thread-safe: the
// registry's lock guards it, so entries share the journal's order.
#ifndef TASKGRID_SERVICES_COORDINATOR_AUDIT_LOG_H_
#define TASKGRID_SERVICES_COORDINATOR_AUDIT_LOG_H_

#include <cstdint>
#include <deque>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "services/coordinator/store/task_store.h"
#include "taskgrid/v1/task_service.pb.h"

namespace taskgrid {

// An audit entry: "ok" or the status code's name as its outcome, the
// status message as its detail, every field bounded in length.
v1::AuditEntry NewAuditEntry(absl::string_view actor, absl::string_view action,
                             absl::string_view target, absl::string_view peer,
                             const absl::Status& outcome);

class AuditLog {
 public:
  // Recovery: the entries the store loaded, by seq.
  void Restore(std::vector<v1::AuditEntry> entries);
  // Numbers `entry`, times it at `now` unless it has a time, and keeps it;
  // returns it as kept, for the journal.
  const v1::AuditEntry& Append(v1::AuditEntry entry, absl::Time now);
  // The entries after request.after_seq matching its filters, a page at a
  // time; kInvalidArgument naming `limit` when out of range.
  absl::StatusOr<v1::ListAuditResponse> List(const v1::ListAuditRequest& request) const;

 private:
  void Keep(v1::AuditEntry entry);

  std::deque<v1::AuditEntry> entries_;  // By seq, the newest kAuditLoaded.
  uint64_t next_seq_ = 1;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_AUDIT_LOG_H_
