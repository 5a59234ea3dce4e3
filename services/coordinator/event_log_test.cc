#include "services/coordinator/event_log.h"

#include <gtest/gtest.h>

namespace taskgrid {
namespace {

v1::TaskEvent Event(const std::string& task) {
  v1::TaskEvent e;
  e.set_type(v1::EVENT_TYPE_TASK_STATUS);
  e.set_task_id(task);
  return e;
}

auto All = [](const v1::TaskEvent&) { return true; };

TEST(EventLogTest, CursorsIncreaseAndReplayAfterACursor) {
  EventLog log;
  EXPECT_EQ(log.Append(Event("a")), 1u);
  EXPECT_EQ(log.Append(Event("b")), 2u);
  EXPECT_EQ(log.Append(Event("a")), 3u);
  uint64_t after = 1;
  v1::TaskEvent out;
  ASSERT_TRUE(log.Next(after, All, out));
  EXPECT_EQ(out.cursor(), 2u);
  EXPECT_EQ(out.task_id(), "b");
  ASSERT_TRUE(log.Next(after, All, out));
  EXPECT_EQ(out.cursor(), 3u);
  EXPECT_FALSE(log.Next(after, All, out));
  EXPECT_EQ(after, 3u);
}

TEST(EventLogTest, FiltersSkipWithoutLosingPosition) {
  EventLog log;
  for (const char* t : {"a", "b", "b", "a"}) log.Append(Event(t));
  uint64_t after = 0;
  v1::TaskEvent out;
  auto only_a = [](const v1::TaskEvent& e) { return e.task_id() == "a"; };
  ASSERT_TRUE(log.Next(after, only_a, out));
  EXPECT_EQ(out.cursor(), 1u);
  ASSERT_TRUE(log.Next(after, only_a, out));
  EXPECT_EQ(out.cursor(), 4u);
  EXPECT_FALSE(log.Next(after, only_a, out));
}

TEST(EventLogTest, ReaderBehindTheRingGetsResync) {
  EventLog log(EventLog::Options{.max_events = 3, .max_bytes = 1 << 20});
  for (int i = 0; i < 10; ++i) log.Append(Event("t"));
  uint64_t after = 2;
  v1::TaskEvent out;
  ASSERT_TRUE(log.Next(after, All, out));
  EXPECT_EQ(out.type(), v1::EVENT_TYPE_RESYNC);
  EXPECT_EQ(out.cursor(), 10u);
  EXPECT_EQ(after, 10u);
  EXPECT_FALSE(log.Next(after, All, out));
  // A reader exactly at the ring's edge is fine.
  after = 7;
  ASSERT_TRUE(log.Next(after, All, out));
  EXPECT_EQ(out.cursor(), 8u);
}

TEST(EventLogTest, CursorFromTheFutureResyncs) {
  EventLog log;
  log.Append(Event("t"));
  uint64_t after = 99;
  v1::TaskEvent out;
  ASSERT_TRUE(log.Next(after, All, out));
  EXPECT_EQ(out.type(), v1::EVENT_TYPE_RESYNC);
  EXPECT_EQ(after, 1u);
}

TEST(EventLogTest, ListenersAreWokenOnAppend) {
  struct Counter : EventLog::Listener {
    int n = 0;
    void OnAppended() override { ++n; }
  };
  EventLog log;
  auto c = std::make_shared<Counter>();
  log.AddListener(c);
  log.Append(Event("t"));
  log.Append(Event("t"));
  log.RemoveListener(c.get());
  log.Append(Event("t"));
  EXPECT_EQ(c->n, 2);
}

}  // namespace
}  // namespace taskgrid
