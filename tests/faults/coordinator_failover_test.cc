// Failover tests: two real coordinators on one real PostgreSQL, agents and
// clients given both addresses. Killing the active coordinator under load
// hands over to the standby with nothing acknowledged lost; a paused leader
// that comes back after being replaced cannot write and exits.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "services/common/testing/postgres_server.h"
#include "services/common/testing/test_util.h"
#include "tests/faults/child_process.h"
#include "tests/faults/retrying_client.h"

namespace taskgrid {
namespace {

class CoordinatorFailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    postgres_ = PostgresServer::Start();
    ASSERT_NE(postgres_, nullptr);
    ASSERT_TRUE(postgres_->CreateDatabase("taskgrid"));
    for (int i = 0; i < 2; ++i) {
      ports_[i] = FreeLoopbackPort();
      coordinators_[i] = std::make_unique<ChildProcess>(std::vector<std::string>{
          TASKGRID_COORDINATOR_BIN, absl::StrCat("--grpc_address=127.0.0.1:", ports_[i]),
          "--metrics_address=", "--store=" + postgres_->Uri("taskgrid"), "--lease_ttl=2s",
          "--log_level=warn", "--heartbeat_interval=1s", "--heartbeat_ttl=20s"});
    }
    addresses_ = absl::StrCat("127.0.0.1:", ports_[0], ",127.0.0.1:", ports_[1]);
    // The first one started leads; the second stands by.
    ASSERT_TRUE(coordinators_[0]->Start());
    client_ = std::make_unique<RetryingClient>(addresses_);
    ASSERT_TRUE(WaitFor([&] { return client_->Unfinished() == 0; }, absl::Seconds(20)));
    ASSERT_TRUE(coordinators_[1]->Start());
    agents_ = StartAgents(TASKGRID_AGENT_BIN, addresses_, {"fo-a1", "fo-a2"}, 8);
    ASSERT_TRUE(WaitFor([&] { return client_->ConnectedAgents() == 2; }, absl::Seconds(20)));
  }

  void TearDown() override {
    agents_.clear();
    for (auto& c : coordinators_) c.reset();
    postgres_.reset();
  }

  // True when `port` accepts TaskService calls (a standby does not listen).
  bool Serving(int port) {
    auto stub = v1::TaskService::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    v1::StatsResponse resp;
    return stub->Stats(&ctx, {}, &resp).ok();
  }

  std::unique_ptr<PostgresServer> postgres_;
  int ports_[2] = {0, 0};
  std::unique_ptr<ChildProcess> coordinators_[2];
  std::string addresses_;
  std::vector<std::unique_ptr<ChildProcess>> agents_;
  std::unique_ptr<RetryingClient> client_;
};

TEST_F(CoordinatorFailoverTest, StandbyTakesOverUnderLoadAndNothingAcknowledgedIsLost) {
  EXPECT_TRUE(Serving(ports_[0]));
  EXPECT_FALSE(Serving(ports_[1]));  // The standby does not listen.

  constexpr int kTasks = 600;
  absl::Mutex mu;
  std::map<int, std::string> acked;
  std::atomic<int> next{0};
  std::vector<std::thread> submitters;
  for (int w = 0; w < 6; ++w) {
    submitters.emplace_back([&] {
      for (int i = next++; i < kTasks; i = next++) {
        absl::SleepFor(absl::Milliseconds(20));
        v1::SubmitRequest req;
        req.set_idempotency_key(absl::StrCat("fo-", i));
        req.mutable_spec()->mutable_shell()->set_command(
            i % 5 == 0 ? absl::StrCat("sleep 0.5; seq 1 ", i) : absl::StrCat("seq 1 ", i));
        req.mutable_spec()->mutable_retry()->set_max_attempts(5);
        req.mutable_spec()->mutable_retry()->mutable_backoff()->set_nanos(100'000'000);
        v1::SubmitResponse resp;
        grpc::Status s = client_->Submit(req, &resp);
        ASSERT_TRUE(s.ok()) << i << ": " << s.error_message();
        absl::MutexLock lock(&mu);
        acked[i] = resp.task().id();
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(800));
  size_t before;
  {
    absl::MutexLock lock(&mu);
    before = acked.size();
  }
  const absl::Time killed = absl::Now();
  coordinators_[0]->Kill(SIGKILL);
  // The standby takes over within the lease TTL (2 s) plus its polling.
  ASSERT_TRUE(WaitFor([&] { return Serving(ports_[1]); }, absl::Seconds(10)));
  const absl::Duration takeover = absl::Now() - killed;
  for (auto& t : submitters) t.join();
  std::printf("failover: %zu of %d tasks acknowledged at the kill; standby serving after %s\n",
              before, kTasks, absl::FormatDuration(takeover).c_str());
  EXPECT_GT(before, 0u);
  EXPECT_LT(before, static_cast<size_t>(kTasks));
  EXPECT_LT(takeover, absl::Seconds(15));  // Lease TTL 2 s; generous for a loaded machine.

  ASSERT_TRUE(WaitFor([&] { return client_->Unfinished() == 0; }, absl::Seconds(60)));
  for (const auto& [i, id] : acked) {
    v1::Task t;
    ASSERT_TRUE(client_->Get(id, &t).ok()) << "task " << i << " is gone";
    ASSERT_EQ(t.status(), v1::TASK_STATUS_SUCCEEDED) << i << ": " << t.status_reason();
    std::string expected;
    for (int n = 1; n <= i; ++n) absl::StrAppend(&expected, n, "\n");
    int64_t dropped = 0;
    EXPECT_EQ(client_->ReadOutput(id, v1::OUTPUT_STREAM_STDOUT, &dropped), expected) << i;
  }
  EXPECT_EQ(client_->ConnectedAgents(), 2);  // The agents followed.

  // The old leader comes back as a standby: it does not serve.
  ASSERT_TRUE(coordinators_[0]->Start());
  absl::SleepFor(absl::Seconds(1));
  EXPECT_FALSE(Serving(ports_[0]));
  EXPECT_TRUE(Serving(ports_[1]));
}

TEST_F(CoordinatorFailoverTest, APausedLeaderReplacedMeanwhileCannotWriteAndExits) {
  coordinators_[0]->Signal(SIGSTOP);  // Frozen: no lease renewals.
  ASSERT_TRUE(WaitFor([&] { return Serving(ports_[1]); }, absl::Seconds(10)));
  // (Connections to the frozen process stay open until keepalive gives up,
  // so this client names the new leader directly.)
  RetryingClient direct(absl::StrCat("127.0.0.1:", ports_[1]));
  v1::SubmitRequest req;
  req.mutable_spec()->mutable_shell()->set_command("echo after the takeover");
  v1::SubmitResponse resp;
  ASSERT_TRUE(direct.Submit(req, &resp).ok());
  coordinators_[0]->Signal(SIGCONT);
  // Its next renewal or commit meets the newer term: it stops by itself.
  EXPECT_EQ(coordinators_[0]->WaitExit(absl::Seconds(10)), 3);
  EXPECT_TRUE(Serving(ports_[1]));
  EXPECT_TRUE(WaitFor([&] { return direct.Unfinished() == 0; }, absl::Seconds(30)));
}

}  // namespace
}  // namespace taskgrid
