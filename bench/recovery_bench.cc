// Recovery: an SQLite store holding N retained finished tasks (and a full
// event ring) is written, then the real coordinator binary is started on it;
// measured are the time from exec to serving (answering Stats with every
// task) and the coordinator's RSS per retained task. Ceiling: reading the
// same file's rows without decoding them (SELECT of every blob). Prints one
// JSON object.
//
//   recovery_bench [--tasks=1000000] [--events=100000]
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "bench/bench_util.h"
#include "services/common/proto_time.h"
#include "services/common/status_util.h"
#include "services/coordinator/store/sqlite_task_store.h"
#include "taskgrid/v1/task_service.grpc.pb.h"

ABSL_FLAG(int, tasks, 1000000, "Retained finished tasks in the store.");
ABSL_FLAG(int, events, 100000, "Events in the store's ring.");

namespace taskgrid {
namespace {

using Clock = std::chrono::steady_clock;

// A finished task as the registry stores it.
v1::Task FinishedTask(int i, absl::Time t) {
  v1::Task task;
  task.set_id(absl::StrFormat("%08x-0000-4000-8000-%012x", i, i));
  v1::TaskSpec* spec = task.mutable_spec();
  spec->set_type("shell");
  spec->set_priority(v1::PRIORITY_MEDIUM);
  spec->mutable_shell()->set_command(absl::StrCat("make -C /srv/build target-", i % 100));
  *spec->mutable_timeout() = ToProto(absl::Minutes(10));
  *spec->mutable_kill_grace() = ToProto(absl::Seconds(10));
  task.set_status(v1::TASK_STATUS_SUCCEEDED);
  task.set_status_reason("exit code 0");
  task.set_agent_id(absl::StrCat("agent-", i % 50));
  task.set_attempt(1);
  for (auto* ts :
       {task.mutable_created_at(), task.mutable_updated_at(), task.mutable_dispatched_at(),
        task.mutable_started_at(), task.mutable_finished_at()}) {
    *ts = ToProto(t);
  }
  task.mutable_exit()->set_exit_code(0);
  return task;
}

absl::Status WriteStore(const std::string& path, int tasks, int events) {
  SqliteTaskStore::Options o;
  o.path = path;
  o.sync_full = false;
  TASKGRID_ASSIGN_OR_RETURN(auto store, SqliteTaskStore::Open(o));
  const absl::Time now = absl::Now();
  for (int i = 0; i < tasks; ++i) {
    // As the registry journals a task: its spec apart from its state.
    v1::Task state = FinishedTask(i, now);
    auto spec = std::make_shared<const v1::TaskSpec>(state.spec());
    store->PutTask(static_cast<uint64_t>(i + 1), TaskState::FromProto(state), std::move(spec));
    if (i % 50000 == 0) {
      absl::Notification done;
      store->WhenDurable([&] { done.Notify(); });
      done.WaitForNotification();
    }
  }
  for (int c = 1; c <= events; ++c) {
    v1::TaskEvent e;
    e.set_cursor(static_cast<uint64_t>(c));
    e.set_type(v1::EVENT_TYPE_TASK_STATUS);
    const int i = tasks - events + c - 1;
    *e.mutable_task() = FinishedTask(std::max(i, 0), now);
    e.mutable_task()->clear_spec();  // Events are journaled without it.
    e.set_task_id(e.task().id());
    store->AppendEvent(e);
  }
  absl::Notification done;
  store->WhenDurable([&] { done.Notify(); });
  done.WaitForNotification();
  return absl::OkStatus();
}

// Seconds to read every task and event blob with no decoding.
double ReadCeiling(const std::string& path) {
  const auto start = Clock::now();
  sqlite3* db = nullptr;
  sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  int64_t bytes = 0;
  for (const char* sql : {"SELECT task FROM tasks", "SELECT event FROM events"}) {
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, sql, -1, &s, nullptr);
    while (sqlite3_step(s) == SQLITE_ROW) bytes += sqlite3_column_bytes(s, 0);
    sqlite3_finalize(s);
  }
  sqlite3_close(db);
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int Main() {
  const int tasks = absl::GetFlag(FLAGS_tasks);
  char dir_template[] = "/tmp/taskgrid-recovery-XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  const std::string db = dir + "/coordinator.db";
  if (absl::Status s = WriteStore(db, tasks, absl::GetFlag(FLAGS_events)); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  const double ceiling = ReadCeiling(db);

  const auto start = Clock::now();
  const pid_t coordinator =
      bench::Spawn({TASKGRID_COORDINATOR_BIN, "--grpc_address=127.0.0.1:0",
                    "--metrics_address=", "--log_level=error", "--store=sqlite:" + db,
                    "--port_file=" + dir + "/ports", absl::StrCat("--max_retained_tasks=", tasks)});
  const int port = bench::ReadPort(dir + "/ports");
  auto stub = v1::TaskService::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  v1::StatsResponse stats;
  // Until it serves: wait_for_ready rides out the refused connections while
  // it loads, instead of failing fast in a loop the channel's reconnect
  // backoff never gets to end.
  for (;;) {
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    if (stub->Stats(&ctx, {}, &stats).ok()) break;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double rss = static_cast<double>(bench::RssBytes(coordinator));
  kill(coordinator, SIGTERM);
  waitpid(coordinator, nullptr, 0);
  const double file_mib =
      static_cast<double>(std::filesystem::file_size(db)) / static_cast<double>(1 << 20);
  std::filesystem::remove_all(dir);
  if (stats.total() != tasks) {
    std::fprintf(stderr, "recovered %lld of %d tasks\n", static_cast<long long>(stats.total()),
                 tasks);
  }
  std::fprintf(stderr, "store file %.1f MiB\n", file_mib);
  bench::PrintFigures(
      "recovery",
      {{.name = "recovery.seconds_to_serving", .value = seconds, .unit = "s", .ceiling = ceiling,
        .goal = 5, .lower_is_better = true},
       {.name = "recovery.rss_per_retained_task", .value = rss / tasks, .unit = "B", .goal = 1024,
        .lower_is_better = true}});
  return 0;
}

}  // namespace
}  // namespace taskgrid

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return taskgrid::Main();
}
