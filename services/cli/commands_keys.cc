// keys: create, list and revoke the keys in a coordinator keys file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "services/cli/commands.h"
#include "services/common/auth.h"

namespace taskgrid::cli {
namespace {

// The keys file's lines, with their line breaks (none when it is missing).
std::vector<std::string> ReadLines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  if (!in) return lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line + "\n");
  return lines;
}

// Replaces `path` whole, keeping its mode and owner (a new file is 0600:
// hashes only, but nobody else's business).
absl::Status WriteLines(const std::string& path, const std::vector<std::string>& lines) {
  const std::string tmp = path + ".tmp";
  struct stat old {};
  const bool existed = ::stat(path.c_str(), &old) == 0;
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError("--file: cannot write " + tmp);
  const std::string all = absl::StrJoin(lines, "");
  bool ok = ::write(fd, all.data(), all.size()) == static_cast<ssize_t>(all.size());
  if (ok && existed) {
    ok = ::fchmod(fd, old.st_mode & 07777) == 0 &&
         (::fchown(fd, old.st_uid, old.st_gid) == 0 || old.st_uid == ::geteuid());
  }
  ok = ok && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return absl::UnavailableError("--file: cannot write " + path);
  }
  return absl::OkStatus();
}

}  // namespace

int CmdKeys(Context&, const ParsedArgs& a) {
  const std::string op = a.positional.empty() ? "" : a.positional[0];
  const std::string path = a.Get("file");
  if (path.empty()) return Usage("keys: --file is required (the coordinator's --keys_file)");
  std::vector<std::string> lines = ReadLines(path);
  if (op == "list") {
    auto keys = ApiKeys::LoadFile(path);
    if (!keys.ok()) return Fail(std::string(keys.status().message()));
    for (const std::string& line : lines) {
      auto key = ParseKeyLine(absl::StripAsciiWhitespace(line));
      if (!key.ok()) continue;  // Comments and blank lines.
      std::string shown = key->ToLine();
      absl::StrReplaceAll({{" sha256:" + key->sha256, ""}}, &shown);
      std::cout << shown << "\n";
    }
    return 0;
  }
  if (op == "revoke") {
    if (a.positional.size() != 2) return Usage("keys revoke: give the key's name");
    std::vector<std::string> kept;
    bool found = false;
    for (const std::string& line : lines) {
      auto key = ParseKeyLine(absl::StripAsciiWhitespace(line));
      if (key.ok() && key->name == a.positional[1]) {
        found = true;
      } else {
        kept.push_back(line);
      }
    }
    if (!found) return Fail("keys revoke: no key named " + a.positional[1] + " in " + path);
    if (absl::Status s = WriteLines(path, kept); !s.ok()) return Fail(std::string(s.message()));
    std::cerr << "revoked " << a.positional[1] << "; SIGHUP the coordinator to apply it\n";
    return 0;
  }
  if (op != "create") return Usage("keys: want create, list or revoke");
  const std::string name = a.Get("name");
  if (name.empty() || absl::StrContains(name, ' ')) {
    return Usage("keys create: --name is required (one word, used in the audit log)");
  }
  const std::string secret = NewApiKeySecret();
  std::string line = absl::StrCat(name, " sha256:", Sha256Hex(secret), " scopes=", a.Get("scope"));
  for (const auto& [flag, option] :
       std::vector<std::pair<std::string, std::string>>{{"selector", "selector"},
                                                        {"types", "types"},
                                                        {"max-running", "max_running"},
                                                        {"submit-rate", "submit_rate"},
                                                        {"max-runtime", "max_runtime"},
                                                        {"max-output", "max_output"},
                                                        {"max-streams", "max_streams"}}) {
    if (a.Has(flag)) absl::StrAppend(&line, " ", option, "=", a.Get(flag));
  }
  auto key = ParseKeyLine(line);
  if (!key.ok()) {
    std::string why(key.status().message());
    absl::StrReplaceAll(
        {{"scopes:", "--scope:"}, {"max_", "--max-"}, {"submit_rate", "--submit-rate"}}, &why);
    return Usage("keys create: " + why);
  }
  if (auto existing = ApiKeys::LoadFile(path);
      !existing.ok() && !absl::IsNotFound(existing.status())) {
    return Fail(std::string(existing.status().message()));
  }
  for (const std::string& other_line : lines) {
    auto other = ParseKeyLine(absl::StripAsciiWhitespace(other_line));
    if (other.ok() && other->name == name) {
      return Usage("keys create: --name " + name + " is taken in " + path);
    }
  }
  lines.push_back(key->ToLine() + "\n");
  if (absl::Status s = WriteLines(path, lines); !s.ok()) return Fail(std::string(s.message()));
  std::cout << secret << "\n";
  std::cerr << "key " << name << " added to " << path
            << " (only its hash is kept: store the key now); SIGHUP the coordinator to load it\n";
  return 0;
}

}  // namespace taskgrid::cli
