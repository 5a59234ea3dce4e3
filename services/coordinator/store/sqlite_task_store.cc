#include "services/coordinator/store/sqlite_task_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "services/common/status_util.h"

namespace taskgrid {
namespace {

// Versioned schema: migration i brings the schema to version i + 1.
constexpr const char* kMigrations[] = {
    R"sql(
CREATE TABLE tasks (
  id       TEXT PRIMARY KEY,
  seq      INTEGER NOT NULL,
  status   INTEGER NOT NULL,
  finished INTEGER NOT NULL,
  task     BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE output (
  task_id TEXT NOT NULL,
  stream  INTEGER NOT NULL,
  offset  INTEGER NOT NULL,
  data    BLOB NOT NULL,
  PRIMARY KEY (task_id, stream, offset));
CREATE TABLE events (
  cursor    INTEGER PRIMARY KEY,
  log_bytes INTEGER NOT NULL,
  event     BLOB NOT NULL);
CREATE TABLE agents (
  id    TEXT PRIMARY KEY,
  agent BLOB NOT NULL);
)sql",
    // Tasks keyed by their sequence number: new tasks append to the table
    // instead of landing on random pages (ids are random UUIDs), so a store
    // with a million tasks writes as fast as an empty one.
    R"sql(
CREATE TABLE tasks_by_seq (
  seq      INTEGER PRIMARY KEY,
  id       TEXT NOT NULL UNIQUE,
  status   INTEGER NOT NULL,
  finished INTEGER NOT NULL,
  task     BLOB NOT NULL);
INSERT INTO tasks_by_seq (seq, id, status, finished, task)
  SELECT seq, id, status, finished, task FROM tasks;
DROP TABLE tasks;
ALTER TABLE tasks_by_seq RENAME TO tasks;
)sql",
    R"sql(
CREATE TABLE audit (
  seq   INTEGER PRIMARY KEY,
  entry BLOB NOT NULL);
)sql",
    R"sql(
CREATE TABLE runs (
  id  TEXT PRIMARY KEY,
  run BLOB NOT NULL);
)sql",
    // A task's spec is stored once, apart from its state. NULL in a row
    // written before: that row's task blob still holds its spec.
    R"sql(
ALTER TABLE tasks ADD COLUMN spec BLOB;
)sql",
};

void BindText(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
}

void BindBlob(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite3_bind_blob(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
}

std::string ColumnText(sqlite3_stmt* s, int i) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s, i))) : std::string();
}

std::string ColumnBlob(sqlite3_stmt* s, int i) {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(s, i));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s, i))) : std::string();
}

// Runs parse(0..n-1) on every core; the first error wins.
absl::Status ParseInParallel(size_t n, const std::function<absl::Status(size_t)>& parse) {
  const size_t workers = std::max(1u, std::thread::hardware_concurrency());
  std::vector<absl::Status> errors(workers);
  std::vector<std::thread> threads;
  for (size_t w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      for (size_t i = w; i < n && errors[w].ok(); i += workers) errors[w] = parse(i);
    });
  }
  for (auto& t : threads) t.join();
  for (absl::Status& e : errors) {
    if (!e.ok()) return e;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteTaskStore>> SqliteTaskStore::Open(const Options& options) {
  if (options.path.empty()) return absl::InvalidArgumentError("store: the SQLite path is empty");
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(options.path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string why = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat("store: cannot open ", options.path, ": ", why));
  }
  std::unique_ptr<SqliteTaskStore> store(new SqliteTaskStore(options, db));
  // The file is locked for one coordinator; a second one must fail fast.
  sqlite3_busy_timeout(db, 200);
  TASKGRID_RETURN_IF_ERROR(store->Exec("PRAGMA journal_mode=WAL"));
  TASKGRID_RETURN_IF_ERROR(
      store->Exec(options.sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
  // Hot pages stay cached; checkpoints run less often, copying hot pages once.
  TASKGRID_RETURN_IF_ERROR(store->Exec("PRAGMA cache_size=-65536"));
  TASKGRID_RETURN_IF_ERROR(store->Exec("PRAGMA wal_autocheckpoint=8192"));
  // One coordinator per file: a second one fails here instead of corrupting
  // the first one's view.
  TASKGRID_RETURN_IF_ERROR(store->Exec("PRAGMA locking_mode=EXCLUSIVE"));
  if (absl::Status s = store->Exec("BEGIN IMMEDIATE"); !s.ok()) {
    return absl::UnavailableError(
        absl::StrCat(s.message(), " (is another coordinator using this file? each needs its own)"));
  }
  int version = 0;
  {
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, nullptr);
    if (sqlite3_step(s) == SQLITE_ROW) version = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
  }
  constexpr int kLatest = static_cast<int>(std::size(kMigrations));
  if (version > kLatest) {
    store->Exec("ROLLBACK").IgnoreError();
    return absl::FailedPreconditionError(
        absl::StrCat("store: ", options.path, " has schema version ", version,
                     ", newer than this coordinator's ", kLatest, "; upgrade the coordinator"));
  }
  for (; version < kLatest; ++version) {
    TASKGRID_RETURN_IF_ERROR(store->Exec(kMigrations[version]));
  }
  TASKGRID_RETURN_IF_ERROR(store->Exec(absl::StrCat("PRAGMA user_version=", kLatest).c_str()));
  TASKGRID_RETURN_IF_ERROR(store->Exec("COMMIT"));
  TASKGRID_RETURN_IF_ERROR(store->Prepare());
  store->StartCommitter();
  return store;
}

SqliteTaskStore::SqliteTaskStore(const Options& options, sqlite3* db)
    : GroupCommitStore(options.metrics), options_(options), db_(db) {}

SqliteTaskStore::~SqliteTaskStore() {
  StopCommitter();
  for (sqlite3_stmt* s : {put_task_, delete_task_, delete_output_, put_output_, trim_output_,
                          put_event_, trim_events_, put_agent_, delete_agent_, put_audit_,
                          put_run_, delete_run_}) {
    sqlite3_finalize(s);
  }
  sqlite3_close(db_);
}

absl::Status SqliteTaskStore::Error(const char* what) const {
  return absl::UnavailableError(
      absl::StrCat("store: ", what, " failed on ", options_.path, ": ", sqlite3_errmsg(db_)));
}

absl::Status SqliteTaskStore::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    absl::Status s = absl::UnavailableError(
        absl::StrCat("store: ", options_.path, ": ", err ? err : "unknown error"));
    sqlite3_free(err);
    return s;
  }
  return absl::OkStatus();
}

absl::Status SqliteTaskStore::Prepare() {
  const std::pair<sqlite3_stmt**, const char*> statements[] = {
      // An update by seq leaves the row's id, and so its index on random
      // UUIDs, untouched: REPLACE would delete and reinsert both.
      {&put_task_,
       "INSERT INTO tasks (id, seq, status, finished, task, spec) VALUES (?, ?, ?, ?, ?, ?) "
       "ON CONFLICT (seq) DO UPDATE SET status = excluded.status, "
       "finished = excluded.finished, task = excluded.task, "
       "spec = coalesce(excluded.spec, spec)"},
      {&delete_task_, "DELETE FROM tasks WHERE id = ?"},
      {&delete_output_, "DELETE FROM output WHERE task_id = ?"},
      {&put_output_,
       "INSERT OR REPLACE INTO output (task_id, stream, offset, data) "
       "VALUES (?, ?, ?, ?)"},
      {&trim_output_,
       "DELETE FROM output WHERE task_id = ? AND stream = ? AND offset >= ? "
       "AND offset + length(data) <= ?"},
      {&put_event_, "INSERT OR REPLACE INTO events (cursor, log_bytes, event) VALUES (?, ?, ?)"},
      {&trim_events_, "DELETE FROM events WHERE cursor < ?"},
      {&put_agent_, "INSERT OR REPLACE INTO agents (id, agent) VALUES (?, ?)"},
      {&delete_agent_, "DELETE FROM agents WHERE id = ?"},
      {&put_audit_, "INSERT OR IGNORE INTO audit (seq, entry) VALUES (?, ?)"},
      {&put_run_, "INSERT OR REPLACE INTO runs (id, run) VALUES (?, ?)"},
      {&delete_run_, "DELETE FROM runs WHERE id = ?"},
  };
  for (const auto& [stmt, sql] : statements) {
    if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, nullptr) != SQLITE_OK) {
      return Error("prepare");
    }
  }
  return absl::OkStatus();
}

absl::Status SqliteTaskStore::Commit(const std::vector<StoreChange>& batch) {
  TASKGRID_RETURN_IF_ERROR(Exec("BEGIN"));
  auto run = [](sqlite3_stmt* s) {
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE;
  };
  bool ok = true;
  for (const StoreChange& c : batch) {
    if (const auto* p = std::get_if<change::PutTask>(&c)) {
      BindText(put_task_, 1, p->task_id);
      sqlite3_bind_int64(put_task_, 2, static_cast<sqlite3_int64>(p->seq));
      sqlite3_bind_int(put_task_, 3, p->status);
      sqlite3_bind_int64(put_task_, 4, p->finished);
      const std::string state = p->state.ToProto().SerializeAsString();
      BindBlob(put_task_, 5, state);
      std::string spec;  // Serialized here, off the registry's lock.
      if (p->spec != nullptr) {
        spec = p->spec->SerializeAsString();
        BindBlob(put_task_, 6, spec);
      }  // Else NULL: the stored one stays.
      ok = run(put_task_);
    } else if (const auto* d = std::get_if<change::DeleteTask>(&c)) {
      BindText(delete_task_, 1, d->task_id);
      BindText(delete_output_, 1, d->task_id);
      ok = run(delete_task_) && run(delete_output_);
    } else if (const auto* o = std::get_if<change::Output>(&c)) {
      BindText(put_output_, 1, o->task_id);
      sqlite3_bind_int(put_output_, 2, o->stream);
      sqlite3_bind_int64(put_output_, 3, o->offset);
      BindBlob(put_output_, 4, o->data);
      ok = run(put_output_);
    } else if (const auto* t = std::get_if<change::TrimOutput>(&c)) {
      BindText(trim_output_, 1, t->task_id);
      sqlite3_bind_int(trim_output_, 2, t->stream);
      sqlite3_bind_int64(trim_output_, 3, t->head_end);
      sqlite3_bind_int64(trim_output_, 4, t->tail_start);
      ok = run(trim_output_);
    } else if (const auto* e = std::get_if<change::Event>(&c)) {
      sqlite3_bind_int64(put_event_, 1, static_cast<sqlite3_int64>(e->cursor));
      sqlite3_bind_int64(put_event_, 2, e->log_bytes);
      BindBlob(put_event_, 3, e->blob);
      ok = run(put_event_);
    } else if (const auto* te = std::get_if<change::TrimEvents>(&c)) {
      sqlite3_bind_int64(trim_events_, 1, static_cast<sqlite3_int64>(te->first_kept));
      ok = run(trim_events_);
    } else if (const auto* a = std::get_if<change::PutAgent>(&c)) {
      BindText(put_agent_, 1, a->agent_id);
      BindBlob(put_agent_, 2, a->blob);
      ok = run(put_agent_);
    } else if (const auto* da = std::get_if<change::DeleteAgent>(&c)) {
      BindText(delete_agent_, 1, da->agent_id);
      ok = run(delete_agent_);
    } else if (const auto* au = std::get_if<change::Audit>(&c)) {
      sqlite3_bind_int64(put_audit_, 1, static_cast<sqlite3_int64>(au->seq));
      BindBlob(put_audit_, 2, au->blob);
      ok = run(put_audit_);
    } else if (const auto* r = std::get_if<change::PutRun>(&c)) {
      BindText(put_run_, 1, r->run_id);
      BindBlob(put_run_, 2, r->blob);
      ok = run(put_run_);
    } else if (const auto* dr = std::get_if<change::DeleteRun>(&c)) {
      BindText(delete_run_, 1, dr->run_id);
      ok = run(delete_run_);
    }
    if (!ok) break;
  }
  absl::Status s = ok ? Exec("COMMIT") : Error("write");
  // A failed COMMIT can leave the transaction open: end it, or every retry
  // would fail at BEGIN.
  if (!s.ok() && !sqlite3_get_autocommit(db_)) Exec("ROLLBACK").IgnoreError();
  return s;
}

absl::StatusOr<StoredState> SqliteTaskStore::Load() {
  StoredState state;
  auto query = [this](const char* sql, auto&& row) -> absl::Status {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) != SQLITE_OK) return Error("load");
    int rc;
    absl::Status status;
    while (status.ok() && (rc = sqlite3_step(s)) == SQLITE_ROW) status = row(s);
    sqlite3_finalize(s);
    if (status.ok() && rc != SQLITE_DONE) return Error("load");
    return status;
  };
  auto corrupt = [this](const std::string& what) {
    return absl::DataLossError(absl::StrCat("store: ", options_.path, ": cannot decode ", what));
  };
  // Rows are read here, put in submission order, and decoded on every core:
  // decoding is most of a restart with a million tasks.
  struct Row {
    uint64_t seq;
    std::string task;
    std::optional<std::string> spec;  // Absent in rows that predate it.
  };
  std::vector<Row> rows;
  TASKGRID_RETURN_IF_ERROR(query("SELECT seq, task, spec FROM tasks", [&](sqlite3_stmt* s) {
    Row& row = rows.emplace_back();
    row.seq = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
    row.task = ColumnBlob(s, 1);
    if (sqlite3_column_type(s, 2) != SQLITE_NULL) row.spec = ColumnBlob(s, 2);
    return absl::OkStatus();
  }));
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.seq < b.seq; });
  state.tasks.resize(rows.size());
  TASKGRID_RETURN_IF_ERROR(ParseInParallel(rows.size(), [&](size_t i) {
    const absl::string_view spec = rows[i].spec ? absl::string_view(*rows[i].spec) : "";
    if (DecodeTaskRow(rows[i].seq, rows[i].task, rows[i].spec ? &spec : nullptr,
                      state.tasks[i])) {
      return absl::OkStatus();
    }
    return corrupt(absl::StrCat("the task with seq ", rows[i].seq));
  }));
  rows = {};
  TASKGRID_RETURN_IF_ERROR(
      query("SELECT task_id, stream, offset, data FROM output ORDER BY task_id, stream, offset",
            [&](sqlite3_stmt* s) {
              state.output.push_back({ColumnText(s, 0),
                                      static_cast<v1::OutputStream>(sqlite3_column_int(s, 1)),
                                      sqlite3_column_int64(s, 2), ColumnBlob(s, 3)});
              return absl::OkStatus();
            }));
  TASKGRID_RETURN_IF_ERROR(
      query("SELECT cursor, log_bytes, event FROM events ORDER BY cursor", [&](sqlite3_stmt* s) {
        StoredState::Event& e = state.events.emplace_back();
        e.log_bytes = sqlite3_column_int64(s, 1);
        if (!e.event.ParseFromArray(sqlite3_column_blob(s, 2), sqlite3_column_bytes(s, 2))) {
          return corrupt(absl::StrCat("the event with cursor ", sqlite3_column_int64(s, 0)));
        }
        return absl::OkStatus();
      }));
  TASKGRID_RETURN_IF_ERROR(query("SELECT id, agent FROM agents", [&](sqlite3_stmt* s) {
    v1::Agent& a = state.agents.emplace_back();
    if (!a.ParseFromArray(sqlite3_column_blob(s, 1), sqlite3_column_bytes(s, 1))) {
      return corrupt("agent " + ColumnText(s, 0));
    }
    return absl::OkStatus();
  }));
  TASKGRID_RETURN_IF_ERROR(query("SELECT id, run FROM runs", [&](sqlite3_stmt* s) {
    if (!state.runs.emplace_back().ParseFromArray(sqlite3_column_blob(s, 1),
                                                  sqlite3_column_bytes(s, 1))) {
      return corrupt("run " + ColumnText(s, 0));
    }
    return absl::OkStatus();
  }));
  const std::string audit = absl::StrCat(
      "SELECT seq, entry FROM (SELECT seq, entry FROM audit ORDER BY seq DESC LIMIT ",
      kAuditLoaded, ") ORDER BY seq");
  TASKGRID_RETURN_IF_ERROR(query(audit.c_str(), [&](sqlite3_stmt* s) {
    v1::AuditEntry& e = state.audit.emplace_back();
    if (!e.ParseFromArray(sqlite3_column_blob(s, 1), sqlite3_column_bytes(s, 1))) {
      return corrupt(absl::StrCat("audit entry ", sqlite3_column_int64(s, 0)));
    }
    return absl::OkStatus();
  }));
  return state;
}

}  // namespace taskgrid
