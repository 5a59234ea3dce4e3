// The embedded durable store: one SQLite file in WAL mode, written by the
// group-commit thread. The default store of a coordinator.
#ifndef TASKGRID_SERVICES_COORDINATOR_STORE_SQLITE_TASK_STORE_H_
#define TASKGRID_SERVICES_COORDINATOR_STORE_SQLITE_TASK_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "services/coordinator/store/group_commit_store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace taskgrid {

class SqliteTaskStore final : public GroupCommitStore {
 public:
  struct Options {
    std::string path;
    // fsync the WAL at each commit (survives power loss); without it a
    // commit survives a crash of the process but not of the machine.
    bool sync_full = true;
    StoreMetrics metrics;
  };
  // Opens or creates the file and applies pending schema migrations.
  static absl::StatusOr<std::unique_ptr<SqliteTaskStore>> Open(const Options& options);
  ~SqliteTaskStore() override;

  absl::StatusOr<StoredState> Load() override;

 protected:
  absl::Status Commit(const std::vector<StoreChange>& batch) override;

 private:
  SqliteTaskStore(const Options& options, sqlite3* db);
  absl::Status Prepare();
  absl::Status Exec(const char* sql);
  absl::Status Error(const char* what) const;

  const Options options_;
  sqlite3* const db_;
  // Prepared once; used by the commit thread only.
  sqlite3_stmt* put_task_ = nullptr;
  sqlite3_stmt* delete_task_ = nullptr;
  sqlite3_stmt* delete_output_ = nullptr;
  sqlite3_stmt* put_output_ = nullptr;
  sqlite3_stmt* trim_output_ = nullptr;
  sqlite3_stmt* put_event_ = nullptr;
  sqlite3_stmt* trim_events_ = nullptr;
  sqlite3_stmt* put_agent_ = nullptr;
  sqlite3_stmt* delete_agent_ = nullptr;
  sqlite3_stmt* put_audit_ = nullptr;
  sqlite3_stmt* put_run_ = nullptr;
  sqlite3_stmt* delete_run_ = nullptr;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_STORE_SQLITE_TASK_STORE_H_
