#include "services/common/task_resources.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace taskgrid {

v1::Resources RequestedResources(const v1::TaskSpec& spec) {
  v1::Resources r = spec.resources();
  if (spec.has_docker()) {
    const v1::DockerSpec& d = spec.docker();
    if (r.memory_bytes() == 0) r.set_memory_bytes(d.memory_bytes());
    if (r.cpus() == 0) r.set_cpus(d.cpus());
    if (r.pids() == 0) r.set_pids(d.pids_limit());
  }
  return r;
}

bool AsksForResources(const v1::TaskSpec& spec) {
  if (spec.has_resources()) {
    const v1::Resources& r = spec.resources();
    if (r.memory_bytes() != 0 || r.cpus() != 0 || r.pids() != 0) return true;
  }
  if (!spec.has_docker()) return false;
  const v1::DockerSpec& d = spec.docker();
  return d.memory_bytes() != 0 || d.cpus() != 0 || d.pids_limit() != 0;
}

bool Reserves(const v1::Resources& r) { return r.memory_bytes() > 0 || r.cpus() > 0; }

void AddReservation(v1::Resources& into, const v1::Resources& r) {
  into.set_memory_bytes(into.memory_bytes() + r.memory_bytes());
  into.set_cpus(into.cpus() + r.cpus());
}

namespace {

std::string Memory(int64_t bytes) { return absl::StrCat(FormatBytes(bytes), " of memory"); }
std::string Cpus(double cpus) { return absl::StrFormat("%g %s", cpus, cpus == 1 ? "CPU" : "CPUs"); }

}  // namespace

std::optional<Shortage> Shortfall(const v1::Resources& request, const v1::Resources& available) {
  if (request.memory_bytes() > available.memory_bytes()) {
    return Shortage{Memory(request.memory_bytes()), Memory(available.memory_bytes())};
  }
  // A request of 0.1 CPU fits in what nine such requests left of one CPU,
  // whatever the rounding of their sum.
  if (request.cpus() > available.cpus() + 1e-9) {
    return Shortage{Cpus(request.cpus()), Cpus(available.cpus())};
  }
  return std::nullopt;
}

v1::Resources Remaining(const v1::Resources& available, const v1::Resources& used) {
  v1::Resources left;
  left.set_memory_bytes(std::max<int64_t>(0, available.memory_bytes() - used.memory_bytes()));
  left.set_cpus(std::max(0.0, available.cpus() - used.cpus()));
  return left;
}

std::string Describe(const v1::Resources& r) {
  std::string out;
  if (r.memory_bytes() > 0) out = Memory(r.memory_bytes());
  if (r.cpus() > 0) absl::StrAppend(&out, out.empty() ? "" : " and ", Cpus(r.cpus()));
  return out;
}

std::string OutOfMemoryReason(int64_t limit_bytes) {
  return absl::StrCat("out of memory: the kernel killed a process of the task at its ",
                      FormatBytes(limit_bytes), " memory limit");
}

std::string FormatBytes(int64_t bytes) {
  constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return absl::StrCat(bytes, " bytes");
  double value = static_cast<double>(bytes) / 1024;
  int unit = 0;
  while (value >= 1024 && unit < 3) {
    value /= 1024;
    ++unit;
  }
  // Three significant digits, and never an exponent: "1.5 GiB", "2048 TiB".
  return value >= 999.5 ? absl::StrFormat("%.0f %s", value, kUnits[unit])
                       : absl::StrFormat("%.3g %s", value, kUnits[unit]);
}

}  // namespace taskgrid
