// Crash tests: the real coordinator binary, on its SQLite store, is killed
// with SIGKILL at random moments under a mixed load (quick commands,
// megabytes of output, sleeps, cancels) and restarted; real agents keep
// running their tasks meanwhile. Every task a client saw acknowledged must
// reach exactly one final state, with exactly its expected output bytes, and
// a watcher resuming by cursor must see each final state once and every
// output byte once, in order.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "services/common/testing/test_util.h"
#include "taskgrid/v1/task_service.grpc.pb.h"
#include "tests/faults/child_process.h"
#include "tests/faults/retrying_client.h"

namespace taskgrid {
namespace {

constexpr int kTasks = 2000;
constexpr int kSubmitters = 8;
constexpr int kCrashes = 4;

enum class Kind { kEcho, kBothStreams, kMegabyte, kSleep, kCancel, kLines };

Kind KindOf(int i) {
  if (i % 50 == 6) return Kind::kMegabyte;
  switch (i % 10) {
    case 5:
      return Kind::kBothStreams;
    case 7:
      return Kind::kSleep;
    case 8:
      return Kind::kCancel;
    case 9:
      return Kind::kLines;
    default:
      return Kind::kEcho;
  }
}

std::string CommandOf(int i) {
  switch (KindOf(i)) {
    case Kind::kEcho:
      return absl::StrCat("echo task-", i);
    case Kind::kBothStreams:
      return absl::StrCat("echo out-", i, "; echo err-", i, " >&2");
    case Kind::kMegabyte:
      return absl::StrCat("yes task-", i, " | head -c 1000000");
    case Kind::kSleep:
      return absl::StrCat("sleep 1.", i % 3, "; echo slept-", i);
    case Kind::kCancel:
      return "sleep 60";
    case Kind::kLines:
      return "seq 1 2000";
  }
  return "";
}

std::string ExpectedStdout(int i) {
  switch (KindOf(i)) {
    case Kind::kEcho:
      return absl::StrCat("task-", i, "\n");
    case Kind::kBothStreams:
      return absl::StrCat("out-", i, "\n");
    case Kind::kMegabyte: {
      const std::string line = absl::StrCat("task-", i, "\n");
      std::string out;
      while (out.size() < 1000000) out += line;
      out.resize(1000000);
      return out;
    }
    case Kind::kSleep:
      return absl::StrCat("slept-", i, "\n");
    case Kind::kCancel:
      return "";
    case Kind::kLines: {
      std::string out;
      for (int n = 1; n <= 2000; ++n) absl::StrAppend(&out, n, "\n");
      return out;
    }
  }
  return "";
}

class CoordinatorCrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / absl::StrCat("taskgrid_crash_", getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    address_ = absl::StrCat("127.0.0.1:", FreeLoopbackPort());
    coordinator_ = std::make_unique<ChildProcess>(std::vector<std::string>{
        TASKGRID_COORDINATOR_BIN, "--grpc_address=" + address_,
        "--metrics_address=", "--data_dir=" + dir_.string(), "--log_level=warn",
        "--heartbeat_interval=1s", "--heartbeat_ttl=20s", "--output_cap_bytes=67108864"});
    ASSERT_TRUE(coordinator_->Start());
    client_ = std::make_unique<RetryingClient>(address_);
    agents_ = StartAgents(TASKGRID_AGENT_BIN, address_, {"crash-a1", "crash-a2"}, 16);
    ASSERT_TRUE(WaitFor([&] { return client_->ConnectedAgents() == 2; }, absl::Seconds(20)));
  }

  void TearDown() override {
    agents_.clear();
    coordinator_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::filesystem::path dir_;
  std::string address_;
  std::unique_ptr<ChildProcess> coordinator_;
  std::vector<std::unique_ptr<ChildProcess>> agents_;
  std::unique_ptr<RetryingClient> client_;
};

TEST_F(CoordinatorCrashTest, NothingAcknowledgedIsLostAcrossKillNine) {
  absl::Mutex mu;
  std::map<int, std::string> acked;  // Task number -> id, once Submit answered.
  std::atomic<bool> stop_watch{false};

  // A watcher that resumes from its last cursor whenever the stream breaks.
  std::map<std::string, std::vector<v1::TaskStatus>> finals;
  int resyncs = 0;
  std::thread watcher([&] {
    uint64_t cursor = 0;
    while (!stop_watch) {
      grpc::ClientContext ctx;  // Short streams: the loop checks stop_watch.
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      v1::WatchRequest req;
      req.set_after_cursor(cursor);
      req.add_types(v1::EVENT_TYPE_TASK_STATUS);
      auto reader = client_->stub().Watch(&ctx, req);
      v1::WatchResponse resp;
      while (reader->Read(&resp)) {
        absl::MutexLock lock(&mu);
        for (const v1::TaskEvent& e : resp.events()) {
          EXPECT_GT(e.cursor(), cursor);
          cursor = e.cursor();
          if (e.type() == v1::EVENT_TYPE_RESYNC) ++resyncs;
          if (e.type() == v1::EVENT_TYPE_TASK_STATUS &&
              e.task().status() >= v1::TASK_STATUS_SUCCEEDED) {
            finals[e.task_id()].push_back(e.task().status());
          }
        }
      }
      reader->Finish().IgnoreError();
      if (!stop_watch) absl::SleepFor(absl::Milliseconds(50));
    }
  });

  std::atomic<int> next{0};
  std::vector<std::thread> submitters;
  for (int w = 0; w < kSubmitters; ++w) {
    submitters.emplace_back([&] {
      for (int i = next++; i < kTasks; i = next++) {
        absl::SleepFor(absl::Milliseconds(25));  // Spread submits over the crashes.
        v1::SubmitRequest req;
        req.set_idempotency_key(absl::StrCat("crash-", i));
        v1::TaskSpec& spec = *req.mutable_spec();
        spec.mutable_shell()->set_command(CommandOf(i));
        spec.mutable_timeout()->set_seconds(120);
        spec.mutable_retry()->set_max_attempts(5);
        spec.mutable_retry()->mutable_backoff()->set_nanos(100'000'000);
        v1::SubmitResponse resp;
        grpc::Status s = client_->Submit(req, &resp);
        ASSERT_TRUE(s.ok()) << i << ": " << s.error_message();
        {
          absl::MutexLock lock(&mu);
          acked[i] = resp.task().id();
        }
        if (KindOf(i) == Kind::kCancel) {
          v1::CancelRequest cancel;
          cancel.set_task_id(resp.task().id());
          v1::Task t;
          s = client_->Call(
              [&](grpc::ClientContext& c) { return client_->stub().Cancel(&c, cancel, &t); });
          // Already cancelled when an earlier try's reply was lost.
          EXPECT_TRUE(s.ok() || s.error_code() == grpc::StatusCode::FAILED_PRECONDITION)
              << s.error_message();
        }
      }
    });
  }

  std::mt19937 rng(std::random_device{}());
  for (int crash = 0; crash < kCrashes; ++crash) {
    absl::SleepFor(absl::Milliseconds(std::uniform_int_distribution<int>(300, 1500)(rng)));
    {
      absl::MutexLock lock(&mu);
      std::printf("crash %d: SIGKILL with %zu of %d tasks acknowledged\n", crash + 1, acked.size(),
                  kTasks);
    }
    coordinator_->Kill(SIGKILL);
    absl::SleepFor(absl::Milliseconds(std::uniform_int_distribution<int>(50, 400)(rng)));
    ASSERT_TRUE(coordinator_->Start());
  }
  for (auto& t : submitters) t.join();
  ASSERT_EQ(acked.size(), static_cast<size_t>(kTasks));

  // Every acknowledged task reaches a final state.
  EXPECT_TRUE(WaitFor([&] { return client_->Unfinished() == 0; }, absl::Seconds(90)));
  // The same key still names the same task after the restarts.
  for (int i : {0, kTasks / 2, kTasks - 1}) {
    v1::SubmitRequest req;
    req.set_idempotency_key(absl::StrCat("crash-", i));
    req.mutable_spec()->mutable_shell()->set_command(CommandOf(i));
    v1::SubmitResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(client_->stub().Submit(&ctx, req, &resp).ok());
    EXPECT_TRUE(resp.existing());
    EXPECT_EQ(resp.task().id(), acked[i]);
  }

  int checked = 0, retried = 0;
  for (const auto& [i, id] : acked) {
    v1::Task t;
    grpc::Status s = client_->Get(id, &t);
    ASSERT_TRUE(s.ok()) << "task " << i << " (" << id << ") is gone: " << s.error_message();
    if (KindOf(i) == Kind::kCancel) {
      EXPECT_EQ(t.status(), v1::TASK_STATUS_CANCELLED) << i;
      continue;
    }
    ASSERT_EQ(t.status(), v1::TASK_STATUS_SUCCEEDED) << i << ": " << t.status_reason();
    retried += t.attempt() > 1;
    int64_t dropped = 0;
    EXPECT_EQ(client_->ReadOutput(id, v1::OUTPUT_STREAM_STDOUT, &dropped), ExpectedStdout(i)) << i;
    EXPECT_EQ(dropped, 0);
    if (KindOf(i) == Kind::kBothStreams) {
      EXPECT_EQ(client_->ReadOutput(id, v1::OUTPUT_STREAM_STDERR, &dropped),
                absl::StrCat("err-", i, "\n"));
    }
    ++checked;
  }
  EXPECT_GT(checked, kTasks / 2);
  std::printf("%d tasks succeeded with their exact output (%d after a lost attempt)\n", checked,
              retried);

  // Once the watcher has seen every task end, check each ended once.
  EXPECT_TRUE(WaitFor(
      [&] {
        absl::MutexLock lock(&mu);
        for (const auto& [i, id] : acked) {
          if (!finals.contains(id)) return false;
        }
        return true;
      },
      absl::Seconds(30)));
  stop_watch = true;
  watcher.join();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(resyncs, 0);
  for (const auto& [i, id] : acked) {
    auto it = finals.find(id);
    ASSERT_NE(it, finals.end()) << "no final event for task " << i;
    EXPECT_EQ(it->second.size(), 1u) << "task " << i << " ended " << it->second.size() << " times";
  }
}

TEST_F(CoordinatorCrashTest, OutputPrintedAcrossRestartsReachesAWatcherWholeAndInOrder) {
  v1::SubmitRequest req;
  req.mutable_spec()->mutable_shell()->set_command(
      "for i in $(seq 1 3000); do echo line $i; [ $((i % 100)) = 0 ] && sleep 0.1; done");
  v1::SubmitResponse resp;
  ASSERT_TRUE(client_->Submit(req, &resp).ok());
  const std::string id = resp.task().id();
  std::string expected;
  for (int i = 1; i <= 3000; ++i) absl::StrAppend(&expected, "line ", i, "\n");

  // A watcher of the task's log, resuming by cursor while the coordinator
  // is killed twice under it.
  std::string watched;
  bool in_order = true, finished = false;
  std::thread killer([&] {
    for (int i = 0; i < 2; ++i) {
      absl::SleepFor(absl::Milliseconds(900));
      coordinator_->Kill(SIGKILL);
      absl::SleepFor(absl::Milliseconds(200));
      coordinator_->Start();
    }
  });
  uint64_t cursor = resp.cursor() - 1;  // From the task's creation.
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (!finished && absl::Now() < give_up) {
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::WatchRequest watch;
    watch.set_task_id(id);
    watch.set_after_cursor(cursor);
    auto reader = client_->stub().Watch(&ctx, watch);
    v1::WatchResponse batch;
    while (!finished && reader->Read(&batch)) {
      for (const v1::TaskEvent& e : batch.events()) {
        ASSERT_NE(e.type(), v1::EVENT_TYPE_RESYNC);
        cursor = e.cursor();
        if (e.type() == v1::EVENT_TYPE_TASK_LOG) {
          in_order &= e.output().offset() == static_cast<int64_t>(watched.size());
          watched += e.output().data();
        }
        finished |= e.type() == v1::EVENT_TYPE_TASK_STATUS &&
                    e.task().status() >= v1::TASK_STATUS_SUCCEEDED;
      }
    }
    ctx.TryCancel();
    reader->Finish().IgnoreError();
  }
  killer.join();
  EXPECT_TRUE(finished);
  EXPECT_TRUE(in_order);
  EXPECT_EQ(watched, expected);
  int64_t dropped = 0;
  EXPECT_EQ(client_->ReadOutput(id, v1::OUTPUT_STREAM_STDOUT, &dropped), expected);
}

TEST_F(CoordinatorCrashTest, AgentsSpoolOutputWhileTheCoordinatorIsAwayAndTasksKeepRunning) {
  // About 18 MB over four seconds: far more than the agent's 4 MiB window.
  const std::string marker = (dir_ / "finished").string();
  v1::SubmitRequest req;
  req.mutable_spec()->mutable_shell()->set_command(absl::StrCat(
      "for i in $(seq 1 40); do seq 1 50000 | sed \"s/^/$i:/\"; sleep 0.1; done; touch ", marker));
  v1::SubmitResponse resp;
  ASSERT_TRUE(client_->Submit(req, &resp).ok());
  std::string expected;
  for (int i = 1; i <= 40; ++i) {
    for (int n = 1; n <= 50000; ++n) absl::StrAppend(&expected, i, ":", n, "\n");
  }
  // Killed mid-stream: once some output has been taken in.
  ASSERT_TRUE(WaitFor([&] {
    v1::Task t;
    return client_->Get(resp.task().id(), &t).ok() && t.stdout().total_bytes() > (1 << 20);
  }));
  coordinator_->Kill(SIGKILL);
  // The task runs to its end with nobody to send its output to.
  EXPECT_TRUE(WaitFor([&] { return std::filesystem::exists(marker); }, absl::Seconds(30)));
  ASSERT_TRUE(coordinator_->Start());
  EXPECT_TRUE(WaitFor([&] { return client_->Unfinished() == 0; }, absl::Seconds(60)));
  v1::Task t;
  ASSERT_TRUE(client_->Get(resp.task().id(), &t).ok());
  EXPECT_EQ(t.status(), v1::TASK_STATUS_SUCCEEDED) << t.status_reason();
  int64_t dropped = 0;
  EXPECT_EQ(client_->ReadOutput(t.id(), v1::OUTPUT_STREAM_STDOUT, &dropped), expected);
  EXPECT_EQ(dropped, 0);
}

}  // namespace
}  // namespace taskgrid
