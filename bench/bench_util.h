// What every benchmark driver needs: start a service binary, read the port it
// bound, and read a process's CPU time and resident memory from /proc.
#ifndef TASKGRID_BENCH_BENCH_UTIL_H_
#define TASKGRID_BENCH_BENCH_UTIL_H_

#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

extern char** environ;

namespace taskgrid::bench {

// Starts `args` (looked up in PATH); stdout goes to `out` when given. Exits
// the benchmark when it cannot.
inline pid_t Spawn(std::vector<std::string> args, const std::string& out = "") {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (!out.empty())
    posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  if (posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ) != 0) {
    std::fprintf(stderr, "cannot start %s\n", argv[0]);
    std::exit(1);
  }
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

// The first port in a service's --port_file, waiting up to 10 s for it.
inline int ReadPort(const std::string& file) {
  int port = 0;
  for (int i = 0; i < 400 && port == 0; ++i) {
    std::ifstream(file) >> port;
    if (port == 0) absl::SleepFor(absl::Milliseconds(25));
  }
  return port;
}

inline int64_t RssBytes(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string key;
  int64_t kb = 0;
  while (in >> key) {
    if (key == "VmRSS:") {
      in >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

// User + system CPU seconds a process has used so far.
inline double CpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return 0;
  std::vector<std::string> f = absl::StrSplit(stat.substr(paren + 2), ' ');
  if (f.size() < 13) return 0;
  return (std::stod(f[11]) + std::stod(f[12])) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace taskgrid::bench

#endif  // TASKGRID_BENCH_BENCH_UTIL_H_
