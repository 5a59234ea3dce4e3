#include "services/agent/host_sampler.h"

#include <sys/statvfs.h>

#include <fstream>
#include <sstream>

namespace taskgrid {
namespace {

double Percent(double part, double whole) { return whole > 0 ? 100.0 * part / whole : 0; }

}  // namespace

HostSampler::HostSampler(std::string proc_root, std::string disk_path)
    : proc_(std::move(proc_root)), disk_path_(std::move(disk_path)) {
  uint32_t cpus;
  ReadCpu(busy_, total_, cpus);
}

bool HostSampler::ReadCpu(uint64_t& busy, uint64_t& total, uint32_t& cpus) const {
  std::ifstream in(proc_ + "/stat");
  std::string line;
  bool found = false;
  cpus = 0;
  while (std::getline(in, line)) {
    if (line.rfind("cpu ", 0) == 0) {
      // user nice system idle iowait irq softirq steal (guest time is in user).
      std::istringstream fields(line.substr(4));
      uint64_t v[8] = {0};
      for (uint64_t& x : v) fields >> x;
      total = 0;
      for (uint64_t x : v) total += x;
      busy = total - v[3] - v[4];
      found = true;
    } else if (line.rfind("cpu", 0) == 0) {
      ++cpus;
    }
  }
  return found;
}

v1::HostMetrics HostSampler::Sample() {
  v1::HostMetrics m;
  uint64_t busy = 0, total = 0;
  uint32_t cpus = 0;
  if (ReadCpu(busy, total, cpus)) {
    if (total > total_ && busy >= busy_) {
      m.set_cpu_percent(Percent(static_cast<double>(busy - busy_),
                                static_cast<double>(total - total_)));
    }
    busy_ = busy;
    total_ = total;
    m.set_cpus(cpus);
  }

  std::ifstream meminfo(proc_ + "/meminfo");
  std::string key, unit;
  int64_t kb = 0, total_kb = 0, available_kb = 0;
  while (meminfo >> key >> kb) {
    std::getline(meminfo, unit);
    if (key == "MemTotal:") total_kb = kb;
    if (key == "MemAvailable:") available_kb = kb;
  }
  m.set_memory_total_bytes(total_kb * 1024);
  m.set_memory_available_bytes(available_kb * 1024);
  m.set_memory_used_bytes((total_kb - available_kb) * 1024);
  m.set_memory_percent(
      Percent(static_cast<double>(total_kb - available_kb), static_cast<double>(total_kb)));

  std::ifstream loadavg(proc_ + "/loadavg");
  double load[3] = {0, 0, 0};
  if (loadavg >> load[0] >> load[1] >> load[2]) {
    m.set_load1(load[0]);
    m.set_load5(load[1]);
    m.set_load15(load[2]);
  }

  std::ifstream status(proc_ + "/self/status");
  for (std::string line; std::getline(status, line);) {
    int64_t rss_kb = 0;
    if (line.rfind("VmRSS:", 0) == 0 && std::istringstream(line.substr(6)) >> rss_kb) {
      m.set_process_rss_bytes(rss_kb * 1024);
      break;
    }
  }

  struct statvfs fs;
  if (statvfs(disk_path_.c_str(), &fs) == 0) {
    const double frsize = static_cast<double>(fs.f_frsize);
    const double size = static_cast<double>(fs.f_blocks) * frsize;
    const double used = size - static_cast<double>(fs.f_bfree) * frsize;
    const double available = static_cast<double>(fs.f_bavail) * frsize;
    m.set_disk_path(disk_path_);
    m.set_disk_total_bytes(static_cast<int64_t>(size));
    m.set_disk_used_bytes(static_cast<int64_t>(used));
    m.set_disk_percent(Percent(used, used + available));  // As df counts it.
  }
  return m;
}

}  // namespace taskgrid
