// The fixture most fault tests share: a real coordinator binary on a scratch
// data directory, real agent binaries, a RetryingClient, and waits bounded in
// real time.
#ifndef TASKGRID_TESTS_FAULTS_FAULT_CLUSTER_H_
#define TASKGRID_TESTS_FAULTS_FAULT_CLUSTER_H_

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/testing/test_util.h"
#include "taskgrid/v1/task_service.grpc.pb.h"
#include "tests/faults/child_process.h"
#include "tests/faults/retrying_client.h"

namespace taskgrid {

inline bool IsFinalStatus(v1::TaskStatus s) { return s >= v1::TASK_STATUS_SUCCEEDED; }

// Sanitized services run on the sanitizer's allocator, whose quarantine
// keeps freed memory (256 MB by default): their resident memory says nothing
// about what they hold.
#ifdef TASKGRID_SANITIZED
inline constexpr bool kResidentMemoryIsMeaningful = false;
#else
inline constexpr bool kResidentMemoryIsMeaningful = true;
#endif

// Resident memory of a process in bytes, or -1.
inline int64_t ResidentBytes(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

// One task's events as a Watch client sees them, resumed by cursor if the
// stream breaks. `contiguous` is false if any output byte was missed or
// repeated (by offset, per attempt).
struct WatchedTask {
  std::string out[2];
  bool contiguous = true;
  std::vector<v1::TaskStatus> statuses;
  std::vector<uint32_t> running_attempts;
  v1::TaskStatus final_status = v1::TASK_STATUS_UNSPECIFIED;
};

class FaultCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("taskgrid_fault_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }

  void TearDown() override {
    agents_.clear();
    coordinator_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Starts the coordinator on a free port with quick heartbeats; `flags`
  // add to or override the defaults.
  void StartCoordinator(std::vector<std::string> flags = {}) {
    port_ = FreeLoopbackPort();
    address_ = absl::StrCat("127.0.0.1:", port_);
    std::vector<std::string> argv = {
        TASKGRID_COORDINATOR_BIN,    "--grpc_address=" + address_,  "--metrics_address=",
        "--data_dir=" + dir_.string(), "--log_level=warn",            "--heartbeat_interval=200ms",
        "--heartbeat_ttl=2s",        "--kill_grace=1s"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    coordinator_ = std::make_unique<ChildProcess>(argv);
    ASSERT_TRUE(coordinator_->Start());
    client_ = std::make_unique<RetryingClient>(address_);
  }

  // Starts an agent binary dialing `coordinator` (default: the coordinator);
  // `flags` add to the defaults.
  ChildProcess& StartAgent(const std::string& id, int slots = 4, std::string coordinator = "",
                           std::vector<std::string> flags = {}) {
    std::vector<std::string> argv = {
        TASKGRID_AGENT_BIN, "--coordinator=" + (coordinator.empty() ? address_ : coordinator),
        "--agent_id=" + id, "--slots=" + std::to_string(slots), "--metrics_address=",
        "--log_level=warn", "--spool_dir=" + dir_.string()};
    argv.insert(argv.end(), flags.begin(), flags.end());
    agents_.push_back(std::make_unique<ChildProcess>(argv));
    EXPECT_TRUE(agents_.back()->Start());
    return *agents_.back();
  }

  bool WaitAgents(int connected, absl::Duration timeout = absl::Seconds(20)) {
    return WaitFor([&] { return client_->ConnectedAgents() == connected; }, timeout);
  }

  std::string Submit(const std::string& command, absl::Duration timeout = absl::Seconds(60),
                     int max_attempts = 0) {
    v1::SubmitRequest req;
    req.mutable_spec()->mutable_shell()->set_command(command);
    req.mutable_spec()->mutable_timeout()->set_seconds(absl::ToInt64Seconds(timeout));
    if (max_attempts > 0) {
      req.mutable_spec()->mutable_retry()->set_max_attempts(max_attempts);
      req.mutable_spec()->mutable_retry()->mutable_backoff()->set_nanos(100'000'000);
    }
    v1::SubmitResponse resp;
    const grpc::Status s = client_->Submit(req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.task().id();
  }

  v1::Task Get(const std::string& id) {
    v1::Task t;
    const grpc::Status s = client_->Get(id, &t);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return t;
  }

  // The task once `pred` holds, or as it last was when `timeout` ran out.
  template <typename Pred>
  v1::Task WaitTask(const std::string& id, Pred pred, absl::Duration timeout) {
    v1::Task t;
    WaitFor(
        [&] {
          t = Get(id);
          return pred(t);
        },
        timeout);
    return t;
  }

  v1::Task WaitFinal(const std::string& id, absl::Duration timeout = absl::Seconds(30)) {
    return WaitTask(id, [](const v1::Task& t) { return IsFinalStatus(t.status()); }, timeout);
  }

  void Cancel(const std::string& id) {
    v1::CancelRequest req;
    req.set_task_id(id);
    v1::Task t;
    const grpc::Status s = client_->Call(
        [&](grpc::ClientContext& c) { return client_->stub().Cancel(&c, req, &t); });
    EXPECT_TRUE(s.ok()) << s.error_message();
  }

  // Follows one task from its first event until it is final (or `timeout`).
  WatchedTask Watch(const std::string& id, absl::Duration timeout = absl::Seconds(60)) {
    WatchedTask w;
    uint64_t cursor = 0;
    uint32_t attempt = 0;
    const absl::Time deadline = absl::Now() + timeout;
    while (w.final_status == v1::TASK_STATUS_UNSPECIFIED && absl::Now() < deadline) {
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(deadline));
      v1::WatchRequest req;
      req.set_task_id(id);
      req.set_after_cursor(cursor);
      auto reader = client_->stub().Watch(&ctx, req);
      v1::WatchResponse batch;
      while (w.final_status == v1::TASK_STATUS_UNSPECIFIED && reader->Read(&batch)) {
        for (const v1::TaskEvent& e : batch.events()) {
          cursor = e.cursor();
          if (e.type() == v1::EVENT_TYPE_TASK_LOG) {
            if (e.attempt() != attempt) {  // A retry starts its output afresh.
              attempt = e.attempt();
              w.out[0].clear();
              w.out[1].clear();
            }
            std::string& out = w.out[e.output().stream() == v1::OUTPUT_STREAM_STDERR ? 1 : 0];
            if (e.output().offset() != static_cast<int64_t>(out.size())) w.contiguous = false;
            out += e.output().data();
          } else if (e.type() == v1::EVENT_TYPE_RESYNC) {
            w.contiguous = false;
          } else if (e.type() == v1::EVENT_TYPE_TASK_STATUS) {
            w.statuses.push_back(e.task().status());
            if (e.task().status() == v1::TASK_STATUS_RUNNING) {
              w.running_attempts.push_back(e.task().attempt());
            }
            if (IsFinalStatus(e.task().status())) w.final_status = e.task().status();
          }
        }
      }
      ctx.TryCancel();
      reader->Finish().IgnoreError();
    }
    return w;
  }

  std::filesystem::path dir_;
  int port_ = 0;
  std::string address_;
  std::unique_ptr<ChildProcess> coordinator_;
  std::vector<std::unique_ptr<ChildProcess>> agents_;
  std::unique_ptr<RetryingClient> client_;
};

}  // namespace taskgrid

#endif  // TASKGRID_TESTS_FAULTS_FAULT_CLUSTER_H_
