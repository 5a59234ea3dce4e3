#include "services/coordinator/store/postgres_task_store.h"

#include <endian.h>
#include <libpq-fe.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "services/common/service_process.h"
#include "services/common/status_util.h"

namespace taskgrid {
namespace {

// Versioned schema: migration i brings the schema to version i + 1.
constexpr const char* kMigrations[] = {
    R"sql(
CREATE TABLE tasks (
  id       text PRIMARY KEY,
  seq      bigint NOT NULL,
  status   integer NOT NULL,
  finished bigint NOT NULL,
  task     bytea NOT NULL);
CREATE TABLE output (
  task_id     text NOT NULL,
  stream      integer NOT NULL,
  byte_offset bigint NOT NULL,
  data        bytea NOT NULL,
  PRIMARY KEY (task_id, stream, byte_offset));
CREATE TABLE events (
  cursor    bigint PRIMARY KEY,
  log_bytes bigint NOT NULL,
  event     bytea NOT NULL);
CREATE TABLE agents (
  id    text PRIMARY KEY,
  agent bytea NOT NULL);
CREATE TABLE leader (
  id         integer PRIMARY KEY CHECK (id = 1),
  term       bigint NOT NULL,
  holder     text NOT NULL,
  expires_at timestamptz NOT NULL);
INSERT INTO leader VALUES (1, 0, '', now());
CREATE FUNCTION taskgrid_fence(t bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM leader WHERE id = 1 AND term = t FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'fenced: coordinator term % was replaced by a newer one', t
      USING ERRCODE = 'TG001';
  END IF;
END $$;
)sql",
    R"sql(
CREATE TABLE audit (
  seq   bigint PRIMARY KEY,
  entry bytea NOT NULL);
)sql",
    R"sql(
CREATE TABLE runs (
  id  text PRIMARY KEY,
  run bytea NOT NULL);
)sql",
    // A task's spec is stored once, apart from its state. NULL in a row
    // written before: that row's task blob still holds its spec.
    R"sql(
ALTER TABLE tasks ADD COLUMN spec bytea;
)sql",
};

constexpr int kLatest = static_cast<int>(std::size(kMigrations));
constexpr char kFencedState[] = "TG001";
// Statements per pipeline sync: keeps both socket directions from filling.
constexpr size_t kPipelineChunk = 500;
// Changes per transaction.
constexpr size_t kMaxTransaction = 2000;

struct Prepared {
  const char* name;
  const char* sql;
};
constexpr Prepared kStatements[] = {
    {"fence", "SELECT taskgrid_fence($1)"},
    {"put_task",
     "INSERT INTO tasks (id, seq, status, finished, task, spec) VALUES ($1, $2, $3, $4, $5, $6) "
     "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, finished = EXCLUDED.finished, "
     "task = EXCLUDED.task, spec = coalesce(EXCLUDED.spec, tasks.spec)"},
    {"delete_task", "DELETE FROM tasks WHERE id = $1"},
    {"delete_output", "DELETE FROM output WHERE task_id = $1"},
    {"put_output",
     "INSERT INTO output (task_id, stream, byte_offset, data) VALUES ($1, $2, $3, $4) "
     "ON CONFLICT (task_id, stream, byte_offset) DO UPDATE SET data = EXCLUDED.data"},
    {"trim_output",
     "DELETE FROM output WHERE task_id = $1 AND stream = $2 AND byte_offset >= $3 "
     "AND byte_offset + length(data) <= $4"},
    {"put_event",
     "INSERT INTO events (cursor, log_bytes, event) VALUES ($1, $2, $3) "
     "ON CONFLICT (cursor) DO UPDATE SET log_bytes = EXCLUDED.log_bytes, event = EXCLUDED.event"},
    {"trim_events", "DELETE FROM events WHERE cursor < $1"},
    {"put_agent",
     "INSERT INTO agents (id, agent) VALUES ($1, $2) "
     "ON CONFLICT (id) DO UPDATE SET agent = EXCLUDED.agent"},
    {"delete_agent", "DELETE FROM agents WHERE id = $1"},
    {"put_audit",
     "INSERT INTO audit (seq, entry) VALUES ($1, $2) ON CONFLICT (seq) DO NOTHING"},
    {"put_run",
     "INSERT INTO runs (id, run) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET run = EXCLUDED.run"},
    {"delete_run", "DELETE FROM runs WHERE id = $1"},
};

// A query parameter: text for numbers and ids, binary for blobs; NULL
// for an absent optional.
struct Param {
  Param(const std::string& s, bool binary = false) : value(&s), binary(binary) {}
  explicit Param(const std::optional<std::string>& s) : value(s ? &*s : nullptr), binary(true) {}
  const std::string* value;
  bool binary;
};

std::string ConnError(PGconn* c) {
  std::string m = c ? PQerrorMessage(c) : "out of memory";
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

std::string ResultError(const PGresult* r) {
  std::string m = PQresultErrorMessage(r);
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

bool Ok(const PGresult* r) {
  const ExecStatusType s = PQresultStatus(r);
  return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

// The database's schema version; kFailedPrecondition when it is newer than
// this coordinator's.
absl::StatusOr<int> SchemaVersion(PGconn* c) {
  PGresult* r = PQexec(c, "SELECT coalesce(max(version), 0) FROM schema_migrations");
  if (!Ok(r)) {
    absl::Status s = absl::UnavailableError(absl::StrCat("store: ", ResultError(r)));
    PQclear(r);
    return s;
  }
  const int version = std::atoi(PQgetvalue(r, 0, 0));
  PQclear(r);
  if (version > kLatest) {
    return absl::FailedPreconditionError(absl::StrCat("store: the database has schema version ",
                                                      version, ", newer than this coordinator's ",
                                                      kLatest, "; upgrade the coordinator"));
  }
  return version;
}

// Runs one statement outside a pipeline; the result is freed.
absl::Status Exec(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  absl::Status s =
      Ok(r) ? absl::OkStatus() : absl::UnavailableError(absl::StrCat("store: ", ResultError(r)));
  PQclear(r);
  return s;
}

absl::Status PrepareAll(PGconn* c) {
  for (const Prepared& p : kStatements) {
    PGresult* r = PQprepare(c, p.name, p.sql, 0, nullptr);
    const bool ok = Ok(r);
    const std::string err = ok ? "" : ResultError(r);
    PQclear(r);
    if (!ok) return absl::UnavailableError(absl::StrCat("store: prepare ", p.name, ": ", err));
  }
  return absl::OkStatus();
}

// Every wait is bounded by the lease TTL, so a coordinator cut off from the
// database (or stuck inside a transaction) can neither block a standby's
// takeover nor linger as a leader that cannot write: the server ends idle
// transactions and slow lock waits, and TCP gives up on a silent peer.
absl::StatusOr<PGconn*> Connect(const std::string& conninfo, absl::Duration ttl) {
  const int64_t ms = absl::ToInt64Milliseconds(ttl);
  const std::string options =
      absl::StrCat("-c idle_in_transaction_session_timeout=", ms, " -c lock_timeout=", ms / 2);
  const std::string keepalive_count = std::to_string(std::max<int64_t>(1, ms / 1000));
  const std::string user_timeout = std::to_string(ms);
  const char* keys[] = {"dbname",
                        "options",
                        "keepalives",
                        "keepalives_idle",
                        "keepalives_interval",
                        "keepalives_count",
                        "tcp_user_timeout",
                        nullptr};
  const char* values[] = {conninfo.c_str(),        options.c_str(),      "1",    "1", "1",
                          keepalive_count.c_str(), user_timeout.c_str(), nullptr};
  PGconn* c = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (PQstatus(c) != CONNECTION_OK) {
    const std::string err = ConnError(c);
    PQfinish(c);
    return absl::UnavailableError(absl::StrCat("store: cannot connect to PostgreSQL: ", err));
  }
  PGresult* r = PQexec(c, "SET client_min_messages = warning");
  PQclear(r);
  return c;
}

int64_t ReadInt8(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return static_cast<int64_t>(be64toh(v));
}

int32_t ReadInt4(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return static_cast<int32_t>(be32toh(v));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresTaskStore>> PostgresTaskStore::Open(const Options& options) {
  if (options.lease_ttl < absl::Seconds(1)) {
    return absl::InvalidArgumentError("store: the lease TTL must be at least 1s");
  }
  std::unique_ptr<PostgresTaskStore> store(new PostgresTaskStore(options));
  TASKGRID_ASSIGN_OR_RETURN(store->conn_, Connect(options.conninfo, options.lease_ttl));
  TASKGRID_ASSIGN_OR_RETURN(store->lease_conn_, Connect(options.conninfo, options.lease_ttl));
  PGconn* c = store->conn_;
  // Coordinators starting together migrate one at a time.
  TASKGRID_RETURN_IF_ERROR(Exec(c, "BEGIN"));
  absl::Status s = Exec(c, "SELECT pg_advisory_xact_lock(7302001)");
  if (s.ok()) {
    s = Exec(c,
             "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
             "applied_at timestamptz NOT NULL DEFAULT now())");
  }
  int version = 0;
  if (s.ok()) {
    absl::StatusOr<int> v = SchemaVersion(c);
    s = v.status();
    if (s.ok()) version = *v;
  }
  for (; s.ok() && version < kLatest; ++version) {
    s = Exec(c, kMigrations[version]);
    if (s.ok()) {
      s = Exec(c,
               absl::StrCat("INSERT INTO schema_migrations (version) VALUES (", version + 1, ")"));
    }
    if (s.ok()) spdlog::info("store_migrated version={}", version + 1);
  }
  if (!s.ok()) {
    Exec(c, "ROLLBACK").IgnoreError();
    return s;
  }
  TASKGRID_RETURN_IF_ERROR(Exec(c, "COMMIT"));
  TASKGRID_RETURN_IF_ERROR(PrepareAll(c));
  return store;
}

PostgresTaskStore::PostgresTaskStore(const Options& options)
    : GroupCommitStore(options.metrics),
      options_(options),
      holder_(absl::StrFormat("%s:%d:%08x", HostName(), getpid(),
                              static_cast<uint32_t>(std::random_device{}()))) {}

PostgresTaskStore::~PostgresTaskStore() {
  StopCommitter();
  stop_renewing_.Notify();
  if (renewer_.joinable()) {
    renewer_.join();
    // Everything is committed: hand the lease over now rather than at expiry.
    if (!fenced_) {
      const std::string term = std::to_string(term_.load());
      const char* values[] = {term.c_str()};
      PQclear(PQexecParams(lease_conn_,
                           "UPDATE leader SET expires_at = now() WHERE id = 1 AND term = $1", 1,
                           nullptr, values, nullptr, nullptr, 0));
      spdlog::info("store_lease_released term={}", term);
    }
  }
  PQfinish(conn_);
  PQfinish(lease_conn_);
}

absl::Status PostgresTaskStore::AwaitLeadership(const std::function<bool()>& stopping,
                                                std::function<void(const absl::Status&)> lost) {
  lost_ = std::move(lost);
  const std::string ttl_ms = std::to_string(absl::ToInt64Milliseconds(options_.lease_ttl));
  const char* values[] = {holder_.c_str(), ttl_ms.c_str()};
  bool told = false;
  for (;;) {
    if (stopping && stopping()) return absl::CancelledError("stopped while standing by");
    // Only an expired lease can be taken; the term goes up with each holder.
    PGresult* r = PQexecParams(
        lease_conn_,
        "WITH prev AS (SELECT holder FROM leader WHERE id = 1 FOR UPDATE) "
        "UPDATE leader SET term = leader.term + 1, holder = $1, "
        "expires_at = now() + $2 * interval '1 millisecond' FROM prev "
        "WHERE leader.id = 1 AND leader.expires_at < now() RETURNING leader.term, prev.holder",
        2, nullptr, values, nullptr, nullptr, 0);
    if (Ok(r) && PQntuples(r) == 1) {
      term_ = std::atoll(PQgetvalue(r, 0, 0));
      failover_ = PQgetvalue(r, 0, 1)[0] != '\0';
      PQclear(r);
      spdlog::info("store_leader_elected term={} holder={} failover={}", term_.load(), holder_,
                   failover_);
      // The store connection may have idled for days while standing by.
      if (!Exec(conn_, "SELECT 1").ok()) {
        PQreset(conn_);
        if (PQstatus(conn_) != CONNECTION_OK) {
          return absl::UnavailableError(absl::StrCat("store: PostgreSQL: ", ConnError(conn_)));
        }
        TASKGRID_RETURN_IF_ERROR(PrepareAll(conn_));
      }
      // A newer coordinator may have migrated the schema while this one
      // stood by: it must not write rows in an older format.
      TASKGRID_RETURN_IF_ERROR(SchemaVersion(conn_).status());
      renewer_ = std::thread([this] { RenewLoop(); });
      StartCommitter();
      return absl::OkStatus();
    }
    if (!Ok(r)) {
      spdlog::warn("store_lease_attempt_failed error=\"{}\"", ResultError(r));
      if (PQstatus(lease_conn_) == CONNECTION_BAD) PQreset(lease_conn_);
    } else if (!told) {
      spdlog::info("store_standby holder={} (another coordinator holds the lease)", holder_);
      told = true;
    }
    PQclear(r);
    absl::SleepFor(std::min(options_.lease_ttl / 4, absl::Milliseconds(500)));
  }
}

TaskStore::LeaderInfo PostgresTaskStore::leader() const { return {term_.load(), failover_}; }

void PostgresTaskStore::RenewLoop() {
  const std::string term = std::to_string(term_.load());
  const std::string ttl_ms = std::to_string(absl::ToInt64Milliseconds(options_.lease_ttl));
  const char* values[] = {term.c_str(), ttl_ms.c_str()};
  absl::Time renewed = absl::Now();
  while (!stop_renewing_.WaitForNotificationWithTimeout(options_.lease_ttl / 3)) {
    PGresult* r = PQexecParams(lease_conn_,
                               "UPDATE leader SET expires_at = now() + $2 * interval "
                               "'1 millisecond' WHERE id = 1 AND term = $1",
                               2, nullptr, values, nullptr, nullptr, 0);
    const bool ok = Ok(r);
    const bool kept = ok && std::strcmp(PQcmdTuples(r), "1") == 0;
    const std::string err = ok ? "" : ResultError(r);
    PQclear(r);
    if (kept) {
      renewed = absl::Now();
      continue;
    }
    if (ok) {
      LoseLeadership(absl::FailedPreconditionError(
          absl::StrCat("store: coordinator term ", term, " was replaced by a newer one")));
      return;
    }
    spdlog::warn("store_lease_renew_failed term={} error=\"{}\"", term, err);
    if (PQstatus(lease_conn_) == CONNECTION_BAD) PQreset(lease_conn_);
    // Past the TTL a standby may hold the lease: stop before it writes.
    if (absl::Now() - renewed >= options_.lease_ttl) {
      LoseLeadership(absl::UnavailableError(
          absl::StrCat("store: lease of term ", term, " could not be renewed: ", err)));
      return;
    }
  }
}

void PostgresTaskStore::LoseLeadership(const absl::Status& why) {
  if (fenced_.exchange(true)) return;
  spdlog::error("store_leadership_lost term={} reason=\"{}\"", term_.load(),
                std::string(why.message()));
  if (lost_) lost_(why);
}

absl::Status PostgresTaskStore::Commit(const std::vector<StoreChange>& batch) {
  if (fenced_) return absl::FailedPreconditionError("store: this coordinator lost its lease");
  if (PQstatus(conn_) == CONNECTION_BAD) {
    PQreset(conn_);
    if (PQstatus(conn_) != CONNECTION_OK) {
      return absl::UnavailableError(absl::StrCat("store: PostgreSQL: ", ConnError(conn_)));
    }
    TASKGRID_RETURN_IF_ERROR(PrepareAll(conn_));
  }
  if (PQenterPipelineMode(conn_) != 1) {
    return absl::UnavailableError(absl::StrCat("store: pipeline: ", ConnError(conn_)));
  }
  absl::Status status;
  size_t in_chunk = 0;
  // Reads every result up to the next sync; keeps the first error.
  auto drain = [&] {
    for (;;) {
      PGresult* r = PQgetResult(conn_);
      if (r == nullptr) {
        if (PQstatus(conn_) == CONNECTION_BAD) {
          if (status.ok()) status = absl::UnavailableError("store: PostgreSQL connection lost");
          return;
        }
        continue;  // End of one statement's results.
      }
      const ExecStatusType st = PQresultStatus(r);
      if (st == PGRES_PIPELINE_SYNC) {
        PQclear(r);
        return;
      }
      if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && status.ok()) {
        const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (state != nullptr && std::strcmp(state, kFencedState) == 0) {
          status = absl::FailedPreconditionError(ResultError(r));
        } else {
          status = absl::UnavailableError(
              absl::StrCat("store: ", st == PGRES_PIPELINE_ABORTED ? "aborted" : ResultError(r)));
        }
      }
      PQclear(r);
    }
  };
  auto send = [&](const char* name, std::initializer_list<Param> params) {
    const char* values[6];
    int lengths[6], formats[6];
    int n = 0;
    for (const Param& p : params) {
      values[n] = p.value != nullptr ? p.value->data() : nullptr;
      lengths[n] = p.value != nullptr ? static_cast<int>(p.value->size()) : 0;
      formats[n] = p.binary ? 1 : 0;
      ++n;
    }
    PQsendQueryPrepared(conn_, name, n, values, lengths, formats, 0);
    if (++in_chunk == kPipelineChunk) {
      PQpipelineSync(conn_);
      drain();
      in_chunk = 0;
    }
  };
  auto plain = [&](const char* sql) {
    PQsendQueryParams(conn_, sql, 0, nullptr, nullptr, nullptr, nullptr, 0);
  };
  const std::string term = std::to_string(term_.load());
  std::string a, b, c;  // Numbers as text, alive while sent.
  for (size_t i = 0; i < batch.size() && status.ok(); ++i) {
    // Short transactions keep the leader row's share lock brief, so lease
    // renewals and a takeover never wait long. Changes are idempotent: a
    // retry after a partial commit applies them again harmlessly.
    if (i % kMaxTransaction == 0) {
      if (i > 0) plain("COMMIT");
      plain("BEGIN");
      send("fence", {term});
    }
    const StoreChange& ch = batch[i];
    if (const auto* p = std::get_if<change::PutTask>(&ch)) {
      a = std::to_string(p->seq), b = std::to_string(p->status), c = std::to_string(p->finished);
      const std::string state = p->state.ToProto().SerializeAsString();
      std::optional<std::string> spec;  // Serialized here, off the registry's lock.
      if (p->spec != nullptr) spec = p->spec->SerializeAsString();
      send("put_task", {p->task_id, a, b, c, Param(state, true), Param(spec)});
    } else if (const auto* d = std::get_if<change::DeleteTask>(&ch)) {
      send("delete_task", {d->task_id});
      send("delete_output", {d->task_id});
    } else if (const auto* o = std::get_if<change::Output>(&ch)) {
      a = std::to_string(o->stream), b = std::to_string(o->offset);
      send("put_output", {o->task_id, a, b, Param(o->data, true)});
    } else if (const auto* t = std::get_if<change::TrimOutput>(&ch)) {
      a = std::to_string(t->stream), b = std::to_string(t->head_end);
      c = std::to_string(t->tail_start);
      send("trim_output", {t->task_id, a, b, c});
    } else if (const auto* e = std::get_if<change::Event>(&ch)) {
      a = std::to_string(e->cursor), b = std::to_string(e->log_bytes);
      send("put_event", {a, b, Param(e->blob, true)});
    } else if (const auto* te = std::get_if<change::TrimEvents>(&ch)) {
      a = std::to_string(te->first_kept);
      send("trim_events", {a});
    } else if (const auto* ag = std::get_if<change::PutAgent>(&ch)) {
      send("put_agent", {ag->agent_id, Param(ag->blob, true)});
    } else if (const auto* da = std::get_if<change::DeleteAgent>(&ch)) {
      send("delete_agent", {da->agent_id});
    } else if (const auto* au = std::get_if<change::Audit>(&ch)) {
      a = std::to_string(au->seq);
      send("put_audit", {a, Param(au->blob, true)});
    } else if (const auto* ru = std::get_if<change::PutRun>(&ch)) {
      send("put_run", {ru->run_id, Param(ru->blob, true)});
    } else if (const auto* dr = std::get_if<change::DeleteRun>(&ch)) {
      send("delete_run", {dr->run_id});
    }
  }
  plain("COMMIT");  // Skipped by the server after an error.
  PQpipelineSync(conn_);
  drain();
  PQexitPipelineMode(conn_);
  if (!status.ok()) {
    Exec(conn_, "ROLLBACK").IgnoreError();  // Ends the failed transaction block.
    if (status.code() == absl::StatusCode::kFailedPrecondition) LoseLeadership(status);
  }
  return status;
}

absl::StatusOr<StoredState> PostgresTaskStore::Load() {
  StoredState state;
  TASKGRID_RETURN_IF_ERROR(Exec(conn_, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
  // Reads a query through a cursor in binary batches, calling row(r, i).
  auto read = [this](const char* name, const char* query, auto&& row) -> absl::Status {
    TASKGRID_RETURN_IF_ERROR(
        Exec(conn_, absl::StrCat("DECLARE ", name, " NO SCROLL CURSOR FOR ", query)));
    const std::string fetch = absl::StrCat("FETCH 20000 FROM ", name);
    for (;;) {
      PGresult* r = PQexecParams(conn_, fetch.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 1);
      if (!Ok(r)) {
        absl::Status s = absl::UnavailableError(absl::StrCat("store: load: ", ResultError(r)));
        PQclear(r);
        return s;
      }
      const int n = PQntuples(r);
      absl::Status s;
      for (int i = 0; i < n && s.ok(); ++i) s = row(r, i);
      PQclear(r);
      if (!s.ok()) return s;
      if (n == 0) return absl::OkStatus();
    }
  };
  auto view = [](PGresult* r, int i, int col) {
    return absl::string_view(PQgetvalue(r, i, col), static_cast<size_t>(PQgetlength(r, i, col)));
  };
  auto bytes = [&view](PGresult* r, int i, int col) { return std::string(view(r, i, col)); };
  absl::Status s = read("t", "SELECT seq, task, spec FROM tasks", [&](PGresult* r, int i) {
    const uint64_t seq = static_cast<uint64_t>(ReadInt8(PQgetvalue(r, i, 0)));
    const absl::string_view spec = view(r, i, 2);
    if (!DecodeTaskRow(seq, view(r, i, 1), PQgetisnull(r, i, 2) ? nullptr : &spec,
                       state.tasks.emplace_back())) {
      return absl::DataLossError(absl::StrCat("store: cannot decode the task with seq ", seq));
    }
    return absl::OkStatus();
  });
  if (s.ok()) {
    s = read("o",
             "SELECT task_id, stream, byte_offset, data FROM output "
             "ORDER BY task_id, stream, byte_offset",
             [&](PGresult* r, int i) {
               state.output.push_back({bytes(r, i, 0),
                                       static_cast<v1::OutputStream>(ReadInt4(PQgetvalue(r, i, 1))),
                                       ReadInt8(PQgetvalue(r, i, 2)), bytes(r, i, 3)});
               return absl::OkStatus();
             });
  }
  if (s.ok()) {
    s = read("e", "SELECT cursor, log_bytes, event FROM events ORDER BY cursor",
             [&](PGresult* r, int i) {
               StoredState::Event& e = state.events.emplace_back();
               e.log_bytes = ReadInt8(PQgetvalue(r, i, 1));
               if (!e.event.ParseFromArray(PQgetvalue(r, i, 2), PQgetlength(r, i, 2))) {
                 return absl::DataLossError(absl::StrCat("store: cannot decode the event ",
                                                         ReadInt8(PQgetvalue(r, i, 0))));
               }
               return absl::OkStatus();
             });
  }
  if (s.ok()) {
    s = read("a", "SELECT id, agent FROM agents", [&](PGresult* r, int i) {
      if (!state.agents.emplace_back().ParseFromArray(PQgetvalue(r, i, 1), PQgetlength(r, i, 1))) {
        return absl::DataLossError("store: cannot decode agent " + bytes(r, i, 0));
      }
      return absl::OkStatus();
    });
  }
  if (s.ok()) {
    s = read("r", "SELECT id, run FROM runs", [&](PGresult* r, int i) {
      if (!state.runs.emplace_back().ParseFromArray(PQgetvalue(r, i, 1), PQgetlength(r, i, 1))) {
        return absl::DataLossError("store: cannot decode run " + bytes(r, i, 0));
      }
      return absl::OkStatus();
    });
  }
  if (s.ok()) {
    const std::string audit = absl::StrCat(
        "SELECT seq, entry FROM (SELECT seq, entry FROM audit ORDER BY seq DESC LIMIT ",
        kAuditLoaded, ") AS newest ORDER BY seq");
    s = read("au", audit.c_str(),
             [&](PGresult* r, int i) {
               if (!state.audit.emplace_back().ParseFromArray(PQgetvalue(r, i, 1),
                                                               PQgetlength(r, i, 1))) {
                 return absl::DataLossError(absl::StrCat("store: cannot decode audit entry ",
                                                         ReadInt8(PQgetvalue(r, i, 0))));
               }
               return absl::OkStatus();
             });
  }
  Exec(conn_, "COMMIT").IgnoreError();
  if (!s.ok()) return s;
  std::sort(state.tasks.begin(), state.tasks.end(),
            [](const auto& x, const auto& y) { return x.seq < y.seq; });
  return state;
}

}  // namespace taskgrid
