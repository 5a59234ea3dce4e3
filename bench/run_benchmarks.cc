// Runs every benchmark program beside this one several times and merges their
// figures: one JSON document on stdout (median, min and max of each figure,
// the ceiling's median, the ratio, whether the goal is met) and a short
// table on stderr. The machines are shared and noisy, so medians.
//
//   run_benchmarks [--runs=3] [--only=throughput,control_plane,...]
//                  [--compare=bench/baseline.json] [--readme=README.md]
//
// --compare prints every figure more than 15% worse than in a document this
// program printed before (the committed baseline); --readme rewrites the
// table between the file's figures markers from this run.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iterator>
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
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_util.h"

ABSL_FLAG(int, runs, 3, "Runs of each benchmark program.");
ABSL_FLAG(std::string, only, "", "Comma-separated benchmark names to run (default: all).");
ABSL_FLAG(std::string, compare, "",
          "A document printed by an earlier run (bench/baseline.json): figures more than 15% "
          "worse than there are listed.");
ABSL_FLAG(std::string, readme, "",
          "A Markdown file whose table between <!-- figures:begin --> and <!-- figures:end --> "
          "is replaced by this run's.");

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

// One merged figure, as printed and as read back from a baseline.
struct Figure {
  std::string name, unit, goal_text, met;
  double median = 0, lo = 0, hi = 0, ceiling = 0, ratio = 0;
  bool lower_is_better = false;
};

constexpr double kRegression = 0.15;
constexpr char kBegin[] = "<!-- figures:begin -->";
constexpr char kEnd[] = "<!-- figures:end -->";

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

// Figures of a document this program printed, by name; empty (with a
// message) when it cannot be read.
std::map<std::string, Figure> ReadBaseline(const std::string& path, std::string& when) {
  std::map<std::string, Figure> out;
  std::ifstream in(path);
  const std::string json((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  google::protobuf::Struct doc;
  if (json.empty() || !google::protobuf::util::JsonStringToMessage(json, &doc).ok()) {
    std::fprintf(stderr, "--compare: cannot read %s as a run_benchmarks document\n",
                 path.c_str());
    return out;
  }
  if (doc.fields().count("date")) when = doc.fields().at("date").string_value();
  const auto figures = doc.fields().find("figures");
  if (figures == doc.fields().end()) {
    std::fprintf(stderr, "--compare: %s has no figures\n", path.c_str());
    return out;
  }
  for (const auto& v : figures->second.list_value().values()) {
    const auto& f = v.struct_value().fields();
    // A field the document lacks reads as empty or zero, and is skipped.
    auto field = [&f](const char* name) {
      auto it = f.find(name);
      return it == f.end() ? google::protobuf::Value() : it->second;
    };
    const std::string name = field("name").string_value();
    if (name.empty() || field("median").number_value() <= 0) continue;
    Figure& fig = out[name];
    fig.name = name;
    fig.unit = field("unit").string_value();
    fig.median = field("median").number_value();
    fig.ceiling = field("ceiling").number_value();
    fig.lower_is_better = field("lower_is_better").bool_value();
  }
  return out;
}

// How much worse `now` is than `before` (0.2 = 20% worse; negative: better).
double Worse(double before, double now, bool lower_is_better) {
  if (before <= 0 || now <= 0) return 0;
  return lower_is_better ? now / before - 1 : before / now - 1;
}

std::string CompareReport(const std::vector<Figure>& figures, const std::string& path) {
  std::string when;
  const std::map<std::string, Figure> base = ReadBaseline(path, when);
  if (base.empty()) return "";
  std::string worse, better;
  int compared = 0, regressions = 0;
  for (const Figure& f : figures) {
    auto it = base.find(f.name);
    if (it == base.end()) continue;
    ++compared;
    const Figure& b = it->second;
    const double w = Worse(b.median, f.median, f.lower_is_better);
    // The ceiling beside it says whether the machine, not the code, changed.
    const std::string line = absl::StrFormat(
        "%-52s %12s -> %-12s %+6.0f%%%s\n", f.name, Num(b.median), Num(f.median),
        (f.median / b.median - 1) * 100,
        f.ceiling > 0 && b.ceiling > 0
            ? absl::StrFormat("  (ceiling %+.0f%%)", (f.ceiling / b.ceiling - 1) * 100)
            : "");
    if (w > kRegression) {
      ++regressions;
      worse += line;
    } else if (w < -kRegression) {
      better += line;
    }
  }
  return absl::StrCat("\ncompared with ", path, when.empty() ? "" : absl::StrCat(" (", when, ")"),
                      ": ", compared, " figures, ", regressions, " worse by more than ",
                      kRegression * 100, "%\n", worse.empty() ? "" : "worse:\n", worse,
                      better.empty() ? "" : "better by more than 15%:\n", better);
}

std::string MarkdownTable(const std::vector<Figure>& figures) {
  std::string t =
      "| figure | median [min–max] | ceiling | ratio | goal | met |\n"
      "| --- | --- | --- | --- | --- | --- |\n";
  for (const Figure& f : figures) {
    absl::StrAppend(&t, "| `", f.name, "` | ", Num(f.median), " ", f.unit, " [", Num(f.lo), "–",
                    Num(f.hi), "] | ", f.ceiling > 0 ? Num(f.ceiling) : "", " | ",
                    f.ratio > 0 ? Num(f.ratio) : "", " | ", f.goal_text, " | ",
                    f.met == "null" ? "" : (f.met == "true" ? "yes" : "**no**"), " |\n");
  }
  return t;
}

// Replaces what lies between the markers; false when they are missing.
bool RewriteReadme(const std::string& path, const std::string& table) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t begin = text.find(kBegin);
  const size_t end = text.find(kEnd);
  if (begin == std::string::npos || end == std::string::npos || end < begin) return false;
  text = absl::StrCat(text.substr(0, begin + std::strlen(kBegin)), "\n", table,
                      text.substr(end));
  std::ofstream(path) << text;
  return true;
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

  std::vector<Figure> figures;
  for (const std::string& name : order) {
    const Series& s = series[name];
    Figure f;
    f.name = name;
    f.unit = s.unit;
    f.lower_is_better = s.lower_is_better;
    f.median = Percentile(s.values, 0.5);
    f.lo = *std::min_element(s.values.begin(), s.values.end());
    f.hi = *std::max_element(s.values.begin(), s.values.end());
    f.ceiling = Percentile(s.ceilings, 0.5);
    if (f.ceiling > 0 && f.median > 0) {
      f.ratio = s.lower_is_better ? f.ceiling / f.median : f.median / f.ceiling;
    }
    f.met = "null";
    if (s.goal > 0) {
      f.met = (s.lower_is_better ? f.median <= s.goal : f.median >= s.goal) ? "true" : "false";
      f.goal_text = absl::StrCat(s.lower_is_better ? "<= " : ">= ", Num(s.goal));
    } else if (s.goal_ratio > 0 && f.ceiling > 0) {
      f.met = f.ratio >= s.goal_ratio ? "true" : "false";
      f.goal_text = absl::StrCat("ratio ", Num(s.goal_ratio));
    }
    figures.push_back(f);
  }

  std::vector<std::string> rows;
  std::string table = absl::StrFormat("%-44s %28s %12s %7s %12s %s\n", "figure", "median [min-max]",
                                      "ceiling", "ratio", "goal", "met");
  for (const Figure& f : figures) {
    const Series& s = series[f.name];
    rows.push_back(absl::StrFormat(
        "    {\"benchmark\": \"%s\", \"name\": \"%s\", \"unit\": \"%s\", \"median\": %.6g, "
        "\"min\": %.6g, \"max\": %.6g, \"runs\": %d, \"ceiling\": %.6g, \"ratio\": %.4g, "
        "\"goal\": %.6g, \"goal_ratio\": %.6g, \"lower_is_better\": %s, \"met\": %s}",
        s.benchmark, f.name, f.unit, f.median, f.lo, f.hi, s.values.size(), f.ceiling, f.ratio,
        s.goal, s.goal_ratio, f.lower_is_better ? "true" : "false", f.met));
    absl::StrAppendFormat(&table, "%-44s %28s %12s %7s %12s %s\n", f.name,
                          absl::StrCat(Num(f.median), " [", Num(f.lo), "-", Num(f.hi), "] ", f.unit),
                          f.ceiling > 0 ? Num(f.ceiling) : "", f.ratio > 0 ? Num(f.ratio) : "",
                          f.goal_text, f.met == "null" ? "" : (f.met == "true" ? "yes" : "NO"));
  }
  std::printf("{\n  \"date\": \"%s\",\n  \"machine\": %s,\n  \"runs\": %d,\n  \"figures\": [\n%s\n  ]\n}\n",
              absl::FormatTime("%Y-%m-%d", absl::Now(), absl::UTCTimeZone()).c_str(), Machine().c_str(),
              absl::GetFlag(FLAGS_runs), absl::StrJoin(rows, ",\n").c_str());
  std::fprintf(stderr, "\n%s", table.c_str());
  if (const std::string base = absl::GetFlag(FLAGS_compare); !base.empty()) {
    std::fprintf(stderr, "%s", CompareReport(figures, base).c_str());
  }
  if (const std::string readme = absl::GetFlag(FLAGS_readme); !readme.empty()) {
    if (!RewriteReadme(readme, MarkdownTable(figures))) {
      std::fprintf(stderr, "--readme: %s has no %s ... %s markers\n", readme.c_str(), kBegin,
                   kEnd);
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace taskgrid::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return taskgrid::bench::Main();
}
