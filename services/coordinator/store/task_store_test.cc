// One conformance suite for every TaskStore: what is written and made durable
// comes back from Load, after a reopen for the durable stores. PostgreSQL is a
// real server the test starts; its lease and fencing are tested after.
#include "services/coordinator/store/task_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "services/common/testing/postgres_server.h"
#include "services/common/testing/test_util.h"
#include "services/coordinator/store/memory_task_store.h"
#include "services/coordinator/store/open_task_store.h"

namespace taskgrid {
namespace {

using ::testing::ElementsAre;

// A store kind: how to open (and reopen) one in a scratch directory.
struct StoreKind {
  std::string name;
  // Empty for the memory store, which cannot be reopened.
  std::function<std::string(const std::string& dir)> spec;
};

void PrintTo(const StoreKind& k, std::ostream* os) { *os << k.name; }

// One server per test process, started on first use.
PostgresServer& Postgres() {
  static PostgresServer* server = PostgresServer::Start().release();
  if (server == nullptr) {
    ADD_FAILURE() << "cannot start PostgreSQL (scripts/install-deps.sh installs it)";
    std::abort();
  }
  return *server;
}

// A database of its own for each scratch directory (each test).
std::string PostgresSpec(const std::string& dir) {
  const std::string db = std::filesystem::path(dir).filename().string();
  Postgres().CreateDatabase(db);  // Fails harmlessly when it exists (a reopen).
  return Postgres().Uri(db);
}

class PostgresEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { delete &Postgres(); }
};

class TaskStoreTest : public ::testing::TestWithParam<StoreKind> {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tg_store_" + std::to_string(getpid()) + "_" + std::to_string(++counter_));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    Open();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Open() {
    if (!GetParam().spec) {
      store_ = std::make_unique<MemoryTaskStore>();
      return;
    }
    auto s = OpenTaskStore(GetParam().spec(dir_.string()), {});
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
    Lead();
  }

  void Sync() {
    absl::Notification done;
    store_->WhenDurable([&] { done.Notify(); });
    ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  }

  // Makes everything durable, reopens where possible, and loads.
  StoredState Reload() {
    Sync();
    if (GetParam().spec) {
      store_.reset();
      Open();
    }
    auto state = store_->Load();
    EXPECT_TRUE(state.ok()) << state.status();
    return state.ok() ? *std::move(state) : StoredState{};
  }

  static v1::Task MakeTask(const std::string& id, v1::TaskStatus status) {
    v1::Task t;
    t.set_id(id);
    t.set_status(status);
    t.mutable_spec()->mutable_shell()->set_command("echo " + id);
    return t;
  }

  // Journals a task's state, with its spec when `with_spec` (at creation).
  void Put(uint64_t seq, const std::string& id, v1::TaskStatus status, bool with_spec) {
    v1::Task state = MakeTask(id, status);
    auto spec = std::make_shared<const v1::TaskSpec>(state.spec());
    store_->PutTask(seq, TaskState::FromProto(state), with_spec ? spec : nullptr);
  }

  // Rewrites task `full` as a store written before specs were stored apart
  // holds it: the whole snapshot in its task column and no spec. The store
  // is closed meanwhile and reopened.
  void MakeRowOld(const v1::Task& full) {
    Sync();
    store_.reset();
    const std::string hex = absl::BytesToHexString(full.SerializeAsString());
    if (GetParam().name == "sqlite") {
      sqlite3* db = nullptr;
      ASSERT_EQ(sqlite3_open((dir_ / "t.db").c_str(), &db), SQLITE_OK);
      const std::string sql = absl::StrCat("UPDATE tasks SET spec = NULL, task = x'", hex,
                                           "' WHERE id = '", full.id(), "'");
      EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
      sqlite3_close(db);
    } else {
      const std::string cmd = absl::StrCat("psql -q -d '", GetParam().spec(dir_.string()),
                                           "' -c \"UPDATE tasks SET spec = NULL, task = '\\\\x",
                                           hex, "' WHERE id = '", full.id(), "'\"");
      EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    }
    Open();
  }

  static std::vector<std::string> Ids(const StoredState& s) {
    std::vector<std::string> ids;
    for (const auto& t : s.tasks) ids.push_back(t.task.id());
    return ids;
  }

  // AwaitLeadership on a store that is only opened: a PostgreSQL store
  // takes its lease then.
  void Lead() { ASSERT_TRUE(store_->AwaitLeadership(nullptr, nullptr).ok()); }

  static inline int counter_ = 0;
  std::filesystem::path dir_;
  std::unique_ptr<TaskStore> store_;
};

TEST_P(TaskStoreTest, EmptyStoreLoadsNothing) {
  StoredState s = Reload();
  EXPECT_TRUE(s.tasks.empty());
  EXPECT_TRUE(s.output.empty());
  EXPECT_TRUE(s.events.empty());
  EXPECT_TRUE(s.agents.empty());
}

TEST_P(TaskStoreTest, TasksComeBackInSubmissionOrderWithTheirLatestSnapshot) {
  Put(2, "b", v1::TASK_STATUS_QUEUED, true);
  Put(1, "a", v1::TASK_STATUS_QUEUED, true);
  Put(3, "c", v1::TASK_STATUS_QUEUED, true);
  Put(1, "a", v1::TASK_STATUS_RUNNING, false);
  Put(1, "a", v1::TASK_STATUS_SUCCEEDED, false);
  store_->DeleteTask("c");
  StoredState s = Reload();
  EXPECT_THAT(Ids(s), ElementsAre("a", "b"));
  EXPECT_EQ(s.tasks[0].seq, 1u);
  EXPECT_EQ(s.tasks[0].task.status(), v1::TASK_STATUS_SUCCEEDED);
  EXPECT_EQ(s.tasks[0].task.spec().shell().command(), "echo a");  // Kept across updates.
  EXPECT_TRUE(s.tasks[0].spec_stored);
  EXPECT_EQ(s.tasks[1].task.status(), v1::TASK_STATUS_QUEUED);
  EXPECT_EQ(s.tasks[1].task.spec().shell().command(), "echo b");
}

TEST_P(TaskStoreTest, ARowFromBeforeSpecsWereStoredApartKeepsItsSpec) {
  if (!GetParam().spec) GTEST_SKIP() << "the memory store has no older format";
  Put(1, "a", v1::TASK_STATUS_QUEUED, true);
  Put(2, "b", v1::TASK_STATUS_QUEUED, true);
  MakeRowOld(MakeTask("a", v1::TASK_STATUS_QUEUED));
  auto old = store_->Load();
  ASSERT_TRUE(old.ok()) << old.status();
  ASSERT_EQ(old->tasks.size(), 2u);
  EXPECT_EQ(old->tasks[0].task.spec().shell().command(), "echo a");
  EXPECT_FALSE(old->tasks[0].spec_stored);  // Its next update must carry it.
  EXPECT_TRUE(old->tasks[1].spec_stored);
  Put(1, "a", v1::TASK_STATUS_RUNNING, true);
  StoredState s = Reload();
  EXPECT_EQ(s.tasks[0].task.status(), v1::TASK_STATUS_RUNNING);
  EXPECT_EQ(s.tasks[0].task.spec().shell().command(), "echo a");
  EXPECT_TRUE(s.tasks[0].spec_stored);
}

TEST_P(TaskStoreTest, WritesSpreadOverManyCommitsKeepTheirOrder) {
  for (int i = 0; i < 50; ++i) {
    Put(1, "a", i % 2 ? v1::TASK_STATUS_RUNNING : v1::TASK_STATUS_QUEUED, i == 0);
    if (i % 7 == 0) Sync();
  }
  Put(1, "a", v1::TASK_STATUS_FAILED, false);
  StoredState s = Reload();
  ASSERT_EQ(s.tasks.size(), 1u);
  EXPECT_EQ(s.tasks[0].task.status(), v1::TASK_STATUS_FAILED);
  EXPECT_EQ(s.tasks[0].task.spec().shell().command(), "echo a");
}

TEST_P(TaskStoreTest, OutputIsContiguousAndDeletedWithItsTask) {
  Put(1, "a", v1::TASK_STATUS_RUNNING, true);
  Put(2, "b", v1::TASK_STATUS_RUNNING, true);
  store_->AppendOutput("a", v1::OUTPUT_STREAM_STDOUT, 0, "hel");
  store_->AppendOutput("a", v1::OUTPUT_STREAM_STDERR, 0, "oops");
  Sync();
  store_->AppendOutput("a", v1::OUTPUT_STREAM_STDOUT, 3, "lo");
  store_->AppendOutput("b", v1::OUTPUT_STREAM_STDOUT, 0, "bye");
  store_->DeleteTask("b");
  StoredState s = Reload();
  std::string out, err;
  for (const auto& o : s.output) {
    ASSERT_EQ(o.task_id, "a");
    std::string& dst = o.stream == v1::OUTPUT_STREAM_STDOUT ? out : err;
    EXPECT_EQ(o.offset, static_cast<int64_t>(dst.size()));
    dst += o.data;
  }
  EXPECT_EQ(out, "hello");
  EXPECT_EQ(err, "oops");
}

TEST_P(TaskStoreTest, TrimOutputDropsOnlyChunksWhollyInsideTheRange) {
  Put(1, "a", v1::TASK_STATUS_RUNNING, true);
  for (int i = 0; i < 10; ++i) {
    store_->AppendOutput("a", v1::OUTPUT_STREAM_STDOUT, i * 10, std::string(10, 'a' + i));
    Sync();  // One stored chunk per append.
  }
  store_->TrimOutput("a", v1::OUTPUT_STREAM_STDOUT, 15, 75);
  StoredState s = Reload();
  std::vector<int64_t> offsets;
  for (const auto& o : s.output) offsets.push_back(o.offset);
  // [10,20) straddles the head end and [70,80) the tail start: both kept.
  EXPECT_THAT(offsets, ElementsAre(0, 10, 70, 80, 90));
}

// A stream writing faster than its store commits: the bytes a trim drops
// before they commit are never written, and what is kept reads the same.
TEST_P(TaskStoreTest, OutputTrimmedWhileQueuedIsNeverWritten) {
  Put(1, "a", v1::TASK_STATUS_RUNNING, true);
  store_->AppendOutput("a", v1::OUTPUT_STREAM_STDOUT, 0, std::string(10, 'h'));
  Sync();
  {
    TaskStore::Group group(*store_);  // Holds the writes queued.
    for (int i = 1; i < 10; ++i) {
      store_->AppendOutput("a", v1::OUTPUT_STREAM_STDOUT, i * 10, std::string(10, 'a' + i));
    }
    store_->TrimOutput("a", v1::OUTPUT_STREAM_STDOUT, 10, 85);
  }
  StoredState s = Reload();
  std::string kept;
  int64_t end = 0, stored = 0;
  for (const auto& o : s.output) {
    for (size_t i = 0; i < o.data.size(); ++i) {
      const int64_t at = o.offset + static_cast<int64_t>(i);
      if (at < 10 || at >= 85) kept += o.data[i];
    }
    end = std::max(end, o.offset + static_cast<int64_t>(o.data.size()));
    stored += static_cast<int64_t>(o.data.size());
  }
  EXPECT_EQ(kept, std::string(10, 'h') + std::string(5, 'i') + std::string(10, 'j'));
  EXPECT_EQ(end, 100);
  if (GetParam().name != "memory") {
    EXPECT_EQ(stored, 25);
  }
}

TEST_P(TaskStoreTest, EventsKeepCursorsAndLogEventsOnlyTheirLength) {
  v1::TaskEvent created;
  created.set_cursor(7);
  created.set_type(v1::EVENT_TYPE_TASK_CREATED);
  created.set_task_id("a");
  *created.mutable_task() = MakeTask("a", v1::TASK_STATUS_PENDING);
  v1::TaskEvent log;
  log.set_cursor(8);
  log.set_type(v1::EVENT_TYPE_TASK_LOG);
  log.set_task_id("a");
  log.mutable_output()->set_stream(v1::OUTPUT_STREAM_STDOUT);
  log.mutable_output()->set_offset(0);
  log.mutable_output()->set_data("hello");
  v1::TaskEvent old = created;
  old.set_cursor(6);
  store_->AppendEvent(old);
  store_->AppendEvent(created);
  store_->AppendEvent(log);
  store_->TrimEvents(7);
  StoredState s = Reload();
  ASSERT_EQ(s.events.size(), 2u);
  EXPECT_EQ(s.events[0].event.cursor(), 7u);
  EXPECT_EQ(s.events[0].event.task().spec().shell().command(), "echo a");
  EXPECT_EQ(s.events[1].event.cursor(), 8u);
  EXPECT_EQ(s.events[1].event.output().data(), "");
  EXPECT_EQ(s.events[1].log_bytes, 5);
  EXPECT_EQ(s.events[1].event.output().offset(), 0);
}

TEST_P(TaskStoreTest, AgentsAreReplacedAndDeleted) {
  v1::Agent a;
  a.set_agent_id("a1");
  a.set_slots(2);
  store_->PutAgent(a);
  a.set_slots(4);
  store_->PutAgent(a);
  v1::Agent b;
  b.set_agent_id("b1");
  store_->PutAgent(b);
  store_->DeleteAgent("b1");
  StoredState s = Reload();
  ASSERT_EQ(s.agents.size(), 1u);
  EXPECT_EQ(s.agents[0].agent_id(), "a1");
  EXPECT_EQ(s.agents[0].slots(), 4u);
}

TEST_P(TaskStoreTest, AuditEntriesComeBackInOrder) {
  for (uint64_t seq : {1, 2, 3}) {
    v1::AuditEntry e;
    e.set_seq(seq);
    e.set_actor("key:ci");
    e.set_action(seq == 2 ? "task.cancel" : "task.submit");
    store_->AppendAudit(e);
  }
  StoredState s = Reload();
  ASSERT_EQ(s.audit.size(), 3u);
  EXPECT_EQ(s.audit[0].seq(), 1u);
  EXPECT_EQ(s.audit[1].action(), "task.cancel");
  EXPECT_EQ(s.audit[2].seq(), 3u);
}

// The registry registers callbacks under its lock: one run inline would run
// a reply, an agent send or an event publication while holding it.
TEST_P(TaskStoreTest, DurabilityCallbacksNeverRunOnTheCallersThread) {
  const std::thread::id caller = std::this_thread::get_id();
  for (bool after_a_write : {false, true}) {
    if (after_a_write) Put(1, "t", v1::TASK_STATUS_QUEUED, true);
    absl::Notification ran;
    std::thread::id ran_on;
    store_->WhenDurable([&] {
      ran_on = std::this_thread::get_id();
      ran.Notify();
    });
    ASSERT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(10)));
    EXPECT_NE(ran_on, caller) << (after_a_write ? "after a write" : "with nothing written");
  }
}

TEST_P(TaskStoreTest, DurabilityCallbacksRunInOrderAfterTheirWrites) {
  std::vector<int> order;
  absl::Mutex mu;
  for (int i = 0; i < 100; ++i) {
    Put(static_cast<uint64_t>(i + 1), std::to_string(i), v1::TASK_STATUS_QUEUED, true);
    store_->WhenDurable([&, i] {
      absl::MutexLock lock(&mu);
      order.push_back(i);
    });
  }
  Sync();
  absl::MutexLock lock(&mu);
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[static_cast<size_t>(i)], i);
}

// A task's change and the event that describes it are written under one
// group: no commit may store one without the other, or a crash between the
// two would leave a state no reader was told of.
TEST_P(TaskStoreTest, AGroupsWritesBecomeDurableTogether) {
  absl::Notification durable;
  {
    TaskStore::Group group(*store_);
    Put(1, "t", v1::TASK_STATUS_RUNNING, true);
    store_->WhenDurable([&] { durable.Notify(); });
    // The commit thread is awake for the write, and must leave it queued.
    EXPECT_FALSE(durable.WaitForNotificationWithTimeout(absl::Milliseconds(100)));
    v1::TaskEvent status;
    status.set_cursor(1);
    status.set_type(v1::EVENT_TYPE_TASK_STATUS);
    status.set_task_id("t");
    store_->AppendEvent(status);
  }
  ASSERT_TRUE(durable.WaitForNotificationWithTimeout(absl::Seconds(10)));
  StoredState s = Reload();
  EXPECT_EQ(s.tasks.size(), 1u);
  EXPECT_EQ(s.events.size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(AllStores, TaskStoreTest,
                         ::testing::Values(StoreKind{"memory", nullptr},
                                           StoreKind{"sqlite",
                                                     [](const std::string& dir) {
                                                       return "sqlite:" + dir + "/t.db";
                                                     }},
                                           StoreKind{"postgres", PostgresSpec}),
                         [](const auto& info) { return info.param.name; });

TEST(OpenTaskStoreTest, RejectsUnknownSpecsNamingThem) {
  EXPECT_THAT(OpenTaskStore("mysql://x", {}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(OpenTaskStore("sqlite:/tmp/x.db?sync=maybe", {}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(OpenTaskStore("sqlite:/nonexistent-dir/x.db", {}),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST(OpenTaskStoreTest, SqliteStoreOfSchemaVersionOneIsMigratedWithItsTasks) {
  const std::string path = std::filesystem::temp_directory_path() /
                           ("taskgrid_migrate_test_" + std::to_string(getpid()) + ".db");
  std::filesystem::remove(path);
  v1::Task task;
  task.set_id("f3b4c1d2-0000-4000-8000-000000000001");
  task.mutable_spec()->mutable_shell()->set_command("echo kept");
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    const std::string blob = task.SerializeAsString();
    const std::string sql = absl::StrCat(
        "CREATE TABLE tasks (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, status INTEGER NOT NULL,"
        " finished INTEGER NOT NULL, task BLOB NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE output (task_id TEXT NOT NULL, stream INTEGER NOT NULL, offset INTEGER NOT "
        "NULL, data BLOB NOT NULL, PRIMARY KEY (task_id, stream, offset));"
        "CREATE TABLE events (cursor INTEGER PRIMARY KEY, log_bytes INTEGER NOT NULL, event BLOB "
        "NOT NULL);"
        "CREATE TABLE agents (id TEXT PRIMARY KEY, agent BLOB NOT NULL);"
        "INSERT INTO tasks VALUES ('", task.id(), "', 7, 1, 0, X'", absl::BytesToHexString(blob),
        "');PRAGMA user_version=1;");
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  auto store = OpenTaskStore("sqlite:" + path, {});
  ASSERT_TRUE(store.ok()) << store.status();
  auto state = (*store)->Load();
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_EQ(state->tasks.size(), 1u);
  EXPECT_EQ(state->tasks[0].seq, 7u);
  EXPECT_EQ(state->tasks[0].task.id(), task.id());
  EXPECT_EQ(state->tasks[0].task.spec().shell().command(), "echo kept");
  EXPECT_FALSE(state->tasks[0].spec_stored);
  store->reset();
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
}

TEST(OpenTaskStoreTest, SecondCoordinatorOnTheSameFileIsRefused) {
  const std::string path = std::filesystem::temp_directory_path() /
                           ("taskgrid_lock_test_" + std::to_string(getpid()) + ".db");
  auto first = OpenTaskStore("sqlite:" + path, {});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(OpenTaskStore("sqlite:" + path, {}).ok());
  first->reset();
  std::filesystem::remove(path);
  std::filesystem::remove(path + "-wal");
  std::filesystem::remove(path + "-shm");
}

// ---------------------------------------------------------------- lease

class PostgresLeaseTest : public ::testing::Test {
 protected:
  std::unique_ptr<TaskStore> Open(absl::Duration ttl = absl::Seconds(1)) {
    StoreOptions options;
    options.lease_ttl = ttl;
    auto s = OpenTaskStore(uri_, options);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }

  const std::string uri_ = PostgresSpec(
      "lease_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
};

TEST_F(PostgresLeaseTest, OneLeaderAtATimeAndTheNextTermTakesOver) {
  auto first = Open();
  ASSERT_TRUE(first->AwaitLeadership(nullptr, nullptr).ok());
  const int64_t term = first->leader().term;
  EXPECT_GT(term, 0);
  EXPECT_FALSE(first->leader().failover);

  // A standby waits while the leader renews...
  auto second = Open();
  std::atomic<bool> give_up{false};
  std::thread stopper([&] {
    absl::SleepFor(absl::Milliseconds(2500));
    give_up = true;
  });
  EXPECT_THAT(second->AwaitLeadership([&] { return give_up.load(); }, nullptr),
              StatusIs(absl::StatusCode::kCancelled));
  stopper.join();
  // ... and takes over once the leader is gone (it hands the lease over).
  first.reset();
  ASSERT_TRUE(second->AwaitLeadership(nullptr, nullptr).ok());
  EXPECT_EQ(second->leader().term, term + 1);
  EXPECT_TRUE(second->leader().failover);
}

TEST_F(PostgresLeaseTest, ALeaderThatLostItsLeaseCanNeverWriteAgain) {
  auto old_leader = Open();
  absl::Notification lost;
  ASSERT_TRUE(
      old_leader->AwaitLeadership(nullptr, [&](const absl::Status&) { lost.Notify(); }).ok());
  TaskState a;
  a.id = "before";
  old_leader->PutTask(1, a, std::make_shared<const v1::TaskSpec>());
  absl::Notification durable;
  old_leader->WhenDurable([&] { durable.Notify(); });
  ASSERT_TRUE(durable.WaitForNotificationWithTimeout(absl::Seconds(10)));

  // The old leader stalls past its lease (as if paused; here its lease is
  // expired by hand, again and again, since its renewer is still running)
  // and a new leader takes the lease.
  const std::string expire =
      "psql -q -d '" + uri_ + "' -c \"UPDATE leader SET expires_at = now() - interval '1 second' " +
      "WHERE term = " + std::to_string(old_leader->leader().term) + "\"";
  std::atomic<bool> elected{false};
  std::thread expirer([&] {
    while (!elected) {
      EXPECT_EQ(std::system(expire.c_str()), 0);
      absl::SleepFor(absl::Milliseconds(50));
    }
  });
  auto new_leader = Open();
  const absl::Status took = new_leader->AwaitLeadership(nullptr, nullptr);
  elected = true;
  expirer.join();
  ASSERT_TRUE(took.ok()) << took;

  TaskState b;
  b.id = "after";
  old_leader->PutTask(2, b, std::make_shared<const v1::TaskSpec>());  // Fenced: never committed.
  EXPECT_TRUE(lost.WaitForNotificationWithTimeout(absl::Seconds(10)));
  auto state = new_leader->Load();
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_EQ(state->tasks.size(), 1u);
  EXPECT_EQ(state->tasks[0].task.id(), "before");
}

}  // namespace
}  // namespace taskgrid

static auto* const postgres_environment =
    ::testing::AddGlobalTestEnvironment(new taskgrid::PostgresEnvironment);
