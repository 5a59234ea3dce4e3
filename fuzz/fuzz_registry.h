// A registry on a fake clock and an in-memory store, with one connected
// agent, for the fuzz targets that drive it.
#ifndef TASKGRID_FUZZ_FUZZ_REGISTRY_H_
#define TASKGRID_FUZZ_FUZZ_REGISTRY_H_

#include <memory>
#include <vector>

#include "services/common/testing/fake_clock.h"
#include "services/coordinator/store/memory_task_store.h"
#include "services/coordinator/task_registry.h"

namespace taskgrid {

// Keeps what the registry sends; never blocks.
class SinkLink final : public AgentLink {
 public:
  void Send(v1::CoordinatorMessage m) override { sent.push_back(std::move(m)); }
  void Close(const absl::Status&) override {}
  std::vector<v1::CoordinatorMessage> sent;
};

struct FuzzRegistry {
  FuzzRegistry() {
    v1::Hello hello;
    hello.set_agent_id("fuzz-agent");
    hello.set_slots(4);
    (void)registry.AgentConnected(hello, link);
  }
  FakeClock clock;
  MemoryTaskStore store;
  EventLog events;
  TaskRegistry registry{clock, store, events, nullptr, RegistryOptions()};
  std::shared_ptr<SinkLink> link = std::make_shared<SinkLink>();
};

}  // namespace taskgrid

#endif  // TASKGRID_FUZZ_FUZZ_REGISTRY_H_
