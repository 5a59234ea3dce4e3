// Arbitrary agent reports (an AgentBatch in protobuf bytes) against two
// dispatched tasks: nothing crashes, and a task that reached a final state
// never leaves it.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/fuzz_init.h"
#include "fuzz/fuzz_registry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  taskgrid::v1::AgentBatch batch;
  if (!batch.ParseFromArray(data, static_cast<int>(size))) return 0;
  taskgrid::FuzzRegistry f;
  std::string ids[2];
  for (std::string& id : ids) {
    taskgrid::v1::SubmitRequest req;
    req.mutable_spec()->mutable_shell()->set_command("true");
    auto r = f.registry.Submit(req);
    if (!r.ok()) __builtin_trap();
    id = r->task().id();
  }
  taskgrid::v1::TaskStatus final_status[2] = {};
  for (taskgrid::v1::AgentMessage m : batch.messages()) {
    // Aim most messages at the real tasks so fencing and offsets get work.
    auto retarget = [&](std::string* task_id) {
      if (!task_id->empty() && (*task_id)[0] < 'm') *task_id = ids[(*task_id)[0] & 1];
    };
    if (m.has_started()) retarget(m.mutable_started()->mutable_task_id());
    if (m.has_output()) retarget(m.mutable_output()->mutable_task_id());
    if (m.has_progress()) retarget(m.mutable_progress()->mutable_task_id());
    if (m.has_finished()) retarget(m.mutable_finished()->mutable_task_id());
    f.registry.HandleAgentMessage("fuzz-agent", f.link.get(), m);
    for (int i = 0; i < 2; ++i) {
      const auto status = f.registry.Get(ids[i])->status();
      if (final_status[i] != 0 && status != final_status[i]) __builtin_trap();
      if (taskgrid::IsFinal(status)) final_status[i] = status;
    }
  }
  f.clock.Advance(absl::Minutes(1));
  f.registry.Tick();
  return 0;
}
