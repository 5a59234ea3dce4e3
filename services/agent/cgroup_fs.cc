#include "services/agent/cgroup_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace taskgrid::cgroup_fs {
namespace {

// Field 22 of /proc/<pid>/stat: when the process started, in clock ticks
// since boot.
std::string StartTime(pid_t pid) {
  const std::string stat = ReadSmallFile(absl::StrCat("/proc/", pid, "/stat")).value_or("");
  const size_t comm_end = stat.rfind(')');  // comm may hold spaces
  if (comm_end == std::string::npos) return "";
  const std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(stat).substr(comm_end + 2), ' ');
  return fields.size() > 19 ? std::string(fields[19]) : "";
}

struct Mount {
  std::string point;  // where it is mounted
  std::string root;   // the part of the hierarchy mounted there
};

// The first cgroup file system of `type` whose super options `accept`,
// from /proc/self/mountinfo.
template <typename Accept>
std::optional<Mount> FindMount(absl::string_view type, Accept accept) {
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    // id parent dev root mountpoint options [optional...] - fstype source super-options
    const size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    const std::vector<std::string> after = absl::StrSplit(line.substr(dash + 3), ' ');
    if (after.size() < 3 || after[0] != type || !accept(after[2])) continue;
    const std::vector<std::string> before = absl::StrSplit(line.substr(0, dash), ' ');
    if (before.size() >= 5) return Mount{before[4], before[3]};
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> ReadSmallFile(const std::string& path, int fd) {
  UniqueFd opened;
  if (fd < 0) {
    opened = UniqueFd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    fd = opened.get();
  }
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = pread(fd, buf, sizeof buf, static_cast<off_t>(text.size()));
    if (n < 0) return std::nullopt;
    text.append(buf, static_cast<size_t>(n));
    // Seq files hand out whole records: a short read is the end.
    if (static_cast<size_t>(n) < sizeof buf) return text;
  }
}

absl::Status WriteFile(const std::string& dir, const char* file, absl::string_view text) {
  const std::string path = absl::StrCat(dir, "/", file);
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoError(absl::StrCat("open ", path), errno);
  if (write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return ErrnoError(absl::StrCat("write ", text, " to ", path), errno);
  }
  return absl::OkStatus();
}

UniqueFd OpenIn(const std::string& dir, const char* file, int flags) {
  return UniqueFd(open(absl::StrCat(dir, "/", file).c_str(), flags | O_CLOEXEC));
}

std::string V2Mount() {
  const std::optional<Mount> mount = FindMount("cgroup2", [](absl::string_view) { return true; });
  return mount ? mount->point : "";
}

std::string OwnV2Path() {
  std::ifstream in("/proc/self/cgroup");
  for (std::string line; std::getline(in, line);) {
    if (absl::StartsWith(line, "0::")) return line.substr(3);
  }
  return "/";
}

std::string OwnV1Dir(absl::string_view controller) {
  const std::optional<Mount> mount = FindMount("cgroup", [&](absl::string_view options) {
    for (absl::string_view option : absl::StrSplit(options, ',')) {
      if (option == controller) return true;
    }
    return false;
  });
  if (!mount) return "";
  // "4:memory:/path", or "1:cpu,cpuacct:/path" for a shared hierarchy.
  std::ifstream in("/proc/self/cgroup");
  for (std::string line; std::getline(in, line);) {
    const std::vector<std::string> fields = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (fields.size() != 3) continue;
    for (absl::string_view c : absl::StrSplit(fields[1], ',')) {
      if (c != controller) continue;
      // Without a cgroup namespace a container mounts only its part of the
      // hierarchy: the path is then from that part.
      absl::string_view own = fields[2];
      if (mount->root != "/" && !absl::ConsumePrefix(&own, mount->root)) return "";
      return own == "/" ? mount->point : absl::StrCat(mount->point, own);
    }
  }
  return "";
}

std::string SafeName(absl::string_view name) {
  std::string out(name);
  for (char& c : out) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') {
      c = '_';
    }
  }
  return out.empty() ? std::string("_") : out;
}

std::string RunName(pid_t pid) { return absl::StrCat("run-", pid, "-", StartTime(pid)); }

bool RunIsLive(absl::string_view name) {
  const std::vector<absl::string_view> parts = absl::StrSplit(name, '-');
  pid_t pid = 0;
  if (parts.size() != 3 || parts[0] != "run" || !absl::SimpleAtoi(parts[1], &pid)) return false;
  return RunName(pid) == name;
}

absl::Status MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoError(absl::StrCat("mkdir ", path), errno);
  }
  return absl::OkStatus();
}

std::vector<std::string> SubDirs(const std::string& path) {
  std::vector<std::string> names;
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return names;
  while (const dirent* e = readdir(dir)) {
    if (e->d_type == DT_DIR && e->d_name[0] != '.') names.emplace_back(e->d_name);
  }
  closedir(dir);
  return names;
}

}  // namespace taskgrid::cgroup_fs
