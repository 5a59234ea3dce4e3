// Runs every benchmark program beside this one several times and merges their
// figures: one JSON document on stdout (median, min and max of each figure,
// the ceiling's median, the ratio, whether the goal is met) and a short
// table on stderr. The machines are shared and noisy, so medians.
//
//   run_benchmarks [--runs=3] [--only=throughput,control_plane,...]
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"

ABSL_FLAG(int, runs, 3, "Runs of each benchmark program.");
ABSL_FLAG(std::string, only, "", "Comma-separated benchmark names to run (default: all).");

namespace taskgrid::bench {
namespace {

// In the order they run; each prints one PrintFigures document.
const std::vector<std::string> kPrograms = {"throughput", "control_plane", "gateway", "recovery",
                                            "scale", "fleet"};

struct Series {
  std::string benchmark, unit;
  std::vector<double> values, ceilings;
  double goal = 0, goal_ratio = 0;
  bool lower_is_better = false;
};

std::string Run(const std::string& program) {
  std::string out;
  std::FILE* p = popen(program.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), p)) > 0;) out.append(buf, n);
  if (pclose(p) != 0) std::fprintf(stderr, "%s exited with an error\n", program.c_str());
  return out;
}

std::string Machine() {
  utsname u{};
  uname(&u);
  std::string cpu = "unknown";
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);) {
    if (absl::StartsWith(line, "model name")) {
      cpu = std::string(absl::StripAsciiWhitespace(line.substr(line.find(':') + 1)));
      break;
    }
  }
  return absl::StrFormat("{\"cores\": %u, \"cpu\": \"%s\", \"kernel\": \"%s %s\"}",
                         std::thread::hardware_concurrency(), cpu, u.sysname, u.release);
}

std::string Num(double v) {
  if (v >= 1000) return absl::StrFormat("%.0f", v);
  if (v >= 10) return absl::StrFormat("%.1f", v);
  return absl::StrFormat("%.3g", v);
}

int Main() {
  const std::filesystem::path dir = std::filesystem::read_symlink("/proc/self/exe").parent_path();
  const std::string only = absl::GetFlag(FLAGS_only);
  std::vector<std::string> order;  // Figure names in first-seen order.
  std::map<std::string, Series> series;
  for (const std::string& name : kPrograms) {
    if (!only.empty() && !absl::StrContains(absl::StrCat(",", only, ","), absl::StrCat(",", name, ","))) {
      continue;
    }
    for (int run = 1; run <= absl::GetFlag(FLAGS_runs); ++run) {
      std::fprintf(stderr, "running %s (%d of %d)\n", name.c_str(), run, absl::GetFlag(FLAGS_runs));
      const std::string json = Run((dir / (name + "_bench")).string());
      google::protobuf::Struct doc;
      if (!google::protobuf::util::JsonStringToMessage(json, &doc).ok()) {
        std::fprintf(stderr, "%s printed no figures\n", name.c_str());
        continue;
      }
      for (const auto& v : doc.fields().at("figures").list_value().values()) {
        const auto& f = v.struct_value().fields();
        const std::string figure = f.at("name").string_value();
        Series& s = series[figure];
        if (s.values.empty()) order.push_back(figure);
        s.benchmark = name;
        s.unit = f.at("unit").string_value();
        s.values.push_back(f.at("value").number_value());
        s.ceilings.push_back(f.at("ceiling").number_value());
        s.goal = f.at("goal").number_value();
        s.goal_ratio = f.at("goal_ratio").number_value();
        s.lower_is_better = f.at("lower_is_better").bool_value();
      }
    }
  }

  std::vector<std::string> rows;
  std::string table = absl::StrFormat("%-44s %28s %12s %7s %12s %s\n", "figure", "median [min-max]",
                                      "ceiling", "ratio", "goal", "met");
  for (const std::string& name : order) {
    const Series& s = series[name];
    const double median = Percentile(s.values, 0.5);
    const double lo = *std::min_element(s.values.begin(), s.values.end());
    const double hi = *std::max_element(s.values.begin(), s.values.end());
    const double ceiling = Percentile(s.ceilings, 0.5);
    double ratio = 0;
    if (ceiling > 0 && median > 0) ratio = s.lower_is_better ? ceiling / median : median / ceiling;
    std::string met = "null", goal_text = "";
    if (s.goal > 0) {
      met = (s.lower_is_better ? median <= s.goal : median >= s.goal) ? "true" : "false";
      goal_text = absl::StrCat(s.lower_is_better ? "<= " : ">= ", Num(s.goal));
    } else if (s.goal_ratio > 0 && ceiling > 0) {
      met = ratio >= s.goal_ratio ? "true" : "false";
      goal_text = absl::StrCat("ratio ", Num(s.goal_ratio));
    }
    rows.push_back(absl::StrFormat(
        "    {\"benchmark\": \"%s\", \"name\": \"%s\", \"unit\": \"%s\", \"median\": %.6g, "
        "\"min\": %.6g, \"max\": %.6g, \"runs\": %d, \"ceiling\": %.6g, \"ratio\": %.4g, "
        "\"goal\": %.6g, \"goal_ratio\": %.6g, \"met\": %s}",
        s.benchmark, name, s.unit, median, lo, hi, s.values.size(), ceiling, ratio, s.goal,
        s.goal_ratio, met));
    absl::StrAppendFormat(&table, "%-44s %28s %12s %7s %12s %s\n", name,
                          absl::StrCat(Num(median), " [", Num(lo), "-", Num(hi), "] ", s.unit),
                          ceiling > 0 ? Num(ceiling) : "", ratio > 0 ? Num(ratio) : "", goal_text,
                          met == "null" ? "" : (met == "true" ? "yes" : "NO"));
  }
  std::printf("{\n  \"machine\": %s,\n  \"runs\": %d,\n  \"figures\": [\n%s\n  ]\n}\n",
              Machine().c_str(), absl::GetFlag(FLAGS_runs), absl::StrJoin(rows, ",\n").c_str());
  std::fprintf(stderr, "\n%s", table.c_str());
  return 0;
}

}  // namespace
}  // namespace taskgrid::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return taskgrid::bench::Main();
}
