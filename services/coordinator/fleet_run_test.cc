// Fleet runs: one target per matching agent, concurrency and error
// budgets, offline targets, restarts.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/coordinator/task_registry_test_fixture.h"

namespace taskgrid::testing_registry {
namespace {

using ::testing::HasSubstr;

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
    for (int i = 1; i <= n; ++i)
      links.push_back(Connect("web-" + std::to_string(i), 1, {{"role", "web"}}));
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
  EXPECT_THAT(
      TrySubmitRun("true", {{"role", "nope"}}),
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
  // A limit the agent does not enforce: skipped, saying so.
  v1::SubmitRunRequest big;
  big.mutable_spec()->mutable_task()->mutable_shell()->set_command("make");
  (*big.mutable_spec()->mutable_task()->mutable_selector())["role"] = "web";
  big.mutable_spec()->mutable_task()->mutable_resources()->set_memory_bytes(1LL << 30);
  EXPECT_THAT(registry_->SubmitRun(big),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("can take it: agent web-1 cannot enforce the task's memory "
                                 "limit")));
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
  EXPECT_THAT(run.waiting_reason(),
              HasSubstr("3 of 5 targets waiting: 3 held by max_concurrency of 2"));
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
  EXPECT_THAT(
      run.status_reason(),
      HasSubstr(
          "stopped after 1 target failed (max_errors 1); 1 failed, 3 cancelled of 4 targets"));
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
  EXPECT_THAT(late.status_reason(),
              HasSubstr("web-3 was offline for 1m while the run waited for it"));
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
  for (int i = 0; i < 4; ++i) {       // web-2 goes silent: its target is lost, not retried.
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
}  // namespace taskgrid::testing_registry
