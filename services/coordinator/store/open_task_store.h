// Opens the store a `--store` flag names.
#ifndef TASKGRID_SERVICES_COORDINATOR_STORE_OPEN_TASK_STORE_H_
#define TASKGRID_SERVICES_COORDINATOR_STORE_OPEN_TASK_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/coordinator/store/group_commit_store.h"
#include "services/coordinator/store/task_store.h"

namespace taskgrid {

struct StoreOptions {
  StoreMetrics metrics;
  // PostgreSQL: a leader silent this long is replaced by a standby.
  absl::Duration lease_ttl = absl::Seconds(5);
};

// `spec` is one of:
//   memory                       nothing survives the process
//   sqlite:PATH[?sync=normal]    an SQLite file (created if missing)
//   postgres://...               a PostgreSQL database (libpq URI), shared by
//                                active and standby coordinators
// kInvalidArgument names a malformed spec; other errors come from opening.
absl::StatusOr<std::unique_ptr<TaskStore>> OpenTaskStore(const std::string& spec,
                                                         const StoreOptions& options);

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_STORE_OPEN_TASK_STORE_H_
