# taskgrid_warnings: the warning set every first-party target links PRIVATE.
add_library(taskgrid_warnings INTERFACE)
target_compile_options(taskgrid_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wno-unused-parameter
  $<$<CXX_COMPILER_ID:Clang>:-Wthread-safety>
  $<$<BOOL:${TASKGRID_WERROR}>:-Werror>)
