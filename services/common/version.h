// The taskgrid release, reported in Hello, build_info gauges and --version.
#ifndef TASKGRID_SERVICES_COMMON_VERSION_H_
#define TASKGRID_SERVICES_COMMON_VERSION_H_

namespace taskgrid {
inline constexpr char kVersion[] = "0.1.0";
}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_VERSION_H_
