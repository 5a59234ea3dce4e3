// A throwaway PostgreSQL server for tests: initdb into a fresh directory (as
// the postgres user when running as root, since initdb refuses root), started
// on a free loopback port, stopped and deleted on destruction.
#ifndef TASKGRID_SERVICES_COMMON_TESTING_POSTGRES_SERVER_H_
#define TASKGRID_SERVICES_COMMON_TESTING_POSTGRES_SERVER_H_

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "services/common/testing/test_util.h"

namespace taskgrid {

class PostgresServer {
 public:
  // Null (with the reason on stderr) when the server cannot be started.
  static std::unique_ptr<PostgresServer> Start() {
    std::unique_ptr<PostgresServer> pg(new PostgresServer());
    char tmpl[] = "/tmp/taskgrid_pg_XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return nullptr;
    pg->dir_ = tmpl;
    const std::string as = geteuid() == 0 ? "runuser -u postgres -- " : "";
    if (geteuid() == 0) pg->Run(absl::StrCat("chown postgres ", pg->dir_));
    const std::string bin = BinDir();
    bool started = pg->Run(absl::StrCat(as, bin, "/initdb -D ", pg->dir_,
                                        "/data --auth=trust -U postgres --no-sync >", pg->dir_,
                                        "/initdb.log 2>&1"));
    // The free port is only free when picked: any outgoing connection of a
    // parallel test may take it before the server binds. Then a fresh one.
    for (int attempt = 1; started; ++attempt) {
      pg->port_ = FreeLoopbackPort();
      if (pg->Run(absl::StrCat(as, bin, "/pg_ctl -D ", pg->dir_, "/data -l ", pg->dir_,
                               "/server.log -w -o \"-c listen_addresses=127.0.0.1 -p ", pg->port_,
                               " -k ", pg->dir_, " -c fsync=off\" start >/dev/null"))) {
        break;
      }
      started = attempt < 5 && pg->LogSays("Address already in use");
    }
    if (!started) {
      std::fprintf(stderr, "PostgreSQL did not start; see %s\n", pg->dir_.c_str());
      pg->dir_.clear();  // Keep the logs.
      return nullptr;
    }
    pg->as_ = as;
    pg->running_ = true;
    return pg;
  }

  ~PostgresServer() {
    if (running_) {
      Run(absl::StrCat(as_, BinDir(), "/pg_ctl -D ", dir_, "/data -m immediate stop >/dev/null"));
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // A libpq URI for `database` on this server.
  std::string Uri(const std::string& database = "postgres") const {
    return absl::StrCat("postgres://postgres@127.0.0.1:", port_, "/", database);
  }

  bool CreateDatabase(const std::string& name) const {
    return Run(absl::StrCat("psql -q -h 127.0.0.1 -p ", port_,
                            " -U postgres -d postgres -c 'CREATE DATABASE \"", name,
                            "\"' >/dev/null"));
  }

 private:
  PostgresServer() = default;

  static std::string BinDir() {
    for (const char* v : {"17", "16", "15", "14", "13"}) {
      const std::string dir = absl::StrCat("/usr/lib/postgresql/", v, "/bin");
      if (std::filesystem::exists(dir + "/initdb")) return dir;
    }
    return "/usr/lib/postgresql/15/bin";
  }

  bool Run(const std::string& command) const { return std::system(command.c_str()) == 0; }

  bool LogSays(const std::string& text) const {
    std::ifstream log(dir_ + "/server.log");
    const std::string all((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    return all.find(text) != std::string::npos;
  }

  std::string dir_;
  std::string as_;
  int port_ = 0;
  bool running_ = false;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_TESTING_POSTGRES_SERVER_H_
