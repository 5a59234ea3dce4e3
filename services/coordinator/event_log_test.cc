#include "services/coordinator/event_log.h"

#include <gtest/gtest.h>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "services/common/testing/test_util.h"

namespace taskgrid {
namespace {

v1::TaskEvent Event(const std::string& task) {
  v1::TaskEvent e;
  e.set_type(v1::EVENT_TYPE_TASK_STATUS);
  e.set_task_id(task);
  return e;
}

auto All = [](const v1::TaskEvent&) { return true; };

// Appends and publishes, as the registry does once the store committed.
uint64_t Add(EventLog& log, const std::string& task) {
  const uint64_t cursor = log.Append(Event(task)).cursor();
  log.Publish(cursor);
  return cursor;
}

TEST(EventLogTest, CursorsIncreaseAndReplayAfterACursor) {
  EventLog log;
  EXPECT_EQ(Add(log, "a"), 1u);
  EXPECT_EQ(Add(log, "b"), 2u);
  EXPECT_EQ(Add(log, "a"), 3u);
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
  for (const char* t : {"a", "b", "b", "a"}) Add(log, t);
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
  for (int i = 0; i < 10; ++i) Add(log, "t");
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
  Add(log, "t");
  uint64_t after = 99;
  v1::TaskEvent out;
  ASSERT_TRUE(log.Next(after, All, out));
  EXPECT_EQ(out.type(), v1::EVENT_TYPE_RESYNC);
  EXPECT_EQ(after, 1u);
}

// Counts wakeups; they come from the log's fan-out thread.
struct Counter : EventLog::Listener {
  void OnAppended() override {
    absl::MutexLock lock(&mu);
    ++n;
  }
  int count() {
    absl::MutexLock lock(&mu);
    return n;
  }
  absl::Mutex mu;
  int n = 0;
};

TEST(EventLogTest, ListenersAreWokenOnPublish) {
  EventLog log;
  auto c = std::make_shared<Counter>();
  log.AddListener(c);
  Add(log, "t");
  ASSERT_TRUE(WaitFor([&] { return c->count() >= 1; }));
  Add(log, "t");
  ASSERT_TRUE(WaitFor([&] { return c->count() >= 2; }));
  log.RemoveListener(c.get());
  Add(log, "t");
  // A wakeup would come from the same thread, after Publish: a listener
  // added after the last event is woken only once everything before it has.
  auto marker = std::make_shared<Counter>();
  log.AddListener(marker);
  Add(log, "t");
  ASSERT_TRUE(WaitFor([&] { return marker->count() >= 1; }));
  EXPECT_EQ(c->count(), 2);
}

TEST(EventLogTest, OnlyListenersAnEventInterestsAreWoken) {
  EventLog log;
  auto of_a = std::make_shared<Counter>();
  auto of_run = std::make_shared<Counter>();
  auto of_agent = std::make_shared<Counter>();
  auto all = std::make_shared<Counter>();
  log.AddListener(of_a, {"a", "", ""});
  log.AddListener(of_run, {"", "r1", ""});
  log.AddListener(of_agent, {"", "", "host-1"});
  log.AddListener(all);
  // One event at a time: the fan-out may wake a listener once for several.
  Add(log, "b");
  ASSERT_TRUE(WaitFor([&] { return all->count() >= 1; }));
  v1::TaskEvent in_run = Event("c");
  in_run.set_run_id("r1");
  in_run.set_agent_id("host-2");
  log.Publish(log.Append(in_run).cursor());
  ASSERT_TRUE(WaitFor([&] { return all->count() >= 2; }));
  Add(log, "a");
  ASSERT_TRUE(WaitFor([&] { return of_a->count() >= 1; }));
  ASSERT_TRUE(WaitFor([&] { return all->count() >= 3; }));
  EXPECT_EQ(of_run->count(), 1);
  EXPECT_EQ(of_agent->count(), 0);
  EXPECT_EQ(of_a->count(), 1);
  log.RemoveListener(of_a.get());
  log.RemoveListener(of_run.get());
  log.RemoveListener(of_agent.get());
  log.RemoveListener(all.get());
}

TEST(EventLogTest, ListenersOfEventsThatLeftTheRingAreAllWoken) {
  // Holds the fan-out thread in its first wakeup until released.
  struct Blocker : EventLog::Listener {
    void OnAppended() override {
      if (entered.HasBeenNotified()) return;
      entered.Notify();
      release.WaitForNotification();
    }
    absl::Notification entered, release;
  };
  EventLog log(EventLog::Options{.max_events = 2, .max_bytes = 1 << 20});
  auto blocker = std::make_shared<Blocker>();
  auto of_a = std::make_shared<Counter>();
  log.AddListener(blocker);
  log.AddListener(of_a, {"a", "", ""});
  Add(log, "b");
  blocker->entered.WaitForNotification();
  // Events of other tasks pass out of the ring before the fan-out looks:
  // it cannot tell whom they interested, so it wakes everyone, and a reader
  // behind the ring learns it must resync.
  for (int i = 0; i < 10; ++i) Add(log, "b");
  blocker->release.Notify();
  ASSERT_TRUE(WaitFor([&] { return of_a->count() >= 1; }));
  log.RemoveListener(blocker.get());
  log.RemoveListener(of_a.get());
}

TEST(EventLogTest, UnpublishedEventsAreInvisibleAndNeverEvicted) {
  EventLog log(EventLog::Options{.max_events = 2, .max_bytes = 1 << 20});
  Add(log, "a");
  for (int i = 0; i < 5; ++i) log.Append(Event("b"));
  EXPECT_EQ(log.last_cursor(), 1u);
  EXPECT_EQ(log.first_cursor(), 2u);  // "a" was seen and may go; none of "b" may.
  uint64_t after = 1;
  v1::TaskEvent out;
  EXPECT_FALSE(log.Next(after, All, out));
  log.Publish(6);
  ASSERT_TRUE(log.Next(after, All, out));
  EXPECT_EQ(out.cursor(), 2u);
  EXPECT_EQ(out.task_id(), "b");
}

// A follower of one task reads through the task's index: the same events,
// in order, as a scan with a filter, across eviction and a restore.
TEST(EventLogTest, OneTasksEventsComeThroughItsIndex) {
  EventLog log(EventLog::Options{.max_events = 8});
  auto read_all = [&](uint64_t after, const std::string& task) {
    std::vector<uint64_t> got;
    v1::TaskEvent out;
    auto is_a = [](const v1::TaskEvent& e) { return e.task_id() == "a"; };
    while (log.Next(after, is_a, out, task)) {
      if (out.type() == v1::EVENT_TYPE_RESYNC) break;
      got.push_back(out.cursor());
    }
    return std::pair(got, after);
  };
  for (const char* task : {"a", "b", "b", "a", "c", "a"}) Add(log, task);
  EXPECT_EQ(read_all(0, "a").first, (std::vector<uint64_t>{1, 4, 6}));
  EXPECT_EQ(read_all(0, "a"), read_all(0, ""));
  EXPECT_EQ(read_all(1, "a").first, (std::vector<uint64_t>{4, 6}));
  EXPECT_EQ(read_all(6, "a").second, 6u);  // Nothing new: the position holds.
  EXPECT_EQ(read_all(0, "nobody").second, 6u);

  for (const char* task : {"b", "b", "b", "a", "b"}) Add(log, task);  // 1-3 leave the ring.
  EXPECT_EQ(log.first_cursor(), 4u);
  EXPECT_EQ(read_all(3, "a").first, (std::vector<uint64_t>{4, 6, 10}));
  EXPECT_EQ(read_all(3, "a"), read_all(3, ""));

  std::vector<EventLog::Entry> kept;
  for (uint64_t c : {20, 21, 22}) {
    EventLog::Entry e{Event(c == 21 ? "b" : "a"), nullptr};
    e.event.set_cursor(c);
    kept.push_back(std::move(e));
  }
  log.Restore(std::move(kept), 22);
  EXPECT_EQ(read_all(19, "a").first, (std::vector<uint64_t>{20, 22}));
}

TEST(EventLogTest, RestoreContinuesCursorsAfterTheLastOne) {
  EventLog log;
  std::vector<EventLog::Entry> kept;
  for (uint64_t c : {41, 42}) {
    kept.push_back({Event("r"), nullptr});
    kept.back().event.set_cursor(c);
  }
  log.Restore(std::move(kept), 42);
  EXPECT_EQ(log.first_cursor(), 41u);
  EXPECT_EQ(log.last_cursor(), 42u);
  uint64_t after = 40;
  v1::TaskEvent out;
  ASSERT_TRUE(log.Next(after, All, out));
  EXPECT_EQ(out.cursor(), 41u);
  EXPECT_EQ(Add(log, "n"), 43u);
  after = 10;  // Older than what was restored.
  ASSERT_TRUE(log.Next(after, All, out));
  EXPECT_EQ(out.type(), v1::EVENT_TYPE_RESYNC);
}

TEST(EventLogTest, ReadersGetTheSharedSpecFilledIn) {
  EventLog log;
  auto spec = std::make_shared<v1::TaskSpec>();
  spec->mutable_shell()->set_command("echo hi");
  v1::TaskEvent e = Event("t");
  e.mutable_task()->set_id("t");
  const v1::TaskEvent& stored = log.Append(std::move(e), spec);
  EXPECT_FALSE(stored.task().has_spec());  // What the journal gets.
  log.Append(Event("u"), spec);            // No snapshot: nothing to fill.
  log.Publish(2);
  uint64_t after = 0;
  v1::TaskEvent out;
  ASSERT_TRUE(log.Next(after, All, out));
  EXPECT_EQ(out.task().spec().shell().command(), "echo hi");
  ASSERT_TRUE(log.Next(after, All, out));
  EXPECT_FALSE(out.has_task());
}

}  // namespace
}  // namespace taskgrid
