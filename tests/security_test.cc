// Access control end to end on loopback: a coordinator with a keys file of
// scoped, limited keys; real agents (one with an operator policy); every
// refusal checked for its code and its reason, every change for its audit
// entry. The submit rate runs on a FakeClock.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "services/agent/agent.h"
#include "services/agent/posix_process_runner.h"
#include "services/common/auth.h"
#include "services/common/testing/fake_clock.h"
#include "services/common/testing/test_util.h"
#include "services/coordinator/coordinator.h"
#include "taskgrid/v1/monitoring.grpc.pb.h"
#include "taskgrid/v1/task_service.grpc.pb.h"

namespace taskgrid {
namespace {

using ::testing::HasSubstr;

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Each test is its own process under ctest -j: a shared file would be
    // rewritten by one while another's coordinator reads it.
    keys_file_ = absl::StrCat(::testing::TempDir(), "/security_test_keys.", getpid());
    WriteKeys();
    CoordinatorOptions o;
    o.grpc_address = "127.0.0.1:0";
    o.metrics_address = "";
    o.tick_interval = absl::ZeroDuration();
    o.keys_file = keys_file_;
    auto c = Coordinator::Start(o, clock_);
    ASSERT_TRUE(c.ok()) << c.status();
    coordinator_ = std::move(*c);
    address_ = absl::StrCat("127.0.0.1:", coordinator_->grpc_port());
    auto channel = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
    stub_ = v1::TaskService::NewStub(channel);
    monitoring_ = v1::MonitoringService::NewStub(channel);
    StartAgent("staging-1", {{"env", "staging"}}, v1::AgentPolicy());
    v1::AgentPolicy locked;
    locked.add_task_types("shell");
    locked.add_commands("echo");
    StartAgent("locked-1", {{"role", "locked"}}, locked);
  }

  void TearDown() override {
    agents_.clear();
    coordinator_.reset();
    std::remove(keys_file_.c_str());
  }

  // Each key is its name with a "-secret" suffix.
  void WriteKeys(const std::string& extra = "") {
    std::ofstream out(keys_file_);
    auto line = [&](const std::string& name, const std::string& options) {
      out << name << " sha256:" << Sha256Hex(name + "-secret") << " " << options << "\n";
    };
    line("admin", "scopes=admin");
    line("reader", "scopes=read");
    line("ops", "scopes=cancel");
    line("ci", "scopes=submit selector=env=staging types=shell");
    line("busy", "scopes=submit max_running=1");
    line("rate", "scopes=submit submit_rate=1");
    line("streams", "scopes=read max_streams=1");
    line("capped", "scopes=submit max_output=1000 max_runtime=1m");
    out << extra;
  }

  void StartAgent(const std::string& id, std::map<std::string, std::string> labels,
                  v1::AgentPolicy policy) {
    AgentOptions o;
    o.coordinator_address = address_;
    o.agent_id = id;
    o.labels = std::move(labels);
    o.policy = std::move(policy);
    o.slots = 4;
    o.reconnect_min = absl::Milliseconds(20);
    auto agent = std::make_unique<Agent>(o, runner_, nullptr);
    agent->Start();
    ASSERT_TRUE(WaitFor([&] { return agent->connected(); }));
    agents_.push_back(std::move(agent));
  }

  static std::unique_ptr<grpc::ClientContext> As(const std::string& key) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!key.empty()) ctx->AddMetadata("x-api-key", key + "-secret");
    return ctx;
  }

  absl::StatusOr<v1::SubmitResponse> Submit(const std::string& key, v1::SubmitRequest req) {
    if (!req.spec().has_shell() && !req.spec().has_docker()) {
      req.mutable_spec()->mutable_shell()->set_command("echo hi");
    }
    v1::SubmitResponse resp;
    grpc::Status s = stub_->Submit(As(key).get(), req, &resp);
    if (!s.ok()) return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
    return resp;
  }

  absl::StatusOr<v1::Task> Cancel(const std::string& key, const std::string& id) {
    v1::CancelRequest req;
    req.set_task_id(id);
    v1::Task t;
    grpc::Status s = stub_->Cancel(As(key).get(), req, &t);
    if (!s.ok()) return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
    return t;
  }

  v1::Task Get(const std::string& id) {
    v1::GetRequest req;
    req.set_task_id(id);
    v1::Task t;
    stub_->Get(As("admin").get(), req, &t);
    return t;
  }

  std::vector<v1::AuditEntry> Audit(const std::string& action = "") {
    v1::ListAuditRequest req;
    req.set_action(action);
    v1::ListAuditResponse resp;
    grpc::Status s = stub_->ListAudit(As("admin").get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {resp.entries().begin(), resp.entries().end()};
  }

  static v1::SubmitRequest Shell(const std::string& command) {
    v1::SubmitRequest req;
    req.mutable_spec()->mutable_shell()->set_command(command);
    return req;
  }

  FakeClock clock_;
  PosixProcessRunner runner_;
  std::string keys_file_;
  std::unique_ptr<Coordinator> coordinator_;
  std::string address_;
  std::unique_ptr<v1::TaskService::Stub> stub_;
  std::unique_ptr<v1::MonitoringService::Stub> monitoring_;
  std::vector<std::unique_ptr<Agent>> agents_;
};

TEST_F(SecurityTest, ScopesAllowAndDenyWithTheRuleNamed) {
  EXPECT_THAT(Submit("", Shell("true")),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("missing API key")));
  EXPECT_THAT(Submit("nobody", Shell("true")),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("unknown API key")));
  EXPECT_THAT(Submit("reader", Shell("true")),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("key reader has scopes read; task.submit needs submit")));
  // The refusal never echoes the secret presented.
  EXPECT_THAT(Submit("reader", Shell("true")).status().message(),
              ::testing::Not(HasSubstr("reader-secret")));

  // A submit key cancels its own tasks only; the cancel scope cancels any.
  auto mine = Submit("ci", Shell("sleep 30"));
  ASSERT_TRUE(mine.ok()) << mine.status();
  auto theirs = Submit("admin", Shell("sleep 30"));
  ASSERT_TRUE(theirs.ok()) << theirs.status();
  EXPECT_EQ(mine->task().owner(), "ci");
  EXPECT_THAT(Cancel("ci", theirs->task().id()),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("may cancel only tasks it submitted")));
  EXPECT_TRUE(Cancel("ci", mine->task().id()).ok());
  EXPECT_THAT(Cancel("reader", theirs->task().id()),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_TRUE(Cancel("ops", theirs->task().id()).ok());
  EXPECT_THAT(Submit("ops", Shell("true")), StatusIs(absl::StatusCode::kPermissionDenied));

  v1::ListAuditResponse audit;
  EXPECT_EQ(stub_->ListAudit(As("reader").get(), v1::ListAuditRequest(), &audit).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(SecurityTest, AKeysSelectorAndTaskTypesBoundWhereAndWhat) {
  auto placed = Submit("ci", Shell("echo $TASKGRID_AGENT_ID"));
  ASSERT_TRUE(placed.ok()) << placed.status();
  EXPECT_EQ(placed->task().spec().selector().at("env"), "staging");
  ASSERT_TRUE(WaitFor([&] { return Get(placed->task().id()).status() == v1::TASK_STATUS_SUCCEEDED; }));
  EXPECT_EQ(Get(placed->task().id()).agent_id(), "staging-1");

  v1::SubmitRequest prod = Shell("true");
  (*prod.mutable_spec()->mutable_selector())["env"] = "prod";
  EXPECT_THAT(Submit("ci", prod),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("spec.selector: key ci may run tasks only on agents with "
                                 "env=staging, not env=prod")));
  // Naming an agent outside the selector is no way around it.
  v1::SubmitRequest pinned;
  pinned.mutable_spec()->mutable_shell()->add_argv("echo");  // What locked-1 allows.
  pinned.mutable_spec()->set_agent_id("locked-1");
  auto pinned_task = Submit("ci", pinned);
  ASSERT_TRUE(pinned_task.ok());
  EXPECT_THAT(Get(pinned_task->task().id()).waiting_reason(),
              HasSubstr("agent locked-1 does not match env=staging"));

  v1::SubmitRequest container;
  container.mutable_spec()->mutable_docker()->set_image("busybox");
  EXPECT_THAT(Submit("ci", container),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("key ci may submit only shell tasks, not docker")));
}

TEST_F(SecurityTest, QuotasAnswerResourceExhaustedOrPermissionDenied) {
  // max_running: one unfinished task at a time.
  auto first = Submit("busy", Shell("sleep 30"));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_THAT(Submit("busy", Shell("true")),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("key busy already has 1 unfinished tasks, its max_running")));
  ASSERT_TRUE(Cancel("admin", first->task().id()).ok());
  EXPECT_TRUE(Submit("busy", Shell("true")).ok());

  // submit_rate: one per second, on the fake clock.
  EXPECT_TRUE(Submit("rate", Shell("true")).ok());
  EXPECT_THAT(Submit("rate", Shell("true")),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("key rate may submit 1 tasks per second")));
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(Submit("rate", Shell("true")).ok());

  // max_runtime: the default timeout is capped; a longer one is refused.
  auto capped = Submit("capped", Shell("true"));
  ASSERT_TRUE(capped.ok()) << capped.status();
  EXPECT_EQ(capped->task().spec().timeout().seconds(), 60);
  v1::SubmitRequest long_one = Shell("true");
  long_one.mutable_spec()->mutable_timeout()->set_seconds(3600);
  EXPECT_THAT(Submit("capped", long_one),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("spec.timeout: 1h exceeds key capped's max_runtime of 1m")));

  // max_output: the task fails once it writes more.
  auto chatty = Submit("capped", Shell("while true; do echo 0123456789; done"));
  ASSERT_TRUE(chatty.ok()) << chatty.status();
  EXPECT_EQ(chatty->task().spec().max_output_bytes(), 1000);
  ASSERT_TRUE(WaitFor([&] { return Get(chatty->task().id()).status() == v1::TASK_STATUS_FAILED; }));
  EXPECT_THAT(Get(chatty->task().id()).status_reason(),
              HasSubstr("output limit: wrote more than 1000 bytes"));
  v1::SubmitRequest more = Shell("true");
  more.mutable_spec()->set_max_output_bytes(5000);
  EXPECT_THAT(Submit("capped", more), StatusIs(absl::StatusCode::kPermissionDenied,
                                               HasSubstr("max_output of 1000")));

  // max_streams: a second Watch is refused while the first is open. The
  // first replays from cursor 0, so once a batch arrives it holds its slot.
  auto first_ctx = As("streams");
  v1::WatchRequest replay;
  replay.set_after_cursor(0);
  auto first_watch = stub_->Watch(first_ctx.get(), replay);
  v1::WatchResponse batch;
  ASSERT_TRUE(first_watch->Read(&batch));
  auto second_ctx = As("streams");
  second_ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto second = stub_->Watch(second_ctx.get(), v1::WatchRequest());
  while (second->Read(&batch)) {
  }
  grpc::Status refused = second->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("already has 1 open streams, its max_streams"));
  first_ctx->TryCancel();
  first_watch->Finish();
}

TEST_F(SecurityTest, IdempotencyKeysAreEachOwnersOwn) {
  v1::SubmitRequest req = Shell("echo mine");
  req.set_idempotency_key("deploy-42");
  auto first = Submit("busy", req);
  ASSERT_TRUE(first.ok()) << first.status();
  // Another key choosing the same word gets a task of its own, not busy's.
  req.mutable_spec()->mutable_shell()->set_command("echo theirs");
  auto other = Submit("admin", req);
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_FALSE(other->existing());
  EXPECT_NE(other->task().id(), first->task().id());
  EXPECT_EQ(other->task().owner(), "admin");
  auto again = Submit("admin", req);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->existing());
  EXPECT_EQ(again->task().id(), other->task().id());
}

TEST_F(SecurityTest, ABatchBeyondTheKeysBurstIsRefusedWhole) {
  v1::SubmitBatchRequest batch;
  for (int i = 0; i < 3; ++i) *batch.add_requests() = Shell("true");
  v1::SubmitBatchResponse resp;
  grpc::Status s = stub_->SubmitBatch(As("rate").get(), batch, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("a batch of 3 submits exceeds key rate's burst of 1"));
  // The refusal took nothing: one submit still fits the burst.
  EXPECT_TRUE(Submit("rate", Shell("true")).ok());
}

TEST_F(SecurityTest, AnAgentsPolicyKeepsWhatItRefusesAway) {
  v1::SubmitRequest argv;
  argv.mutable_spec()->mutable_shell()->add_argv("echo");
  argv.mutable_spec()->mutable_shell()->add_argv("allowed");
  (*argv.mutable_spec()->mutable_selector())["role"] = "locked";
  auto ok = Submit("admin", argv);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(WaitFor([&] { return Get(ok->task().id()).status() == v1::TASK_STATUS_SUCCEEDED; }));

  v1::SubmitRequest line = Shell("echo through a shell");
  (*line.mutable_spec()->mutable_selector())["role"] = "locked";
  auto refused = Submit("admin", line);
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(Get(refused->task().id()).status(), v1::TASK_STATUS_QUEUED);
  EXPECT_THAT(Get(refused->task().id()).waiting_reason(),
              HasSubstr("every agent matching role=locked refuses it by its operator's policy "
                        "(locked-1 refuses to run /bin/sh (allows echo))"));

  v1::ListAgentsResponse agents;
  ASSERT_TRUE(stub_->ListAgents(As("reader").get(), v1::ListAgentsRequest(), &agents).ok());
  for (const v1::Agent& a : agents.agents()) {
    if (a.agent_id() == "locked-1") {
      EXPECT_EQ(a.policy().commands(0), "echo");
    }
  }
}

TEST_F(SecurityTest, EveryMutatingCallIsAudited) {
  auto task = Submit("admin", Shell("sleep 30"));
  ASSERT_TRUE(task.ok());
  const std::string id = task->task().id();
  ASSERT_TRUE(Cancel("admin", id).ok());
  v1::DeleteRequest del;
  del.set_task_id(id);
  v1::DeleteResponse deleted;
  ASSERT_TRUE(WaitFor([&] {
    return stub_->Delete(As("admin").get(), del, &deleted).ok();
  }));
  v1::ResolveAlertRequest resolve;
  resolve.set_alert_id("no-such-alert");
  v1::Alert alert;
  EXPECT_EQ(monitoring_->ResolveAlert(As("admin").get(), resolve, &alert).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::MonitoringStatus status;
  ASSERT_TRUE(monitoring_->Stop(As("admin").get(), v1::StopMonitoringRequest(), &status).ok());
  ASSERT_TRUE(monitoring_->Start(As("admin").get(), v1::StartMonitoringRequest(), &status).ok());
  EXPECT_FALSE(Submit("reader", Shell("true")).ok());
  agents_.erase(agents_.begin());  // staging-1 goes away.
  ASSERT_TRUE(WaitFor([&] { return !Audit("agent.disconnect").empty(); }));

  std::vector<std::string> seen;
  for (const v1::AuditEntry& e : Audit()) {
    EXPECT_GT(e.seq(), 0u);
    EXPECT_TRUE(e.has_time());
    EXPECT_FALSE(e.peer().empty() && e.action() != "agent.disconnect") << e.ShortDebugString();
    seen.push_back(absl::StrCat(e.actor(), " ", e.action(), " ", e.target(), " ", e.outcome()));
  }
  using ::testing::Contains;
  EXPECT_THAT(seen, Contains("agent:staging-1 agent.connect staging-1 ok"));
  EXPECT_THAT(seen, Contains("agent:locked-1 agent.connect locked-1 ok"));
  EXPECT_THAT(seen, Contains("key:admin task.submit " + id + " ok"));
  EXPECT_THAT(seen, Contains("key:admin task.cancel " + id + " ok"));
  EXPECT_THAT(seen, Contains("key:admin task.delete " + id + " ok"));
  EXPECT_THAT(seen, Contains("key:admin alert.resolve no-such-alert NOT_FOUND"));
  EXPECT_THAT(seen, Contains("key:admin monitoring.stop  ok"));
  EXPECT_THAT(seen, Contains("key:admin monitoring.start  ok"));
  EXPECT_THAT(seen, Contains("key:reader task.submit  PERMISSION_DENIED"));
  EXPECT_THAT(seen, Contains("agent:staging-1 agent.disconnect staging-1 ok"));

  // Paged, oldest first.
  v1::ListAuditRequest page;
  page.set_limit(2);
  v1::ListAuditResponse first;
  ASSERT_TRUE(stub_->ListAudit(As("admin").get(), page, &first).ok());
  ASSERT_EQ(first.entries_size(), 2);
  EXPECT_LT(first.entries(0).seq(), first.entries(1).seq());
  page.set_after_seq(first.next_after_seq());
  v1::ListAuditResponse second;
  ASSERT_TRUE(stub_->ListAudit(As("admin").get(), page, &second).ok());
  EXPECT_GT(second.entries(0).seq(), first.entries(1).seq());
}

TEST_F(SecurityTest, KeysAreReadAgainOnReload) {
  EXPECT_THAT(Submit("late", Shell("true")), StatusIs(absl::StatusCode::kUnauthenticated));
  WriteKeys("late sha256:" + Sha256Hex("late-secret") + " scopes=submit\n");
  ASSERT_TRUE(coordinator_->ReloadKeys().ok());
  EXPECT_TRUE(Submit("late", Shell("true")).ok());
  // A broken file keeps the keys that work.
  { std::ofstream(keys_file_, std::ios::app) << "broken line\n"; }
  EXPECT_THAT(coordinator_->ReloadKeys(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(Submit("late", Shell("true")).ok());
}

}  // namespace
}  // namespace taskgrid
