// What the registry's tests share: fake agent links that record what the
// registry sends, and a registry over the memory store and a fake clock.
#ifndef TASKGRID_SERVICES_COORDINATOR_TASK_REGISTRY_TEST_FIXTURE_H_
#define TASKGRID_SERVICES_COORDINATOR_TASK_REGISTRY_TEST_FIXTURE_H_

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "services/common/proto_time.h"
#include "services/common/testing/fake_clock.h"
#include "services/common/testing/test_util.h"
#include "services/coordinator/store/memory_task_store.h"
#include "services/coordinator/task_registry.h"

namespace taskgrid::testing_registry {

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
  // `n` chunks of `size` bytes on a1's stdout, the i-th filled with
  // `first + i`; returns what was written.
  std::string WriteChunks(FakeLink& link, const std::string& id, int n, int size, char first) {
    std::string written;
    for (int i = 0; i < n; ++i) {
      const std::string chunk(static_cast<size_t>(size), static_cast<char>(first + i));
      Output("a1", link, id, static_cast<int64_t>(written.size()), chunk);
      written += chunk;
    }
    return written;
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

}  // namespace taskgrid::testing_registry

#endif  // TASKGRID_SERVICES_COORDINATOR_TASK_REGISTRY_TEST_FIXTURE_H_
