// Arbitrary SubmitRun requests (protobuf bytes) into a registry with agents of
// two roles, one of them offline: a run is accepted or refused, nothing
// crashes, and as the agents finish what they are given (some failing) the
// run never has more targets in progress than its max_concurrency (at any
// moment of its event stream), its counts always add up to its targets, and
// it ends with none waiting.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "fuzz/fuzz_init.h"
#include "fuzz/fuzz_registry.h"

namespace taskgrid {
namespace {

// Targets in progress at every moment of the event log since `cursor`,
// never more than the run's limit.
void CheckInProgress(EventLog& events, uint64_t& cursor, const std::string& run_id, uint32_t limit,
                     std::map<std::string, v1::TaskStatus>& state) {
  v1::TaskEvent e;
  while (events.Next(cursor, [&](const v1::TaskEvent& x) { return x.run_id() == run_id; }, e)) {
    if (e.type() != v1::EVENT_TYPE_TASK_STATUS) continue;
    state[e.task_id()] = e.task().status();
    uint32_t now = 0;
    for (const auto& [id, s] : state) {
      now += s == v1::TASK_STATUS_DISPATCHED || s == v1::TASK_STATUS_RUNNING;
    }
    if (limit > 0 && now > limit) __builtin_trap();
  }
}

void CheckCounts(const v1::Run& run) {
  const v1::RunCounts& c = run.counts();
  if (c.waiting() + c.running() + c.succeeded() + c.failed() + c.timed_out() + c.cancelled() +
          c.lost() + c.skipped() !=
      c.targets()) {
    __builtin_trap();
  }
  if (run.concurrency_limit() > 0 && c.running() > static_cast<int>(run.concurrency_limit())) {
    __builtin_trap();
  }
}

int FuzzOneRun(const uint8_t* data, size_t size) {
  v1::SubmitRunRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  FuzzRegistry f;
  std::map<std::string, std::shared_ptr<SinkLink>> links;
  for (const char* id : {"web-1", "web-2", "web-3", "db-1"}) {
    v1::Hello hello;
    hello.set_agent_id(id);
    hello.set_slots(1 + (id[4] - '0') % 2);
    (*hello.mutable_labels())["role"] = id[0] == 'w' ? "web" : "db";
    links[id] = std::make_shared<SinkLink>();
    (void)f.registry.AgentConnected(hello, links[id]);
  }
  f.registry.AgentDisconnected("web-3", links["web-3"].get());
  auto submitted = f.registry.SubmitRun(request);
  if (!submitted.ok()) return 0;
  const std::string run_id = submitted->run().id();
  const uint32_t limit = submitted->run().concurrency_limit();
  CheckCounts(submitted->run());
  uint64_t cursor = 0;
  std::map<std::string, v1::TaskStatus> state;
  std::map<std::string, size_t> handled;  // Messages of each link already answered.
  for (int round = 0; round < 30; ++round) {
    for (auto& [agent, link] : links) {
      for (size_t& i = handled[agent]; i < link->sent.size(); ++i) {
        if (!link->sent[i].has_assign()) continue;
        const v1::Assign& a = link->sent[i].assign();
        v1::AgentMessage started;
        started.mutable_started()->set_task_id(a.task_id());
        started.mutable_started()->set_attempt(a.attempt());
        f.registry.HandleAgentMessage(agent, link.get(), started);
        v1::AgentMessage finished;
        finished.mutable_finished()->set_task_id(a.task_id());
        finished.mutable_finished()->set_attempt(a.attempt());
        finished.mutable_finished()->mutable_exit()->set_exit_code((round + agent.size()) % 3 == 0);
        f.registry.HandleAgentMessage(agent, link.get(), finished);
      }
    }
    f.clock.Advance(absl::Minutes(1));
    f.registry.Tick();
    CheckInProgress(f.events, cursor, run_id, limit, state);
    auto run = f.registry.GetRun(run_id);
    if (!run.ok()) __builtin_trap();
    CheckCounts(*run);
  }
  f.clock.Advance(absl::Hours(24 * 31));  // Past every timeout.
  f.registry.Tick();
  auto run = f.registry.GetRun(run_id);
  if (run.ok() && (run->counts().waiting() > 0 || run->status() < v1::TASK_STATUS_SUCCEEDED)) {
    __builtin_trap();
  }
  return 0;
}

}  // namespace
}  // namespace taskgrid

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return taskgrid::FuzzOneRun(data, size);
}
