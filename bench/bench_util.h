// What every benchmark driver needs: start a service binary, read the port it
// bound, read a process's CPU time, context switches and resident memory from
// /proc and a counter from its /metrics, and print its figures in the one
// format run_benchmarks merges.
#ifndef TASKGRID_BENCH_BENCH_UTIL_H_
#define TASKGRID_BENCH_BENCH_UTIL_H_

#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "tests/http_test_client.h"

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

// Context switches (voluntary and not) of a process's live threads so far.
inline int64_t ContextSwitches(pid_t pid) {
  int64_t total = 0;
  std::error_code ec;
  for (const auto& task :
       std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"), ec)) {
    std::ifstream in(task.path() / "status");
    std::string key;
    int64_t n = 0;
    while (in >> key) {
      if (key == "voluntary_ctxt_switches:" || key == "nonvoluntary_ctxt_switches:") {
        in >> n;
        total += n;
      }
    }
  }
  return total;
}

// The value of an unlabelled counter on a Prometheus /metrics page at
// 127.0.0.1:`port` (0 when it cannot be read).
inline double ScrapeCounter(int port, const std::string& name) {
  const testing_http::Response r = testing_http::Fetch(port, "GET", "/metrics");
  for (absl::string_view line : absl::StrSplit(r.body, '\n')) {
    if (!absl::ConsumePrefix(&line, name) || !absl::ConsumePrefix(&line, " ")) continue;
    double v = 0;
    if (absl::SimpleAtod(line, &v)) return v;
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

// One measured figure beside the machine's own ceiling for it, measured in
// the same run (0: none applies), and the goal: an absolute value, or a
// ratio to the ceiling (0: none).
struct Figure {
  std::string name;  // "shell.tasks_per_second"
  double value = 0;
  std::string unit;  // "tasks/s", "ms", "B", "MB/s", "us", "s"
  double ceiling = 0;
  double goal = 0;
  double goal_ratio = 0;
  bool lower_is_better = false;
};

// Prints {"benchmark": NAME, "figures": [...]} on stdout.
inline void PrintFigures(const std::string& benchmark, const std::vector<Figure>& figures) {
  std::vector<std::string> rows;
  for (const Figure& f : figures) {
    rows.push_back(absl::StrFormat(
        "    {\"name\": \"%s\", \"value\": %.6g, \"unit\": \"%s\", \"ceiling\": %.6g, "
        "\"goal\": %.6g, \"goal_ratio\": %.6g, \"lower_is_better\": %s}",
        f.name, f.value, f.unit, f.ceiling, f.goal, f.goal_ratio,
        f.lower_is_better ? "true" : "false"));
  }
  std::printf("{\n  \"benchmark\": \"%s\",\n  \"figures\": [\n%s\n  ]\n}\n", benchmark.c_str(),
              absl::StrJoin(rows, ",\n").c_str());
  std::fflush(stdout);
}

}  // namespace taskgrid::bench

#endif  // TASKGRID_BENCH_BENCH_UTIL_H_
