// Nothing leaves the registry before the store has made it durable.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/coordinator/task_registry_test_fixture.h"

namespace taskgrid::testing_registry {
namespace {

using ::testing::HasSubstr;

// A store whose commits the test performs: a durability callback runs only
// once the writes made before it are committed, as with a real store's
// commit thread; `durable` says how many task writes that was.
class ManualStore final : public TaskStore {
 public:
  void PutTask(uint64_t seq, const TaskState& t, std::shared_ptr<const v1::TaskSpec> spec) override {
    puts.emplace_back(t.id, t.status);
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
  EXPECT_EQ(link->Sent().size(), 1u);       // The assign waits for the commit...
  EXPECT_EQ(events.last_cursor(), before);  // ... and so do the events.
  store.Commit();
  EXPECT_EQ(link->Assigns().size(), 1u);
  EXPECT_GT(events.last_cursor(), before);
}

// A long stream: once its head is durable, the middle it leaves behind is
// acknowledged without waiting for a commit, and nothing else ever is.
TEST(TaskRegistryDurabilityTest, OutputPastADurableHeadIsSettledAtOnce) {
  FakeClock clock;
  ManualStore store;
  EventLog events;
  RegistryOptions options;
  options.output_cap_bytes = 1024;  // A head and a tail of 512 bytes.
  TaskRegistry registry(clock, store, events, nullptr, options);
  auto link = std::make_shared<FakeLink>();
  v1::Hello hello;
  hello.set_agent_id("a1");
  hello.set_slots(1);
  ASSERT_TRUE(registry.AgentConnected(hello, link).ok());
  v1::SubmitRequest req;
  req.mutable_spec()->mutable_shell()->set_command("yes");
  ASSERT_TRUE(registry.Submit(req).ok());
  store.Commit();
  ASSERT_EQ(link->Assigns().size(), 1u);
  const std::string id = link->Assigns()[0].task_id();
  int64_t total = 0;
  auto write = [&](size_t n) {
    v1::AgentMessage m;
    m.mutable_output()->set_task_id(id);
    m.mutable_output()->set_attempt(1);
    m.mutable_output()->mutable_chunk()->set_stream(v1::OUTPUT_STREAM_STDOUT);
    m.mutable_output()->mutable_chunk()->set_offset(total);
    m.mutable_output()->mutable_chunk()->set_data(std::string(n, 'x'));
    registry.HandleAgentMessage("a1", link.get(), m);
    total += static_cast<int64_t>(n);
  };
  auto acked = [&] {
    int64_t most = 0;
    for (const auto& m : link->Sent()) {
      if (m.has_ack()) most = std::max(most, m.ack().stdout_offset());
    }
    return most;
  };
  write(600);  // Fills the head.
  write(600);  // Drops from the middle, but the head may still be lost.
  EXPECT_EQ(acked(), 0);
  store.Commit();
  EXPECT_EQ(acked(), 1200);
  write(600);
  EXPECT_EQ(acked(), total - 512);  // Settled at once: all but the tail.
  store.Commit();
  EXPECT_EQ(acked(), total);  // The tail once durable.
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

}  // namespace
}  // namespace taskgrid::testing_registry
