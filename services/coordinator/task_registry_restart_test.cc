// What the registry rebuilds from its store after a restart, retries,
// and batched submits.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/coordinator/task_registry_test_fixture.h"

namespace taskgrid::testing_registry {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Follows a task's stdout through its log events as a reader resuming by
// cursor does: each event starts where the last ended, with bytes or with a
// marker of the bytes dropped. Returns the bytes; `dropped` counts the rest.
std::string FollowStdout(const std::vector<v1::TaskEvent>& events, const std::string& id,
                         int64_t& dropped) {
  std::string seen;
  int64_t next = 0;
  dropped = 0;
  for (const v1::TaskEvent& e : events) {
    if (e.type() != v1::EVENT_TYPE_TASK_LOG || e.task_id() != id) continue;
    EXPECT_EQ(e.output().offset(), next) << "a silent gap at cursor " << e.cursor();
    EXPECT_TRUE(e.output().data().empty() || e.output().dropped_bytes() == 0);
    seen += e.output().data();
    dropped += e.output().dropped_bytes();
    next = e.output().offset() + static_cast<int64_t>(e.output().data().size()) +
           e.output().dropped_bytes();
  }
  return seen;
}

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
  WriteChunks(*link, id, 10, 1000, '0');
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

TEST_F(TaskRegistryTest, AReaderResumingAfterARestartIsToldWhichBytesItMisses) {
  RegistryOptions o = Options();
  o.output_cap_bytes = 1024;
  Restart(o);
  auto link = Connect("a1", 1);
  const std::string id = Submit();
  const std::string written = WriteChunks(*link, id, 10, 300, 'a');
  Restart(o);  // The log now holds events whose bytes the capped output no longer has.
  int64_t dropped = 0;
  const std::string seen = FollowStdout(EventsAfter(0), id, dropped);
  EXPECT_GT(dropped, 0);
  EXPECT_EQ(static_cast<int64_t>(seen.size()) + dropped, 3000);
  EXPECT_EQ(seen, written.substr(0, 300) + written.substr(2700));  // The events held whole.
}

// Past a durable head the agent forgets what it was told is settled before
// the tail behind it commits: after a restart that lost that tail it resends
// from further on, and the registry counts the gap as the dropped middle.
TEST_F(TaskRegistryTest, ResendPastTheRestoredTailIsTheDroppedMiddle) {
  RegistryOptions o = Options();
  o.output_cap_bytes = 1024;
  Restart(o);
  auto link = Connect("a1", 1);
  const std::string id = Submit();
  Output("a1", *link, id, 0, std::string(600, 'h'));
  Restart(o);  // The restored store had the head and 88 bytes of tail.
  v1::HeldTask held;
  held.set_task_id(id);
  held.set_attempt(1);
  auto again = Connect("a1", 1, {}, {held});
  Output("a1", *again, id, 5000, std::string(100, 't'));
  Finished("a1", *again, id, 0);
  auto t = registry_->Get(id);
  EXPECT_EQ(t->status(), v1::TASK_STATUS_SUCCEEDED);
  EXPECT_EQ(t->stdout().total_bytes(), 5100);
  EXPECT_EQ(t->stdout().dropped_bytes(), 5100 - 512 - 100);
  EXPECT_EQ(StdoutOf(id), std::string(512, 'h'));  // Then the gap, then the tail.
  v1::GetOutputRequest r;
  r.set_task_id(id);
  r.set_stream(v1::OUTPUT_STREAM_STDOUT);
  r.set_offset(600);
  EXPECT_EQ(registry_->GetOutput(r)->data(), std::string(100, 't'));
  int64_t dropped = 0;  // Readers of the log are told of the skipped bytes.
  EXPECT_EQ(FollowStdout(EventsAfter(0), id, dropped),
            std::string(600, 'h') + std::string(100, 't'));
  EXPECT_EQ(dropped, 4400);

  // Before the head is full a gap is refused: nothing was settled early.
  const std::string short_one = Submit();
  Output("a1", *again, short_one, 0, "abc");
  Output("a1", *again, short_one, 10, "xyz");
  EXPECT_EQ(registry_->Get(short_one)->stdout().total_bytes(), 3);
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

}  // namespace
}  // namespace taskgrid::testing_registry
