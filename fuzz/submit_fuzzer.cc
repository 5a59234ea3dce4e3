// Arbitrary SubmitBatch requests (protobuf bytes) into the registry: every
// request is accepted or refused on its own, nothing crashes, and the
// registry keeps answering reads.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_init.h"
#include "fuzz/fuzz_registry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  taskgrid::v1::SubmitBatchRequest batch;
  if (!batch.ParseFromArray(data, static_cast<int>(size))) return 0;
  taskgrid::FuzzRegistry f;
  auto out = f.registry.SubmitBatch(batch);
  if (out.ok() && out->results_size() != batch.requests_size()) __builtin_trap();
  f.clock.Advance(absl::Hours(1));
  f.registry.Tick();
  (void)f.registry.List(taskgrid::v1::ListRequest());
  (void)f.registry.Stats();
  return 0;
}
