// Included once by each fuzz target: silences the logs that would otherwise
// print for every rejected input.
#ifndef TASKGRID_FUZZ_FUZZ_INIT_H_
#define TASKGRID_FUZZ_FUZZ_INIT_H_

#include <google/protobuf/stubs/logging.h>
#include <spdlog/spdlog.h>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  spdlog::set_level(spdlog::level::off);
  return 0;
}

#endif  // TASKGRID_FUZZ_FUZZ_INIT_H_
