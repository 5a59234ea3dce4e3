#include "services/coordinator/task_registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "services/common/proto_time.h"
#include "services/common/testing/fake_clock.h"
#include "services/common/testing/test_util.h"
#include "services/coordinator/store/memory_task_store.h"

namespace taskgrid {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Records what the registry sends to one agent. Sends come from the store's
// commit thread: `settle` waits until everything queued has been sent.
class FakeLink : public AgentLink {
 public:
  explicit FakeLink(std::function<void()> settle = [] {}) : settle_(std::move(settle)) {}
  void Send(v1::CoordinatorMessage m) override {
    absl::MutexLock lock(&mu_);
    sent_.push_back(std::move(m));
  }
  void Close(const absl::Status& s) override { closed = s; }

  std::vector<v1::CoordinatorMessage> Sent() {
    settle_();
    absl::MutexLock lock(&mu_);
    return sent_;
  }
  std::vector<v1::Assign> Assigns() {
    std::vector<v1::Assign> out;
    for (const auto& m : Sent())
      if (m.has_assign()) out.push_back(m.assign());
    return out;
  }
  std::vector<v1::Cancel> Cancels() {
    std::vector<v1::Cancel> out;
    for (const auto& m : Sent())
      if (m.has_cancel()) out.push_back(m.cancel());
    return out;
  }
  absl::Status closed = absl::OkStatus();

 private:
  const std::function<void()> settle_;
  absl::Mutex mu_;
  std::vector<v1::CoordinatorMessage> sent_ ABSL_GUARDED_BY(mu_);
};

class TaskRegistryTest : public ::testing::Test {
 protected:
  RegistryOptions Options() {
    RegistryOptions o;
    o.heartbeat_ttl = absl::Seconds(15);
    return o;
  }

  void TearDown() override { store_.AwaitDelivered(); }

  // A link that waits for the store's deliveries before it is read.
  std::shared_ptr<FakeLink> NewLink() {
    return std::make_shared<FakeLink>([this] { store_.AwaitDelivered(); });
  }
  // The newest published cursor, once what was queued is published.
  uint64_t LastCursor() {
    store_.AwaitDelivered();
    return events_->last_cursor();
  }

  // `instance` names the agent process: the same one may replace its own
  // connection.
  std::shared_ptr<FakeLink> Connect(const std::string& id, uint32_t slots,
                                    std::map<std::string, std::string> labels = {},
                                    std::vector<v1::HeldTask> held = {},
                                    const std::string& instance = "process-1") {
    auto link = NewLink();
    v1::Hello h;
    h.set_agent_id(id);
    h.set_slots(slots);
    h.set_instance_id(instance);
    h.mutable_labels()->insert(labels.begin(), labels.end());
    for (auto& t : held) *h.add_held_tasks() = t;
    EXPECT_TRUE(registry_->AgentConnected(h, link).ok());
    return link;
  }

  std::string Submit(v1::TaskSpec spec = {}) {
    if (!spec.has_shell()) spec.mutable_shell()->set_command("true");
    v1::SubmitRequest r;
    *r.mutable_spec() = spec;
    auto resp = registry_->Submit(r);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? resp->task().id() : "";
  }

  v1::TaskStatus StatusOf(const std::string& id) { return registry_->Get(id)->status(); }

  void Report(const std::string& agent, FakeLink& link, v1::AgentMessage m) {
    registry_->HandleAgentMessage(agent, &link, m);
  }
  void Started(const std::string& agent, FakeLink& link, const std::string& id,
               uint32_t attempt = 1) {
    v1::AgentMessage m;
    m.mutable_started()->set_task_id(id);
    m.mutable_started()->set_attempt(attempt);
    m.mutable_started()->set_pid(4242);
    Report(agent, link, m);
  }
  void Output(const std::string& agent, FakeLink& link, const std::string& id, int64_t offset,
              const std::string& data, uint32_t attempt = 1) {
    v1::AgentMessage m;
    m.mutable_output()->set_task_id(id);
    m.mutable_output()->set_attempt(attempt);
    m.mutable_output()->mutable_chunk()->set_stream(v1::OUTPUT_STREAM_STDOUT);
    m.mutable_output()->mutable_chunk()->set_offset(offset);
    m.mutable_output()->mutable_chunk()->set_data(data);
    Report(agent, link, m);
  }
  void Finished(const std::string& agent, FakeLink& link, const std::string& id, int code,
                int signal = 0, uint32_t attempt = 1) {
    v1::AgentMessage m;
    m.mutable_finished()->set_task_id(id);
    m.mutable_finished()->set_attempt(attempt);
    m.mutable_finished()->mutable_exit()->set_exit_code(code);
    m.mutable_finished()->mutable_exit()->set_signal(signal);
    Report(agent, link, m);
  }
  std::string StdoutOf(const std::string& id) {
    v1::GetOutputRequest r;
    r.set_task_id(id);
    r.set_stream(v1::OUTPUT_STREAM_STDOUT);
    return registry_->GetOutput(r)->data();
  }

  // A coordinator restart: a new registry and event log rebuilt from the store.
  void Restart(RegistryOptions o) {
    registry_.reset();
    store_.AwaitDelivered();  // Its callbacks publish into the old log.
    events_ = std::make_unique<EventLog>();
    registry_ = std::make_unique<TaskRegistry>(clock_, store_, *events_, nullptr, o);
    registry_->Recover(*store_.Load());
  }

  std::vector<v1::TaskEvent> EventsAfter(uint64_t cursor) {
    store_.AwaitDelivered();
    std::vector<v1::TaskEvent> out;
    v1::TaskEvent e;
    while (events_->Next(
        cursor, [](const v1::TaskEvent&) { return true; }, e))
      out.push_back(e);
    return out;
  }

  FakeClock clock_;
  MemoryTaskStore store_;
  std::unique_ptr<EventLog> events_ = std::make_unique<EventLog>();
  std::unique_ptr<TaskRegistry> registry_ =
      std::make_unique<TaskRegistry>(clock_, store_, *events_, nullptr, Options());
};

TEST_F(TaskRegistryTest, QueuesWithoutAgentsAndSaysWhy) {
  const std::string id = Submit();
  auto t = registry_->Get(id);
  EXPECT_EQ(t->status(), v1::TASK_STATUS_QUEUED);
  EXPECT_THAT(t->waiting_reason(), HasSubstr("no agent"));
  EXPECT_EQ(t->spec().priority(), v1::PRIORITY_MEDIUM);
  EXPECT_EQ(store_.task_count(), 1u);
}

TEST_F(TaskRegistryTest, RunsThroughEveryStateToSucceeded) {
  auto link = Connect("a1", 1);
  ASSERT_TRUE(link->Sent()[0].has_welcome());
  const std::string id = Submit();
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_DISPATCHED);
  ASSERT_EQ(link->Assigns().size(), 1u);
  EXPECT_EQ(link->Assigns()[0].attempt(), 1u);
  Started("a1", *link, id);
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_RUNNING);
  EXPECT_EQ(registry_->Get(id)->pid(), 4242);
  Output("a1", *link, id, 0, "hello ");
  Output("a1", *link, id, 6, "world\n");
  ASSERT_TRUE(link->Sent().back().has_ack());
  EXPECT_EQ(link->Sent().back().ack().stdout_offset(), 12);
  clock_.Advance(absl::Seconds(2));
  Finished("a1", *link, id, 0);
  auto t = registry_->Get(id);
  EXPECT_EQ(t->status(), v1::TASK_STATUS_SUCCEEDED);
  EXPECT_EQ(t->stdout().total_bytes(), 12);
  EXPECT_EQ(StdoutOf(id), "hello world\n");
  EXPECT_TRUE(link->Sent().back().ack().finished());

  std::vector<v1::TaskStatus> seen;
  uint64_t after = 0;
  v1::TaskEvent e;
  while (events_->Next(
      after, [&](const v1::TaskEvent& ev) { return ev.task_id() == id; }, e)) {
    if (e.type() == v1::EVENT_TYPE_TASK_STATUS || e.type() == v1::EVENT_TYPE_TASK_CREATED) {
      seen.push_back(e.task().status());
    }
  }
  EXPECT_THAT(seen, ElementsAre(v1::TASK_STATUS_PENDING, v1::TASK_STATUS_DISPATCHED,
                                v1::TASK_STATUS_RUNNING, v1::TASK_STATUS_SUCCEEDED));
  auto stats = registry_->Stats();
  EXPECT_EQ(stats.by_status().at("succeeded"), 1);
  EXPECT_DOUBLE_EQ(stats.success_rate(), 1.0);
  EXPECT_DOUBLE_EQ(stats.p50_execution_time(), 2.0);
}

TEST_F(TaskRegistryTest, NonZeroExitAndSignalFail) {
  auto link = Connect("a1", 2);
  const std::string a = Submit(), b = Submit();
  Started("a1", *link, a);
  Started("a1", *link, b);
  Finished("a1", *link, a, 3);
  Finished("a1", *link, b, 0, 9);
  EXPECT_EQ(registry_->Get(a)->status(), v1::TASK_STATUS_FAILED);
  EXPECT_EQ(registry_->Get(a)->status_reason(), "exit code 3");
  EXPECT_EQ(registry_->Get(b)->status(), v1::TASK_STATUS_FAILED);
  EXPECT_EQ(registry_->Get(b)->status_reason(), "killed by signal 9");
}

TEST_F(TaskRegistryTest, FinalStatesAreFinal) {
  auto link = Connect("a1", 1);
  const std::string id = Submit();
  Started("a1", *link, id);
  ASSERT_TRUE(registry_->Cancel(id, "").ok());
  ASSERT_EQ(link->Cancels().size(), 1u);
  EXPECT_EQ(link->Cancels()[0].task_id(), id);
  Finished("a1", *link, id, 0);  // A late report changes nothing.
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_CANCELLED);
  EXPECT_THAT(registry_->Cancel(id, ""), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(registry_->Cancel("nope", ""), StatusIs(absl::StatusCode::kNotFound));
  // The slot was released by the report.
  const std::string next = Submit();
  EXPECT_EQ(StatusOf(next), v1::TASK_STATUS_DISPATCHED);
}

TEST_F(TaskRegistryTest, StaleAttemptsAreRejected) {
  auto link = Connect("a1", 1);
  const std::string id = Submit();
  Started("a1", *link, id, /*attempt=*/2);
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_DISPATCHED);
  Output("a1", *link, id, 0, "ghost", /*attempt=*/7);
  EXPECT_EQ(registry_->Get(id)->stdout().total_bytes(), 0);
  Finished("a1", *link, id, 0, 0, /*attempt=*/3);
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_DISPATCHED);
  // Messages through a link that is no longer the agent's are ignored too.
  FakeLink stranger;
  Started("a1", stranger, id);
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_DISPATCHED);
}

TEST_F(TaskRegistryTest, HigherPriorityFirstThenFifo) {
  auto link = Connect("a1", 1);
  const std::string blocker = Submit();
  auto with_priority = [&](v1::Priority p) {
    v1::TaskSpec s;
    s.set_priority(p);
    return Submit(s);
  };
  const std::string low = with_priority(v1::PRIORITY_LOW);
  const std::string high1 = with_priority(v1::PRIORITY_HIGH);
  const std::string high2 = with_priority(v1::PRIORITY_HIGH);
  const std::string critical = with_priority(v1::PRIORITY_CRITICAL);
  std::vector<std::string> order;
  std::string running = blocker;
  for (int i = 0; i < 4; ++i) {
    Started("a1", *link, running);
    Finished("a1", *link, running, 0);
    running = link->Assigns().back().task_id();
    order.push_back(running);
  }
  EXPECT_THAT(order, ElementsAre(critical, high1, high2, low));
}

TEST_F(TaskRegistryTest, RespectsSlotsAndTargets) {
  auto web = Connect("web-1", 2, {{"role", "web"}});
  auto db = Connect("db-1", 1, {{"role", "db"}});
  v1::TaskSpec to_web;
  (*to_web.mutable_selector())["role"] = "web";
  const std::string a = Submit(to_web), b = Submit(to_web), c = Submit(to_web);
  EXPECT_EQ(web->Assigns().size(), 2u);
  EXPECT_TRUE(db->Assigns().empty());
  EXPECT_EQ(StatusOf(c), v1::TASK_STATUS_QUEUED);
  EXPECT_THAT(registry_->Get(c)->waiting_reason(), HasSubstr("busy"));
  v1::TaskSpec to_db;
  to_db.set_agent_id("db-1");
  const std::string d = Submit(to_db);
  EXPECT_EQ(registry_->Get(d)->agent_id(), "db-1");
  v1::TaskSpec unknown;
  unknown.set_agent_id("nobody");
  unknown.mutable_shell()->set_command("true");
  v1::SubmitRequest r;
  *r.mutable_spec() = unknown;
  EXPECT_THAT(registry_->Submit(r), StatusIs(absl::StatusCode::kNotFound));
  (void)a;
  (void)b;
}

TEST_F(TaskRegistryTest, RunTimeoutExactlyAtTheDeadline) {
  auto link = Connect("a1", 1);
  v1::TaskSpec s;
  s.mutable_timeout()->set_seconds(10);
  const std::string id = Submit(s);
  Started("a1", *link, id);
  clock_.Advance(absl::Seconds(9));
  registry_->Tick();
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_RUNNING);
  clock_.Advance(absl::Seconds(1));
  registry_->Tick();
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_TIMED_OUT);
  ASSERT_EQ(link->Cancels().size(), 1u);
  EXPECT_THAT(link->Cancels()[0].reason(), HasSubstr("timeout"));
}

TEST_F(TaskRegistryTest, QueueTimeoutMeansItNeverRuns) {
  v1::TaskSpec s;
  s.mutable_queue_timeout()->set_seconds(5);
  const std::string id = Submit(s);
  clock_.Advance(absl::Seconds(5));
  registry_->Tick();
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_TIMED_OUT);
  EXPECT_THAT(registry_->Get(id)->status_reason(), HasSubstr("queue timeout"));
  auto link = Connect("a1", 1);
  EXPECT_TRUE(link->Assigns().empty());
}

TEST_F(TaskRegistryTest, SilentAgentLosesItsTasksAfterTheTtl) {
  auto link = Connect("a1", 1);
  const std::string id = Submit();
  Started("a1", *link, id);
  registry_->AgentDisconnected("a1", link.get());
  clock_.Advance(absl::Seconds(14));
  registry_->Tick();
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_RUNNING);
  clock_.Advance(absl::Seconds(1));
  registry_->Tick();
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_LOST);
  EXPECT_FALSE(registry_->ListAgents().agents(0).connected());
}

TEST_F(TaskRegistryTest, ConnectedButSilentAgentIsClosedToo) {
  auto link = Connect("a1", 1);
  const std::string id = Submit();
  clock_.Advance(absl::Seconds(15));
  registry_->Tick();
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_LOST);
  EXPECT_EQ(link->closed.code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(TaskRegistryTest, ReconnectKeepsTheTaskAndDeduplicatesOutput) {
  auto link = Connect("a1", 1);
  const std::string id = Submit();
  Started("a1", *link, id);
  Output("a1", *link, id, 0, "abc");
  registry_->AgentDisconnected("a1", link.get());
  clock_.Advance(absl::Seconds(5));
  v1::HeldTask held;
  held.set_task_id(id);
  held.set_attempt(1);
  auto link2 = Connect("a1", 1, {}, {held});
  ASSERT_TRUE(link2->Sent()[0].has_welcome());
  const v1::Resume r = link2->Sent()[0].welcome().resume(0);
  EXPECT_TRUE(r.keep());
  EXPECT_EQ(r.stdout_offset(), 3);
  Output("a1", *link2, id, 0, "abcdef");  // Resent from an older offset.
  EXPECT_EQ(StdoutOf(id), "abcdef");
  clock_.Advance(absl::Seconds(20));
  v1::AgentMessage hb;
  hb.mutable_heartbeat();
  Report("a1", *link2, hb);
  registry_->Tick();
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_RUNNING);
  Finished("a1", *link2, id, 0);
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_SUCCEEDED);
}

TEST_F(TaskRegistryTest, ReconnectWithoutTheTaskMakesItLostAndKillsStrays) {
  auto link = Connect("a1", 1);
  const std::string id = Submit();
  Started("a1", *link, id);
  v1::HeldTask stray;
  stray.set_task_id("not-ours");
  stray.set_attempt(1);
  auto link2 = Connect("a1", 1, {}, {stray});
  EXPECT_EQ(link->closed.code(), absl::StatusCode::kAborted);  // Replaced.
  EXPECT_FALSE(link2->Sent()[0].welcome().resume(0).keep());
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_LOST);
}

TEST_F(TaskRegistryTest, SameProcessBackWithoutADispatchedTaskNeverGotItAndRunsItAgain) {
  auto link = Connect("a1", 1);
  const std::string id = Submit();
  ASSERT_EQ(StatusOf(id), v1::TASK_STATUS_DISPATCHED);  // The Assign is lost on the way.
  auto link2 = Connect("a1", 1);
  EXPECT_EQ(link->closed.code(), absl::StatusCode::kAborted);  // Its own stale link, replaced.
  const v1::Task t = *registry_->Get(id);
  EXPECT_EQ(t.status(), v1::TASK_STATUS_DISPATCHED);  // Queued again, and dispatched at once.
  EXPECT_EQ(t.attempt(), 2u);
  EXPECT_EQ(t.undelivered(), 1u);
  EXPECT_THAT(t.status_reason(), HasSubstr("attempt 1 never reached agent a1"));
  ASSERT_EQ(link2->Assigns().size(), 1u);
  EXPECT_EQ(link2->Assigns()[0].attempt(), 2u);
  Started("a1", *link2, id, 2);
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_RUNNING);
}

TEST_F(TaskRegistryTest, ANewProcessWithoutADispatchedTaskMayHaveRunItSoItIsLost) {
  auto link = Connect("a1", 1);
  const std::string id = Submit();
  registry_->AgentDisconnected("a1", link.get());
  Connect("a1", 1, {}, {}, "process-2");  // Restarted: the old one may have started it.
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_LOST);
}

TEST_F(TaskRegistryTest, AnotherProcessCannotTakeAConnectedAgentsId) {
  auto link = Connect("a1", 1);
  v1::Hello h;
  h.set_agent_id("a1");
  h.set_slots(1);
  h.set_instance_id("impostor");
  auto fake = NewLink();
  EXPECT_THAT(registry_->AgentConnected(h, fake),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("agent_id a1 is connected")));
  EXPECT_TRUE(link->closed.ok());  // The real one keeps its stream ...
  const std::string id = Submit();
  EXPECT_EQ(link->Assigns().size(), 1u);  // ... and its tasks.
  EXPECT_TRUE(fake->Sent().empty());
  h.clear_instance_id();  // No instance at all proves nothing either.
  EXPECT_THAT(registry_->AgentConnected(h, fake), StatusIs(absl::StatusCode::kAlreadyExists));
  registry_->AgentDisconnected("a1", link.get());
  EXPECT_TRUE(registry_->AgentConnected(h, fake).ok());  // Once it is gone, the id is free.
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_LOST);
}

TEST_F(TaskRegistryTest, AnAssignThatNeverArrivesIsLostAfterTenAttempts) {
  auto link = Connect("a1", 1);
  const std::string id = Submit();
  for (uint32_t i = 1; i < TaskRegistry::kMaxUndelivered; ++i) {
    link = Connect("a1", 1);
    ASSERT_EQ(StatusOf(id), v1::TASK_STATUS_DISPATCHED) << i;
  }
  link = Connect("a1", 1);
  const v1::Task t = *registry_->Get(id);
  EXPECT_EQ(t.status(), v1::TASK_STATUS_LOST);
  EXPECT_THAT(t.status_reason(), HasSubstr("gave up after 10 attempts that never arrived"));
}

TEST_F(TaskRegistryTest, UndeliveredAttemptsAreNoTries) {
  auto link = Connect("a1", 1);
  v1::TaskSpec spec;
  spec.mutable_retry()->set_max_attempts(2);
  const std::string id = Submit(spec);
  link = Connect("a1", 1);  // Attempt 1 never arrived.
  ASSERT_EQ(registry_->Get(id)->attempt(), 2u);
  Started("a1", *link, id, 2);
  registry_->AgentDisconnected("a1", link.get());
  link = Connect("a1", 1, {}, {}, "process-2");  // Attempt 2 ran and was lost: the first try.
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_QUEUED);  // So the second try is due.
  clock_.Advance(absl::Seconds(2));
  registry_->Tick();
  EXPECT_EQ(registry_->Get(id)->attempt(), 3u);
  Started("a1", *link, id, 3);
  registry_->AgentDisconnected("a1", link.get());
  Connect("a1", 1, {}, {}, "process-3");
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_LOST);  // Two tries, both lost.
}

TEST_F(TaskRegistryTest, OutputBeyondTheCapKeepsHeadAndTail) {
  RegistryOptions o = Options();
  o.output_cap_bytes = 1024;
  TaskRegistry registry(clock_, store_, *events_, nullptr, o);
  auto link = NewLink();
  v1::Hello h;
  h.set_agent_id("a1");
  h.set_slots(1);
  ASSERT_TRUE(registry.AgentConnected(h, link).ok());
  v1::SubmitRequest req;
  req.mutable_spec()->mutable_shell()->set_command("yes");
  const std::string id = registry.Submit(req)->task().id();
  for (int i = 0; i < 10; ++i) {
    v1::AgentMessage m;
    m.mutable_output()->set_task_id(id);
    m.mutable_output()->set_attempt(1);
    m.mutable_output()->mutable_chunk()->set_stream(v1::OUTPUT_STREAM_STDOUT);
    m.mutable_output()->mutable_chunk()->set_offset(i * 1000);
    m.mutable_output()->mutable_chunk()->set_data(std::string(1000, static_cast<char>('0' + i)));
    registry.HandleAgentMessage("a1", link.get(), m);
  }
  auto t = registry.Get(id);
  EXPECT_EQ(t->stdout().total_bytes(), 10000);
  EXPECT_EQ(t->stdout().dropped_bytes(), 10000 - 1024);
  v1::GetOutputRequest r;
  r.set_task_id(id);
  r.set_stream(v1::OUTPUT_STREAM_STDOUT);
  r.set_offset(600);
  auto out = registry.GetOutput(r);
  EXPECT_EQ(out->offset(), 10000 - 512);
  EXPECT_EQ(out->data(), std::string(512, '9'));
  r.set_offset(10001);
  EXPECT_THAT(registry.GetOutput(r), StatusIs(absl::StatusCode::kOutOfRange));
}

TEST_F(TaskRegistryTest, DeleteOnlyFinalTasks) {
  const std::string id = Submit();
  EXPECT_THAT(registry_->Delete(id), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_TRUE(registry_->Cancel(id, "").ok());
  EXPECT_TRUE(registry_->Delete(id).ok());
  EXPECT_THAT(registry_->Get(id), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(registry_->Delete(id), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(store_.task_count(), 0u);
}

TEST_F(TaskRegistryTest, RetentionRemovesFinishedTasksAfterTheirAge) {
  const std::string id = Submit();
  ASSERT_TRUE(registry_->Cancel(id, "").ok());
  clock_.Advance(absl::Hours(23));
  registry_->Tick();
  EXPECT_TRUE(registry_->Get(id).ok());
  clock_.Advance(absl::Hours(1));
  registry_->Tick();
  EXPECT_THAT(registry_->Get(id), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(TaskRegistryTest, IdempotencyKeyReturnsTheFirstTask) {
  v1::SubmitRequest r;
  r.mutable_spec()->mutable_shell()->set_command("true");
  r.set_idempotency_key("deploy-42");
  auto first = registry_->Submit(r);
  auto second = registry_->Submit(r);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->task().id(), second->task().id());
  EXPECT_TRUE(second->existing());
  EXPECT_EQ(registry_->Stats().total(), 1);
}

TEST_F(TaskRegistryTest, ListFiltersAndPages) {
  for (int i = 0; i < 5; ++i) {
    v1::TaskSpec s;
    s.set_type(i % 2 ? "build" : "deploy");
    s.add_tags(i < 2 ? "urgent" : "later");
    Submit(s);
  }
  v1::ListRequest r;
  r.add_type("deploy");
  EXPECT_EQ(registry_->List(r)->total(), 3);
  r.Clear();
  r.add_tags("urgent");
  EXPECT_EQ(registry_->List(r)->tasks_size(), 2);
  r.Clear();
  r.set_page_size(2);
  std::set<std::string> seen;
  for (int page = 0; page < 3; ++page) {
    auto resp = registry_->List(r);
    ASSERT_TRUE(resp.ok());
    for (const auto& t : resp->tasks()) seen.insert(t.id());
    r.set_page_token(resp->next_page_token());
    if (page == 2) {
      EXPECT_TRUE(resp->next_page_token().empty());
    }
  }
  EXPECT_EQ(seen.size(), 5u);
  r.set_page_token("!!garbage");
  EXPECT_THAT(registry_->List(r), StatusIs(absl::StatusCode::kInvalidArgument));
  r.Clear();
  r.set_page_size(5000);
  EXPECT_THAT(registry_->List(r), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace taskgrid

namespace taskgrid {
namespace {

TEST_F(TaskRegistryTest, RestartKeepsEveryTaskItsOutputAndItsKey) {
  auto link = Connect("a1", 1, {{"role", "web"}});
  v1::SubmitRequest keyed;
  keyed.mutable_spec()->mutable_shell()->set_command("echo done");
  keyed.set_idempotency_key("deploy-42");
  const std::string done = registry_->Submit(keyed)->task().id();
  Started("a1", *link, done);
  Output("a1", *link, done, 0, "done\n");
  Finished("a1", *link, done, 0);
  const std::string running = Submit();
  Started("a1", *link, running);
  Output("a1", *link, running, 0, "half");
  v1::TaskSpec db;
  db.mutable_selector()->insert({"role", "db"});
  const std::string queued = Submit(db);
  const uint64_t cursor = LastCursor();

  Restart(Options());
  EXPECT_EQ(StatusOf(done), v1::TASK_STATUS_SUCCEEDED);
  EXPECT_EQ(StdoutOf(done), "done\n");
  EXPECT_EQ(StatusOf(running), v1::TASK_STATUS_RUNNING);
  EXPECT_EQ(StdoutOf(running), "half");
  EXPECT_EQ(StatusOf(queued), v1::TASK_STATUS_QUEUED);
  auto again = registry_->Submit(keyed);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->existing());
  EXPECT_EQ(again->task().id(), done);
  EXPECT_EQ(LastCursor(), cursor);

  // The agent comes back holding the running task: it resumes at offset 4.
  v1::HeldTask held;
  held.set_task_id(running);
  held.set_attempt(1);
  auto link2 = Connect("a1", 1, {{"role", "web"}}, {held});
  ASSERT_TRUE(link2->Sent()[0].welcome().resume(0).keep());
  EXPECT_EQ(link2->Sent()[0].welcome().resume(0).stdout_offset(), 4);
  Output("a1", *link2, running, 4, " and the rest");
  Finished("a1", *link2, running, 0);
  EXPECT_EQ(StdoutOf(running), "half and the rest");
  EXPECT_EQ(StatusOf(running), v1::TASK_STATUS_SUCCEEDED);
  // A queued task is dispatched once a matching agent connects.
  auto db_link = Connect("d1", 1, {{"role", "db"}});
  EXPECT_EQ(db_link->Assigns().size(), 1u);
  EXPECT_EQ(StatusOf(queued), v1::TASK_STATUS_DISPATCHED);
  // A reader resumes from the cursor it had before the restart.
  std::vector<v1::TaskEvent> after = EventsAfter(cursor);
  ASSERT_FALSE(after.empty());
  EXPECT_EQ(after[0].cursor(), cursor + 1);
  EXPECT_NE(after[0].type(), v1::EVENT_TYPE_RESYNC);
}

TEST_F(TaskRegistryTest, RestartReplaysLogEventsWithTheirBytes) {
  auto link = Connect("a1", 1);
  const std::string id = Submit();
  Started("a1", *link, id);
  Output("a1", *link, id, 0, "first ");
  Output("a1", *link, id, 6, "second");
  Restart(Options());
  std::string replayed;
  for (const v1::TaskEvent& e : EventsAfter(0)) {
    ASSERT_NE(e.type(), v1::EVENT_TYPE_RESYNC);
    if (e.type() == v1::EVENT_TYPE_TASK_LOG) replayed += e.output().data();
  }
  EXPECT_EQ(replayed, "first second");
}

TEST_F(TaskRegistryTest, RestartKeepsHeadAndTailOfLongOutput) {
  RegistryOptions o = Options();
  o.output_cap_bytes = 1024;
  Restart(o);
  auto link = Connect("a1", 1);
  const std::string id = Submit();
  for (int i = 0; i < 10; ++i) {
    Output("a1", *link, id, i * 1000, std::string(1000, static_cast<char>('0' + i)));
  }
  Restart(o);
  auto t = registry_->Get(id);
  EXPECT_EQ(t->stdout().total_bytes(), 10000);
  EXPECT_EQ(t->stdout().dropped_bytes(), 10000 - 1024);
  EXPECT_EQ(StdoutOf(id).substr(0, 512), std::string(512, '0'));
  v1::GetOutputRequest r;
  r.set_task_id(id);
  r.set_stream(v1::OUTPUT_STREAM_STDOUT);
  r.set_offset(600);
  EXPECT_EQ(registry_->GetOutput(r)->data(), std::string(512, '9'));
}

TEST_F(TaskRegistryTest, RunningTaskIsLostWhenItsAgentDoesNotReturnAfterARestart) {
  auto link = Connect("a1", 1);
  const std::string id = Submit();
  Started("a1", *link, id);
  clock_.Advance(absl::Minutes(1));  // The coordinator was down a while.
  Restart(Options());
  registry_->Tick();
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_RUNNING);  // The TTL counts from the restart.
  clock_.Advance(absl::Seconds(15));
  registry_->Tick();
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_LOST);
}

TEST_F(TaskRegistryTest, LostAttemptIsRetriedAfterBackoffAndFencesTheOldOne) {
  auto link = Connect("a1", 1);
  v1::TaskSpec spec;
  spec.mutable_retry()->set_max_attempts(2);
  spec.mutable_retry()->mutable_backoff()->set_seconds(10);
  const std::string id = Submit(spec);
  Started("a1", *link, id);
  Output("a1", *link, id, 0, "attempt one");
  clock_.Advance(absl::Seconds(15));
  registry_->Tick();  // a1 silent past the TTL: attempt 1 is lost.
  auto t = registry_->Get(id);
  EXPECT_EQ(t->status(), v1::TASK_STATUS_QUEUED);
  EXPECT_THAT(t->status_reason(), HasSubstr("attempt 1 lost"));
  EXPECT_THAT(t->waiting_reason(), HasSubstr("before attempt 2"));
  EXPECT_EQ(t->stdout().total_bytes(), 0);

  auto link2 = Connect("a2", 1);
  EXPECT_TRUE(link2->Assigns().empty());  // Still backing off.
  clock_.Advance(absl::Seconds(10));
  registry_->Tick();
  ASSERT_EQ(link2->Assigns().size(), 1u);
  EXPECT_EQ(link2->Assigns()[0].attempt(), 2u);
  // The first agent returns and reports attempt 1: ignored, and killed.
  v1::HeldTask held;
  held.set_task_id(id);
  held.set_attempt(1);
  auto link1 = Connect("a1", 1, {}, {held});
  EXPECT_FALSE(link1->Sent()[0].welcome().resume(0).keep());
  Finished("a1", *link1, id, 0, 0, 1);
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_DISPATCHED);
  // The second attempt is lost too: no attempts left.
  clock_.Advance(absl::Seconds(15));
  registry_->Tick();
  EXPECT_EQ(StatusOf(id), v1::TASK_STATUS_LOST);
}

TEST_F(TaskRegistryTest, FailedAttemptsRetryOnlyWhenAsked) {
  auto link = Connect("a1", 1);
  v1::TaskSpec spec;
  spec.mutable_retry()->set_max_attempts(3);
  const std::string plain = Submit(spec);
  Finished("a1", *link, plain, 1);
  EXPECT_EQ(StatusOf(plain), v1::TASK_STATUS_FAILED);

  spec.mutable_retry()->set_retry_failed(true);
  const std::string retried = Submit(spec);
  Finished("a1", *link, retried, 1);
  EXPECT_EQ(StatusOf(retried), v1::TASK_STATUS_QUEUED);
  clock_.Advance(absl::Seconds(1));
  registry_->Tick();
  Finished("a1", *link, retried, 0, 0, 2);
  EXPECT_EQ(StatusOf(retried), v1::TASK_STATUS_SUCCEEDED);
}

TEST_F(TaskRegistryTest, RetryWaitSurvivesARestart) {
  auto link = Connect("a1", 1);
  v1::TaskSpec spec;
  spec.mutable_retry()->set_max_attempts(2);
  spec.mutable_retry()->mutable_backoff()->set_seconds(10);
  spec.mutable_retry()->set_retry_failed(true);
  const std::string id = Submit(spec);
  Finished("a1", *link, id, 1);
  Restart(Options());
  auto link2 = Connect("a1", 1);
  EXPECT_TRUE(link2->Assigns().empty());
  clock_.Advance(absl::Seconds(10));
  registry_->Tick();
  ASSERT_EQ(link2->Assigns().size(), 1u);
  EXPECT_EQ(link2->Assigns()[0].attempt(), 2u);
}

}  // namespace
}  // namespace taskgrid

namespace taskgrid {
namespace {

TEST_F(TaskRegistryTest, SubmitBatchAnswersEachRequestInOrder) {
  auto link = Connect("a1", 1);
  v1::SubmitBatchRequest batch;
  batch.add_requests()->mutable_spec()->mutable_shell()->set_command("echo one");
  batch.add_requests()->mutable_spec()->mutable_shell()->set_command("");  // Invalid.
  v1::SubmitRequest* keyed = batch.add_requests();
  keyed->mutable_spec()->mutable_shell()->set_command("echo keyed");
  keyed->set_idempotency_key("k1");
  *batch.add_requests() = *keyed;  // The same key again: the same task.
  auto out = registry_->SubmitBatch(batch);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->results_size(), 4);
  EXPECT_EQ(out->results(0).code(), 0);
  EXPECT_EQ(out->results(0).response().task().status(), v1::TASK_STATUS_DISPATCHED);
  EXPECT_EQ(out->results(1).code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(out->results(1).message(), HasSubstr("spec.shell.command"));
  EXPECT_EQ(out->results(2).response().task().status(), v1::TASK_STATUS_QUEUED);  // One slot.
  EXPECT_TRUE(out->results(3).response().existing());
  EXPECT_EQ(out->results(3).response().task().id(), out->results(2).response().task().id());
  EXPECT_EQ(link->Assigns().size(), 1u);

  EXPECT_THAT(registry_->SubmitBatch(v1::SubmitBatchRequest()),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace taskgrid

namespace taskgrid {
namespace {

// A store whose commits the test performs: a durability callback runs only
// once the writes made before it are committed, as with a real store's
// commit thread; `durable` says how many task writes that was.
class ManualStore final : public TaskStore {
 public:
  void PutTask(uint64_t seq, const v1::Task& t,
               std::shared_ptr<const v1::TaskSpec> spec) override {
    puts.emplace_back(t.id(), t.status());
    inner.PutTask(seq, t, std::move(spec));
  }
  void DeleteTask(const std::string& id) override { inner.DeleteTask(id); }
  void AppendOutput(const std::string& id, v1::OutputStream s, int64_t o,
                    absl::string_view d) override {
    inner.AppendOutput(id, s, o, d);
  }
  void TrimOutput(const std::string& id, v1::OutputStream s, int64_t h, int64_t t) override {
    inner.TrimOutput(id, s, h, t);
  }
  void AppendEvent(const v1::TaskEvent& e) override { inner.AppendEvent(e); }
  void TrimEvents(uint64_t c) override { inner.TrimEvents(c); }
  void PutAgent(const v1::Agent& a) override { inner.PutAgent(a); }
  void DeleteAgent(const std::string& id) override { inner.DeleteAgent(id); }
  void AppendAudit(const v1::AuditEntry& e) override { inner.AppendAudit(e); }
  void PutRun(const v1::Run& r) override { inner.PutRun(r); }
  void DeleteRun(const std::string& id) override { inner.DeleteRun(id); }
  void WhenDurable(std::function<void()> done) override {
    waiting.emplace_back(puts.size(), std::move(done));
  }
  absl::StatusOr<StoredState> Load() override { return inner.Load(); }
  absl::Status health() const override { return failing; }

  void Commit() {
    auto ready = std::move(waiting);
    waiting.clear();
    for (auto& [writes, done] : ready) {
      durable = writes;
      done();
    }
  }
  // Whether a durable write put `task_id` in `status`.
  bool Durable(const std::string& task_id, v1::TaskStatus status) const {
    for (size_t i = 0; i < durable; ++i) {
      if (puts[i] == std::make_pair(task_id, status)) return true;
    }
    return false;
  }

  MemoryTaskStore inner;
  std::vector<std::pair<std::string, v1::TaskStatus>> puts;
  std::vector<std::pair<size_t, std::function<void()>>> waiting;
  size_t durable = 0;
  absl::Status failing;
};

TEST(TaskRegistryDurabilityTest, NothingReachesAnAgentOrAReaderBeforeItIsDurable) {
  FakeClock clock;
  ManualStore store;
  EventLog events;
  TaskRegistry registry(clock, store, events, nullptr, RegistryOptions());
  // Checks every message as the agent would receive it.
  struct CheckingLink : FakeLink {
    explicit CheckingLink(const ManualStore& s) : store(s) {}
    void Send(v1::CoordinatorMessage m) override {
      if (m.has_assign()) {
        EXPECT_TRUE(store.Durable(m.assign().task_id(), v1::TASK_STATUS_DISPATCHED))
            << "assign sent before its dispatch was durable";
      }
      FakeLink::Send(std::move(m));
    }
    const ManualStore& store;
  };
  auto link = std::make_shared<CheckingLink>(store);
  v1::Hello hello;
  hello.set_agent_id("a1");
  hello.set_slots(1);
  ASSERT_TRUE(registry.AgentConnected(hello, link).ok());
  store.Commit();
  ASSERT_EQ(link->Sent().size(), 1u);  // The welcome.
  const uint64_t before = events.last_cursor();

  v1::SubmitRequest req;
  req.mutable_spec()->mutable_shell()->set_command("true");
  ASSERT_TRUE(registry.Submit(req).ok());
  EXPECT_EQ(link->Sent().size(), 1u);         // The assign waits for the commit...
  EXPECT_EQ(events.last_cursor(), before);  // ... and so do the events.
  store.Commit();
  EXPECT_EQ(link->Assigns().size(), 1u);
  EXPECT_GT(events.last_cursor(), before);
}

TEST(TaskRegistryDurabilityTest, NewTasksAreRefusedWhileTheStoreCannotWrite) {
  FakeClock clock;
  ManualStore store;
  EventLog events;
  TaskRegistry registry(clock, store, events, nullptr, RegistryOptions());
  v1::SubmitRequest req;
  req.mutable_spec()->mutable_shell()->set_command("true");
  const std::string id = registry.Submit(req)->task().id();
  store.failing = absl::UnavailableError("store: database or disk is full");
  auto refused = registry.Submit(req);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(refused.status().message(), HasSubstr("disk is full"));
  EXPECT_TRUE(registry.Get(id).ok());  // Reads go on.
  store.failing = absl::OkStatus();
  EXPECT_TRUE(registry.Submit(req).ok());
}

TEST_F(TaskRegistryTest, RestartDoesNotGiveOneAttemptsLogEventsTheNextOnesBytes) {
  auto link = Connect("a1", 1);
  v1::TaskSpec spec;
  spec.mutable_retry()->set_max_attempts(2);
  spec.mutable_retry()->set_retry_failed(true);
  spec.mutable_retry()->mutable_backoff()->set_seconds(0);
  const std::string id = Submit(spec);
  Output("a1", *link, id, 0, "first try");
  Finished("a1", *link, id, 1);  // Failed: retried.
  registry_->Tick();
  Output("a1", *link, id, 0, "second", 2);
  Restart(Options());
  std::vector<std::string> replayed;
  for (const v1::TaskEvent& e : EventsAfter(0)) {
    if (e.type() == v1::EVENT_TYPE_TASK_LOG) replayed.push_back(e.output().data());
  }
  EXPECT_THAT(replayed, ElementsAre("", "second"));  // The first attempt's bytes are gone.
  EXPECT_EQ(StdoutOf(id), "second");
}

// ---------------------------------------------------------------- fleet runs

class FleetRunTest : public TaskRegistryTest {
 protected:
  v1::Run SubmitRun(const std::string& command, std::map<std::string, std::string> selector,
                    const std::string& max_concurrency = "", const std::string& max_errors = "",
                    bool include_offline = false) {
    auto run = TrySubmitRun(command, selector, max_concurrency, max_errors, include_offline);
    EXPECT_TRUE(run.ok()) << run.status();
    return run.ok() ? *run : v1::Run();
  }
  absl::StatusOr<v1::Run> TrySubmitRun(const std::string& command,
                                       std::map<std::string, std::string> selector,
                                       const std::string& max_concurrency = "",
                                       const std::string& max_errors = "",
                                       bool include_offline = false) {
    v1::SubmitRunRequest r;
    r.mutable_spec()->mutable_task()->mutable_shell()->set_command(command);
    r.mutable_spec()->mutable_task()->mutable_selector()->insert(selector.begin(), selector.end());
    r.mutable_spec()->set_max_concurrency(max_concurrency);
    r.mutable_spec()->set_max_errors(max_errors);
    r.mutable_spec()->set_include_offline(include_offline);
    auto resp = registry_->SubmitRun(r);
    if (!resp.ok()) return resp.status();
    return resp->run();
  }
  v1::Run Run(const std::string& id) { return *registry_->GetRun(id); }
  // The target's task on `agent`.
  std::string TargetOn(const v1::Run& run, const std::string& agent) {
    for (const auto& t : run.targets())
      if (t.agent_id() == agent) return t.task_id();
    ADD_FAILURE() << "no target on " << agent;
    return "";
  }
  // Connects web-1 .. web-n with one slot each and role=web.
  std::vector<std::shared_ptr<FakeLink>> Web(int n) {
    std::vector<std::shared_ptr<FakeLink>> links;
    for (int i = 1; i <= n; ++i) links.push_back(Connect("web-" + std::to_string(i), 1, {{"role", "web"}}));
    return links;
  }
  // Runs the agent side of the target on web-i: started, then exit `code`.
  void Complete(const v1::Run& run, std::vector<std::shared_ptr<FakeLink>>& links, int i,
                int code = 0) {
    const std::string agent = "web-" + std::to_string(i);
    const std::string id = TargetOn(run, agent);
    Started(agent, *links[i - 1], id);
    Finished(agent, *links[i - 1], id, code);
  }
  // The most targets of `run_id` dispatched or running at any moment, as the
  // event stream tells it.
  int MaxInProgress(const std::string& run_id) {
    std::map<std::string, v1::TaskStatus> status;
    int most = 0;
    for (const v1::TaskEvent& e : EventsAfter(0)) {
      if (e.run_id() != run_id || e.type() != v1::EVENT_TYPE_TASK_STATUS) continue;
      status[e.task_id()] = e.task().status();
      int now = 0;
      for (const auto& [id, s] : status)
        now += s == v1::TASK_STATUS_DISPATCHED || s == v1::TASK_STATUS_RUNNING;
      most = std::max(most, now);
    }
    return most;
  }
};

TEST_F(FleetRunTest, ExpandsSelectorIntoOneTargetPerMatchingAgent) {
  auto web = Web(2);
  auto db = Connect("db-1", 1, {{"role", "db"}});
  auto gone = Connect("web-9", 1, {{"role", "web"}});
  registry_->AgentDisconnected("web-9", gone.get());
  v1::Run run = SubmitRun("uptime", {{"role", "web"}});
  ASSERT_EQ(run.targets_size(), 3);
  EXPECT_EQ(run.counts().targets(), 3);
  EXPECT_EQ(run.counts().skipped(), 1);
  EXPECT_EQ(run.concurrency_limit(), 0u);
  EXPECT_TRUE(run.targets(2).skipped());
  EXPECT_THAT(run.targets(2).reason(), HasSubstr("web-9 was offline when the run was submitted"));
  for (int i : {0, 1}) {
    const v1::Task t = *registry_->Get(run.targets(i).task_id());
    EXPECT_EQ(t.run_id(), run.id());
    EXPECT_EQ(t.spec().agent_id(), run.targets(i).agent_id());
    ASSERT_EQ(web[i]->Assigns().size(), 1u);
    EXPECT_EQ(web[i]->Assigns()[0].task_id(), t.id());
  }
  EXPECT_TRUE(db->Assigns().empty());
  Complete(run, web, 1);
  EXPECT_EQ(Run(run.id()).status(), v1::TASK_STATUS_RUNNING);
  Complete(run, web, 2);
  run = Run(run.id());
  EXPECT_EQ(run.status(), v1::TASK_STATUS_SUCCEEDED);
  EXPECT_EQ(run.counts().succeeded(), 2);
  EXPECT_THAT(run.status_reason(), HasSubstr("all 2 targets succeeded; 1 agent skipped"));
  v1::ListRequest list;
  list.set_run_id(run.id());
  EXPECT_EQ(registry_->List(list)->total(), 2);
}

TEST_F(FleetRunTest, RefusesWhatCannotRunWithTheFieldNamed) {
  Web(1);
  EXPECT_THAT(TrySubmitRun("true", {{"role", "nope"}}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no agent matches role=nope")));
  EXPECT_THAT(TrySubmitRun("true", {{"role", "web"}}, "abc"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.max_concurrency")));
  EXPECT_THAT(TrySubmitRun("true", {{"role", "web"}}, "101%"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.max_concurrency")));
  EXPECT_THAT(TrySubmitRun("true", {{"role", "web"}}, "", "0"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.max_errors")));
  EXPECT_THAT(TrySubmitRun("", {{"role", "web"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.task.shell.command")));
  v1::SubmitRunRequest r;
  r.mutable_spec()->mutable_task()->mutable_shell()->set_command("true");
  r.mutable_spec()->mutable_task()->set_agent_id("web-1");
  EXPECT_THAT(registry_->SubmitRun(r),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.task.agent_id")));
  auto gone = Connect("db-1", 1, {{"role", "db"}});
  registry_->AgentDisconnected("db-1", gone.get());
  EXPECT_THAT(TrySubmitRun("true", {{"role", "db"}}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("include_offline")));
  EXPECT_EQ(registry_->Stats().total(), 0);  // Nothing half-created.
}

TEST_F(FleetRunTest, MaxConcurrencyHoldsAtEveryMoment) {
  auto web = Web(5);
  v1::Run run = SubmitRun("true", {{"role", "web"}}, "40%");
  EXPECT_EQ(run.concurrency_limit(), 2u);
  EXPECT_EQ(run.counts().running(), 2);
  EXPECT_EQ(run.counts().waiting(), 3);
  EXPECT_THAT(run.waiting_reason(), HasSubstr("3 of 5 targets waiting: 3 held by max_concurrency of 2"));
  const v1::Task held = *registry_->Get(TargetOn(run, "web-3"));
  EXPECT_EQ(held.status(), v1::TASK_STATUS_QUEUED);
  EXPECT_THAT(held.waiting_reason(), HasSubstr("held by the run's max_concurrency of 2"));
  EXPECT_TRUE(web[2]->Assigns().empty());
  for (int i = 1; i <= 5; ++i) {
    EXPECT_EQ(web[i - 1]->Assigns().size(), 1u) << "web-" << i;
    Complete(run, web, i);
  }
  EXPECT_EQ(Run(run.id()).status(), v1::TASK_STATUS_SUCCEEDED);
  EXPECT_EQ(MaxInProgress(run.id()), 2);
}

TEST_F(FleetRunTest, MaxErrorsStopsNewStartsAndCancelsTheRest) {
  auto web = Web(4);
  v1::Run run = SubmitRun("true", {{"role", "web"}}, "1", "1");
  Complete(run, web, 1, /*code=*/3);
  run = Run(run.id());
  EXPECT_EQ(run.status(), v1::TASK_STATUS_FAILED);
  EXPECT_EQ(run.counts().failed(), 1);
  EXPECT_EQ(run.counts().cancelled(), 3);
  EXPECT_THAT(run.status_reason(), HasSubstr("stopped after 1 target failed (max_errors 1); 1 failed, 3 cancelled of 4 targets"));
  EXPECT_EQ(run.first_failure().agent_id(), "web-1");
  EXPECT_EQ(run.first_failure().exit_code(), 3);
  for (int i = 2; i <= 4; ++i) {
    EXPECT_TRUE(web[i - 1]->Assigns().empty());
    EXPECT_THAT(registry_->Get(TargetOn(run, "web-" + std::to_string(i)))->status_reason(),
                HasSubstr("not started: the run stopped after 1 target failed"));
  }
}

TEST_F(FleetRunTest, FirstFailureCarriesItsOutputTail) {
  auto web = Web(2);
  v1::Run run = SubmitRun("true", {{"role", "web"}});
  const std::string id = TargetOn(run, "web-2");
  Started("web-2", *web[1], id);
  Output("web-2", *web[1], id, 0, "disk full\n");
  Finished("web-2", *web[1], id, 1);
  run = Run(run.id());
  EXPECT_EQ(run.first_failure().task_id(), id);
  EXPECT_EQ(run.first_failure().stdout_tail(), "disk full\n");
  EXPECT_EQ(run.status(), v1::TASK_STATUS_RUNNING);  // web-1 still runs.
}

TEST_F(FleetRunTest, OfflineTargetsAreWaitedForAndStartWhenTheyConnect) {
  auto web = Web(1);
  for (const char* id : {"web-2", "web-3"}) {
    auto l = Connect(id, 1, {{"role", "web"}});
    registry_->AgentDisconnected(id, l.get());
  }
  v1::SubmitRunRequest r;
  r.mutable_spec()->mutable_task()->mutable_shell()->set_command("true");
  (*r.mutable_spec()->mutable_task()->mutable_selector())["role"] = "web";
  r.mutable_spec()->set_include_offline(true);
  r.mutable_spec()->mutable_offline_timeout()->set_seconds(60);
  v1::Run run = registry_->SubmitRun(r)->run();
  EXPECT_EQ(run.counts().skipped(), 0);
  EXPECT_EQ(run.counts().waiting(), 2);
  EXPECT_THAT(run.waiting_reason(), HasSubstr("2 waiting for offline agents web-2, web-3 until"));
  EXPECT_THAT(registry_->Get(TargetOn(run, "web-2"))->waiting_reason(),
              HasSubstr("agent web-2 is offline; the run waits for it"));
  auto web2 = Connect("web-2", 1, {{"role", "web"}});
  ASSERT_EQ(web2->Assigns().size(), 1u);
  EXPECT_EQ(web2->Assigns()[0].task_id(), TargetOn(run, "web-2"));
  clock_.Advance(absl::Seconds(61));
  registry_->Tick();
  const v1::Task late = *registry_->Get(TargetOn(run, "web-3"));
  EXPECT_EQ(late.status(), v1::TASK_STATUS_TIMED_OUT);
  EXPECT_THAT(late.status_reason(), HasSubstr("web-3 was offline for 1m while the run waited for it"));
}

TEST_F(FleetRunTest, TargetWhoseAgentDiesIsLostAndTheRunSaysSo) {
  auto web = Web(2);
  v1::Run run = SubmitRun("sleep 60", {{"role", "web"}});
  Started("web-1", *web[0], TargetOn(run, "web-1"));
  Complete(run, web, 2);
  for (int i = 0; i < 4; ++i) {  // web-2 heartbeats; web-1 is silent.
    clock_.Advance(absl::Seconds(5));
    v1::AgentMessage hb;
    hb.mutable_heartbeat();
    Report("web-2", *web[1], hb);
    registry_->Tick();
  }
  run = Run(run.id());
  EXPECT_EQ(run.status(), v1::TASK_STATUS_FAILED);
  EXPECT_EQ(run.counts().lost(), 1);
  EXPECT_EQ(run.counts().succeeded(), 1);
  EXPECT_EQ(run.first_failure().status(), v1::TASK_STATUS_LOST);
  EXPECT_THAT(run.first_failure().reason(), HasSubstr("web-1 silent"));
}

TEST_F(FleetRunTest, CancelRunCancelsEveryUnfinishedTarget) {
  auto web = Web(3);
  v1::Run run = SubmitRun("sleep 60", {{"role", "web"}}, "1");
  Started("web-1", *web[0], TargetOn(run, "web-1"));
  auto cancelled = registry_->CancelRun(run.id(), "");
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->status(), v1::TASK_STATUS_CANCELLED);
  EXPECT_EQ(cancelled->counts().cancelled(), 3);
  EXPECT_EQ(web[0]->Cancels().size(), 1u);
  EXPECT_THAT(registry_->CancelRun(run.id(), ""), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(registry_->GetRun("nope"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(FleetRunTest, RunSurvivesARestartWithinItsConcurrency) {
  auto web = Web(3);
  v1::Run run = SubmitRun("true", {{"role", "web"}}, "1");
  const std::string first = TargetOn(run, "web-1");
  Started("web-1", *web[0], first);
  Restart(Options());
  EXPECT_EQ(Run(run.id()).counts().running(), 1);
  v1::HeldTask held;
  held.set_task_id(first);
  held.set_attempt(1);
  auto web1 = Connect("web-1", 1, {{"role", "web"}}, {held});
  auto web2 = Connect("web-2", 1, {{"role", "web"}});
  auto web3 = Connect("web-3", 1, {{"role", "web"}});
  EXPECT_TRUE(web2->Assigns().empty());  // Still held: web-1's target is in progress.
  Finished("web-1", *web1, first, 0);
  ASSERT_EQ(web2->Assigns().size(), 1u);
  Finished("web-2", *web2, TargetOn(run, "web-2"), 0);
  Finished("web-3", *web3, TargetOn(run, "web-3"), 0);
  run = Run(run.id());
  EXPECT_EQ(run.status(), v1::TASK_STATUS_SUCCEEDED);
  EXPECT_EQ(run.counts().succeeded(), 3);
}

TEST_F(FleetRunTest, RunEventsCarryEveryTargetAndTheRunId) {
  auto web = Web(2);
  v1::Run run = SubmitRun("true", {{"role", "web"}});
  Complete(run, web, 1);
  registry_->Tick();  // Changes that are not news at once are announced by the tick.
  std::set<std::string> tasks;
  int run_events = 0;
  for (const v1::TaskEvent& e : EventsAfter(0)) {
    if (e.run_id() != run.id()) continue;
    if (e.type() == v1::EVENT_TYPE_RUN_STATUS) {
      ++run_events;
      EXPECT_EQ(e.run().targets_size(), 0);  // Counts only.
    } else {
      tasks.insert(e.task_id());
    }
  }
  EXPECT_EQ(tasks.size(), 2u);
  EXPECT_GT(run_events, 1);
}

TEST_F(FleetRunTest, WaitingReasonsSayWhyAndChangeWithAnEvent) {
  v1::TaskSpec spec;
  spec.mutable_selector()->insert({"role", "web"});
  spec.set_priority(v1::PRIORITY_LOW);
  EXPECT_THAT(registry_->Get(Submit(spec))->waiting_reason(),
              HasSubstr("no agent matching role=web has registered"));
  auto gone = Connect("web-1", 1, {{"role", "web"}});  // Takes that one.
  registry_->AgentDisconnected("web-1", gone.get());
  const std::string id = Submit(spec);
  EXPECT_THAT(registry_->Get(id)->waiting_reason(),
              HasSubstr("1 agent matching role=web is registered but offline"));

  auto count_waiting = [&](uint64_t after) {
    int n = 0;
    for (const v1::TaskEvent& e : EventsAfter(after)) {
      if (e.type() != v1::EVENT_TYPE_TASK_WAITING || e.task_id() != id) continue;
      ++n;
      EXPECT_THAT(e.task().waiting_reason(), HasSubstr("are busy"));
    }
    return n;
  };
  v1::TaskSpec first = spec;
  first.set_priority(v1::PRIORITY_MEDIUM);
  Submit(first);
  const uint64_t cursor = LastCursor();
  auto busy = Connect("web-2", 1, {{"role", "web"}});  // Takes `first`: `id` waits on.
  clock_.Advance(absl::Seconds(1));
  registry_->Tick();
  EXPECT_THAT(registry_->Get(id)->waiting_reason(),
              HasSubstr("all 1 connected agents matching role=web are busy"));
  EXPECT_EQ(count_waiting(cursor), 1);
  clock_.Advance(absl::Seconds(1));
  registry_->Tick();  // Unchanged: no new event.
  EXPECT_EQ(count_waiting(cursor), 1);

  v1::TaskSpec high = spec;
  high.set_priority(v1::PRIORITY_HIGH);
  Submit(high);
  EXPECT_THAT(registry_->Get(id)->waiting_reason(),
              HasSubstr("busy (every slot in use); queued tasks of higher priority go first"));
}

TEST_F(FleetRunTest, IdempotencyKeyReturnsTheFirstRunAcrossARestart) {
  Web(2);
  v1::SubmitRunRequest r;
  r.mutable_spec()->mutable_task()->mutable_shell()->set_command("true");
  r.set_idempotency_key("deploy-42");
  auto first = registry_->SubmitRun(r);
  ASSERT_TRUE(first.ok()) << first.status();
  Restart(Options());
  auto second = registry_->SubmitRun(r);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->existing());
  EXPECT_EQ(second->run().id(), first->run().id());
  EXPECT_EQ(registry_->Stats().total(), 2);  // Its two targets, once.
}

TEST_F(FleetRunTest, RunGoesWithItsLastTargetAndKeepsRowsOfDeletedOnes) {
  auto web = Web(2);
  v1::Run run = SubmitRun("true", {{"role", "web"}});
  Complete(run, web, 1);
  Complete(run, web, 2);
  ASSERT_TRUE(registry_->Delete(TargetOn(run, "web-1")).ok());
  run = Run(run.id());
  EXPECT_EQ(run.counts().succeeded(), 2);  // The deleted target's row stays.
  EXPECT_EQ(run.targets(0).status(), v1::TASK_STATUS_SUCCEEDED);
  clock_.Advance(absl::Hours(25));
  registry_->Tick();  // Retention removes web-2's target, and the run with it.
  EXPECT_THAT(registry_->GetRun(run.id()), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(registry_->ListRuns({})->runs_size(), 0);
  Restart(Options());
  EXPECT_THAT(registry_->GetRun(run.id()), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(FleetRunTest, SecretsStayOutOfTheRunAndItsEvents) {
  Web(1);
  v1::SubmitRunRequest r;
  r.mutable_spec()->mutable_task()->mutable_shell()->set_command("echo $TOKEN");
  (*r.mutable_spec()->mutable_task()->mutable_secret_env())["TOKEN"] = "hunter2-secret";
  auto run = registry_->SubmitRun(r);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->run().spec().task().secret_env().at("TOKEN"), "[REDACTED]");
  for (const v1::TaskEvent& e : EventsAfter(0)) {
    EXPECT_EQ(e.DebugString().find("hunter2-secret"), std::string::npos) << e.DebugString();
  }
  const StoredState stored_state = *store_.Load();
  for (const v1::Run& stored : stored_state.runs) {
    EXPECT_EQ(stored.DebugString().find("hunter2-secret"), std::string::npos);
  }
}

TEST_F(FleetRunTest, ABriefDisconnectAfterTheOfflineDeadlineIsWaitedFor) {
  auto web = Web(3);
  v1::SubmitRunRequest r;
  r.mutable_spec()->mutable_task()->mutable_shell()->set_command("true");
  r.mutable_spec()->set_max_concurrency("1");
  r.mutable_spec()->mutable_offline_timeout()->set_seconds(60);
  v1::Run run = registry_->SubmitRun(r)->run();
  Started("web-1", *web[0], TargetOn(run, "web-1"));
  for (int i = 0; i < 18; ++i) {  // Past the run's offline deadline, every agent heartbeating.
    clock_.Advance(absl::Seconds(5));
    for (int a = 0; a < 3; ++a) {
      v1::AgentMessage hb;
      hb.mutable_heartbeat();
      Report("web-" + std::to_string(a + 1), *web[a], hb);
    }
    registry_->Tick();
  }
  registry_->AgentDisconnected("web-3", web[2].get());
  registry_->Tick();
  const v1::Task held = *registry_->Get(TargetOn(run, "web-3"));
  EXPECT_EQ(held.status(), v1::TASK_STATUS_QUEUED);  // Its agent has been away for a moment only.
  EXPECT_THAT(held.waiting_reason(), HasSubstr("agent web-3 is offline; the run waits for it"));
  auto web3 = Connect("web-3", 1, {{"role", "web"}});
  Finished("web-1", *web[0], TargetOn(run, "web-1"), 0);
  Complete(run, web, 2);
  Finished("web-3", *web3, TargetOn(run, "web-3"), 0);
  EXPECT_EQ(Run(run.id()).status(), v1::TASK_STATUS_SUCCEEDED);
}

TEST_F(FleetRunTest, AReleasedTargetWhoseAgentGoesAwayGivesUpItsPlace) {
  auto web1 = Connect("web-1", 1, {{"role", "web"}});
  auto web2 = Connect("web-2", 1, {{"role", "web"}});
  v1::TaskSpec other;
  other.set_agent_id("web-1");
  Submit(other);  // web-1 is busy: its target waits in the queue.
  v1::Run run = SubmitRun("true", {{"role", "web"}}, "1");
  EXPECT_THAT(registry_->Get(TargetOn(run, "web-1"))->waiting_reason(), HasSubstr("is busy"));
  EXPECT_TRUE(web2->Assigns().empty());
  registry_->AgentDisconnected("web-1", web1.get());
  ASSERT_EQ(web2->Assigns().size(), 1u);  // Its place went to web-2's target.
  EXPECT_EQ(web2->Assigns()[0].task_id(), TargetOn(run, "web-2"));
  EXPECT_THAT(registry_->Get(TargetOn(run, "web-1"))->waiting_reason(),
              HasSubstr("agent web-1 is offline"));
  EXPECT_EQ(MaxInProgress(run.id()), 1);
}

TEST_F(FleetRunTest, AStoppedRunRetriesNothing) {
  auto web = Web(2);
  v1::SubmitRunRequest r;
  r.mutable_spec()->mutable_task()->mutable_shell()->set_command("true");
  r.mutable_spec()->mutable_task()->mutable_retry()->set_max_attempts(3);
  r.mutable_spec()->set_max_errors("1");
  v1::Run run = registry_->SubmitRun(r)->run();
  Started("web-2", *web[1], TargetOn(run, "web-2"));
  Complete(run, web, 1, /*code=*/1);  // Stops the run.
  for (int i = 0; i < 4; ++i) {  // web-2 goes silent: its target is lost, not retried.
    clock_.Advance(absl::Seconds(5));
    registry_->Tick();
  }
  const v1::Task lost = *registry_->Get(TargetOn(run, "web-2"));
  EXPECT_EQ(lost.status(), v1::TASK_STATUS_LOST);
  EXPECT_EQ(lost.attempt(), 1u);
  EXPECT_EQ(Run(run.id()).status(), v1::TASK_STATUS_FAILED);
}

TEST_F(FleetRunTest, ATargetDeletedMidRunKeepsItsEndAcrossARestart) {
  auto web = Web(2);
  v1::Run run = SubmitRun("true", {{"role", "web"}}, "1");
  Complete(run, web, 1);
  ASSERT_TRUE(registry_->Delete(TargetOn(run, "web-1")).ok());
  Restart(Options());
  run = Run(run.id());
  EXPECT_EQ(run.counts().succeeded(), 1);
  EXPECT_EQ(run.counts().lost(), 0);
  EXPECT_EQ(run.status(), v1::TASK_STATUS_RUNNING);
}

TEST_F(FleetRunTest, AHeldTargetCancelledOnItsOwnEndsTheRunCancelled) {
  auto web = Web(2);
  v1::Run run = SubmitRun("true", {{"role", "web"}}, "1");
  ASSERT_TRUE(registry_->Cancel(TargetOn(run, "web-2"), "").ok());
  Complete(run, web, 1);
  run = Run(run.id());
  EXPECT_EQ(run.status(), v1::TASK_STATUS_CANCELLED);
  EXPECT_THAT(run.status_reason(), HasSubstr("1 succeeded, 1 cancelled of 2 targets"));
  EXPECT_TRUE(web[1]->Assigns().empty());
}

}  // namespace
}  // namespace taskgrid
