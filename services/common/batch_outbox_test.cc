#include "services/common/batch_outbox.h"

#include <gtest/gtest.h>

#include "taskgrid/v1/agent.pb.h"

namespace taskgrid {
namespace {

v1::CoordinatorMessage AckOf(const std::string& task, int64_t offset) {
  v1::CoordinatorMessage m;
  m.mutable_ack()->set_task_id(task);
  m.mutable_ack()->set_stdout_offset(offset);
  return m;
}

// Folds acks of one task into the newest offset.
bool Newer(v1::CoordinatorMessage& queued, const v1::CoordinatorMessage& next) {
  if (queued.ack().task_id() != next.ack().task_id()) return false;
  queued.mutable_ack()->set_stdout_offset(next.ack().stdout_offset());
  return true;
}

TEST(BatchOutboxTest, OneBatchInFlightAndTheRestJoinTheNext) {
  BatchOutbox<v1::CoordinatorBatch> outbox;
  outbox.Add(AckOf("a", 1));
  const v1::CoordinatorBatch* first = outbox.StartNext();
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->messages_size(), 1);
  outbox.Add(AckOf("b", 1));
  outbox.Add(AckOf("c", 1));
  EXPECT_EQ(outbox.StartNext(), nullptr);  // One write at a time.
  outbox.Done();
  const v1::CoordinatorBatch* second = outbox.StartNext();
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->messages_size(), 2);
}

TEST(BatchOutboxTest, FoldsOnlyIntoTheBatchNotYetInFlight) {
  BatchOutbox<v1::CoordinatorBatch> outbox;
  outbox.AddOrFold(AckOf("a", 1), Newer);
  ASSERT_NE(outbox.StartNext(), nullptr);  // In flight: never changed.
  outbox.AddOrFold(AckOf("a", 2), Newer);
  outbox.AddOrFold(AckOf("b", 7), Newer);
  outbox.AddOrFold(AckOf("a", 3), Newer);
  outbox.Done();
  const v1::CoordinatorBatch* next = outbox.StartNext();
  ASSERT_NE(next, nullptr);
  ASSERT_EQ(next->messages_size(), 2);
  EXPECT_EQ(next->messages(0).ack().task_id(), "a");
  EXPECT_EQ(next->messages(0).ack().stdout_offset(), 3);
  EXPECT_EQ(next->messages(1).ack().stdout_offset(), 7);
}

TEST(BatchOutboxTest, LooksBackOnlyAFewMessages) {
  BatchOutbox<v1::CoordinatorBatch> outbox;
  outbox.AddOrFold(AckOf("a", 1), Newer);
  for (int i = 0; i < BatchOutbox<v1::CoordinatorBatch>::kFoldWindow; ++i) {
    outbox.AddOrFold(AckOf("other" + std::to_string(i), 1), Newer);
  }
  outbox.AddOrFold(AckOf("a", 2), Newer);
  const v1::CoordinatorBatch* batch = outbox.StartNext();
  ASSERT_NE(batch, nullptr);
  EXPECT_EQ(batch->messages_size(), BatchOutbox<v1::CoordinatorBatch>::kFoldWindow + 2);
}

}  // namespace
}  // namespace taskgrid
