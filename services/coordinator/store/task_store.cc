#include "services/coordinator/store/task_store.h"

namespace taskgrid {

std::string EventRecord(const v1::TaskEvent& event, int64_t& log_bytes) {
  if (event.type() != v1::EVENT_TYPE_TASK_LOG) {
    log_bytes = 0;
    return event.SerializeAsString();
  }
  v1::TaskEvent bare;
  bare.set_cursor(event.cursor());
  bare.set_type(event.type());
  *bare.mutable_time() = event.time();
  bare.set_task_id(event.task_id());
  bare.set_agent_id(event.agent_id());
  bare.set_run_id(event.run_id());
  bare.set_attempt(event.attempt());
  bare.mutable_output()->set_stream(event.output().stream());
  bare.mutable_output()->set_offset(event.output().offset());
  bare.mutable_output()->set_dropped_bytes(event.output().dropped_bytes());
  log_bytes = static_cast<int64_t>(event.output().data().size());
  return bare.SerializeAsString();
}

bool DecodeTaskRow(uint64_t seq, absl::string_view state, const absl::string_view* spec,
                   StoredState::Task& out) {
  out.seq = seq;
  out.spec_stored = spec != nullptr;
  return out.task.ParseFromArray(state.data(), static_cast<int>(state.size())) &&
         (spec == nullptr ||
          out.task.mutable_spec()->ParseFromArray(spec->data(), static_cast<int>(spec->size())));
}

}  // namespace taskgrid
