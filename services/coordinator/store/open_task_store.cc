#include "services/coordinator/store/open_task_store.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/coordinator/store/memory_task_store.h"
#include "services/coordinator/store/postgres_task_store.h"
#include "services/coordinator/store/sqlite_task_store.h"

namespace taskgrid {

absl::StatusOr<std::unique_ptr<TaskStore>> OpenTaskStore(const std::string& spec,
                                                         const StoreOptions& options) {
  if (spec == "memory") return std::make_unique<MemoryTaskStore>();
  if (absl::StartsWith(spec, "sqlite:")) {
    SqliteTaskStore::Options o;
    o.path = spec.substr(sizeof("sqlite:") - 1);
    o.metrics = options.metrics;
    if (const size_t q = o.path.find('?'); q != std::string::npos) {
      const std::string param = o.path.substr(q + 1);
      o.path.resize(q);
      if (param == "sync=normal") {
        o.sync_full = false;
      } else if (param != "sync=full") {
        return absl::InvalidArgumentError(
            absl::StrCat("store: unknown SQLite option \"", param, "\" (sync=full|normal)"));
      }
    }
    auto store = SqliteTaskStore::Open(o);
    if (!store.ok()) return store.status();
    return std::unique_ptr<TaskStore>(std::move(*store));
  }
  if (absl::StartsWith(spec, "postgres://") || absl::StartsWith(spec, "postgresql://")) {
    PostgresTaskStore::Options o;
    o.conninfo = spec;
    o.lease_ttl = options.lease_ttl;
    o.metrics = options.metrics;
    auto store = PostgresTaskStore::Open(o);
    if (!store.ok()) return store.status();
    return std::unique_ptr<TaskStore>(std::move(*store));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("store: \"", spec, "\" is not memory, sqlite:PATH or postgres://..."));
}

}  // namespace taskgrid
