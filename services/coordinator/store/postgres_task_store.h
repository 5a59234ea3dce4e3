// The shared durable store: PostgreSQL, for several coordinators in
// active/standby. Exactly one holds the write lease (a row with a term number
// that only a holder whose lease expired can lose); every transaction first
// checks the term, so a coordinator that lost the lease can never write again
// (fencing). The schema is migrated at start-up, versioned.
#ifndef TASKGRID_SERVICES_COORDINATOR_STORE_POSTGRES_TASK_STORE_H_
#define TASKGRID_SERVICES_COORDINATOR_STORE_POSTGRES_TASK_STORE_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "services/coordinator/store/group_commit_store.h"

struct pg_conn;

namespace taskgrid {

class PostgresTaskStore final : public GroupCommitStore {
 public:
  struct Options {
    std::string conninfo;  // postgres://user@host:port/db?...
    // A leader that has not renewed its lease for this long is replaced.
    absl::Duration lease_ttl = absl::Seconds(5);
    StoreMetrics metrics;
  };
  // Connects and applies pending migrations. Does not take the lease.
  static absl::StatusOr<std::unique_ptr<PostgresTaskStore>> Open(const Options& options);
  ~PostgresTaskStore() override;

  absl::Status AwaitLeadership(const std::function<bool()>& stopping,
                               std::function<void(const absl::Status&)> lost) override;
  LeaderInfo leader() const override;
  absl::StatusOr<StoredState> Load() override;

 protected:
  absl::Status Commit(const std::vector<StoreChange>& batch) override;

 private:
  explicit PostgresTaskStore(const Options& options);
  void RenewLoop();
  void LoseLeadership(const absl::Status& why);

  const Options options_;
  const std::string holder_;       // This process, as the lease names it.
  pg_conn* conn_ = nullptr;        // Migrations, Load, then the commit thread.
  pg_conn* lease_conn_ = nullptr;  // Acquire and renew, on the renew thread.
  std::atomic<int64_t> term_{0};
  std::atomic<bool> fenced_{false};
  bool failover_ = false;
  std::function<void(const absl::Status&)> lost_;
  absl::Notification stop_renewing_;
  std::thread renewer_;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_STORE_POSTGRES_TASK_STORE_H_
