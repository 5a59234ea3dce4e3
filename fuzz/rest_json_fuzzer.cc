// Arbitrary JSON bodies through the gateway's JSON decoding into the
// messages its REST routes accept, and back out: errors, never crashes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/fuzz_init.h"
#include "services/gateway/json.h"
#include "taskgrid/v1/task_service.pb.h"

using taskgrid::gateway::FromJson;
using taskgrid::gateway::JsonString;
using taskgrid::gateway::ToJson;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string json(reinterpret_cast<const char*>(data), size);
  taskgrid::v1::TaskSpec spec;
  if (FromJson(json, &spec).ok()) (void)ToJson(spec);
  taskgrid::v1::SubmitRequest submit;
  if (FromJson(json, &submit).ok()) (void)ToJson(submit);
  taskgrid::v1::ListRequest list;
  (void)FromJson(json, &list);
  (void)JsonString(json);
  return 0;
}
