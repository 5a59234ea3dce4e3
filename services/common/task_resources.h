// A task's resources: what it asks for, whether that fits what an agent
// offers, and how to say it in words. Placement, the agent and the waiting
// reasons all use these, so a request means one thing everywhere.
#ifndef TASKGRID_SERVICES_COMMON_TASK_RESOURCES_H_
#define TASKGRID_SERVICES_COMMON_TASK_RESOURCES_H_

#include <cstdint>
#include <optional>
#include <string>

#include "taskgrid/v1/task.pb.h"

namespace taskgrid {

// What `spec` asks for: spec.resources, with a container's own limits
// (spec.docker.memory_bytes, cpus, pids_limit) where it leaves them 0.
v1::Resources RequestedResources(const v1::TaskSpec& spec);

// Whether `spec` asks for any limit or reservation at all: cheap, so that
// tasks that ask for nothing pay nothing more.
bool AsksForResources(const v1::TaskSpec& spec);

// Whether `r` reserves anything (memory or CPUs; pids are a limit only).
bool Reserves(const v1::Resources& r);

// `into` plus what `r` reserves.
void AddReservation(v1::Resources& into, const v1::Resources& r);

// What `request` asks for beyond `available`, in words: the first of
// memory and CPUs that does not fit.
struct Shortage {
  std::string asked;  // "2 GiB of memory"
  std::string has;    // "1 GiB of memory"
};
// nullopt when the request fits.
std::optional<Shortage> Shortfall(const v1::Resources& request, const v1::Resources& available);

// `available` less `used`, never below 0.
v1::Resources Remaining(const v1::Resources& available, const v1::Resources& used);

// What `r` asks for, in words: "2 GiB of memory and 1 CPU".
std::string Describe(const v1::Resources& r);

// Why a task the kernel killed at its memory limit failed, in words.
std::string OutOfMemoryReason(int64_t limit_bytes);

// "512 MiB", "1.5 GiB", "100 bytes".
std::string FormatBytes(int64_t bytes);

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_TASK_RESOURCES_H_
