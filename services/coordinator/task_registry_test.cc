// A task's life in the registry: queueing, dispatch, states, timeouts,
// agents that go and come back, output, retention, listing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/coordinator/task_registry_test_fixture.h"

namespace taskgrid::testing_registry {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

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

TEST_F(TaskRegistryTest, ATaskWaitsForAnAgentWithTheResourcesItAsksFor) {
  auto link = NewLink();
  v1::Hello h;
  h.set_agent_id("web-1");
  h.set_slots(4);
  h.set_instance_id("process-1");
  (*h.mutable_labels())["role"] = "web";
  h.mutable_capacity()->set_memory_bytes(4LL << 30);
  h.mutable_capacity()->set_cpus(4);
  h.add_limits("memory");
  h.add_limits("cpus");
  ASSERT_TRUE(registry_->AgentConnected(h, link).ok());
  v1::TaskSpec big;
  (*big.mutable_selector())["role"] = "web";
  big.mutable_resources()->set_memory_bytes(3LL << 30);
  const std::string first = Submit(big);
  EXPECT_EQ(StatusOf(first), v1::TASK_STATUS_DISPATCHED);
  big.mutable_resources()->set_memory_bytes(2LL << 30);
  const std::string second = Submit(big);
  EXPECT_EQ(StatusOf(second), v1::TASK_STATUS_QUEUED);
  EXPECT_THAT(registry_->Get(second)->waiting_reason(),
              HasSubstr("every connected agent matching role=web has less free than the 2 GiB "
                        "of memory it asks for"));
  const v1::ListAgentsResponse agents = registry_->ListAgents();
  ASSERT_EQ(agents.agents_size(), 1);
  EXPECT_EQ(agents.agents(0).capacity().memory_bytes(), 4LL << 30);
  EXPECT_EQ(agents.agents(0).reserved().memory_bytes(), 3LL << 30);

  // A task that asks for nothing runs beside them; the second goes once the
  // first has given its memory back.
  const std::string small = Submit();
  EXPECT_EQ(StatusOf(small), v1::TASK_STATUS_DISPATCHED);
  Started("web-1", *link, first);
  Finished("web-1", *link, first, 0);
  EXPECT_EQ(StatusOf(second), v1::TASK_STATUS_DISPATCHED);

  // More than any agent has in all: it says so, and waits for one.
  big.mutable_resources()->set_memory_bytes(8LL << 30);
  const std::string huge = Submit(big);
  EXPECT_EQ(StatusOf(huge), v1::TASK_STATUS_QUEUED);
  EXPECT_THAT(registry_->Get(huge)->waiting_reason(),
              HasSubstr("no agent matching role=web can hold it (web-1 offers 4 GiB of memory "
                        "to tasks in all, less than the 8 GiB of memory asked)"));
  v1::TaskSpec pinned;
  pinned.set_agent_id("web-1");
  pinned.mutable_resources()->set_cpus(8);
  EXPECT_THAT(registry_->Get(Submit(pinned))->waiting_reason(),
              HasSubstr("agent web-1 offers 4 CPUs to tasks in all, less than the 8 CPUs asked"));
  pinned.mutable_resources()->set_cpus(3.5);
  EXPECT_EQ(StatusOf(Submit(pinned)), v1::TASK_STATUS_DISPATCHED);
  pinned.mutable_resources()->set_cpus(1);
  EXPECT_THAT(registry_->Get(Submit(pinned))->waiting_reason(),
              HasSubstr("agent web-1 has less than 1 CPU free"));
  pinned.mutable_resources()->set_cpus(0);
  pinned.mutable_resources()->set_pids(10);
  EXPECT_THAT(registry_->Get(Submit(pinned))->waiting_reason(),
              HasSubstr("agent web-1 cannot enforce the task's pids limit"));
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
  link = Connect("a1", 1, {}, {}, "process-2");     // Attempt 2 ran and was lost: the first try.
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
}  // namespace taskgrid::testing_registry
