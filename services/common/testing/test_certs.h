// Certificates for TLS tests, made by the openssl command in a fresh temp
// directory: a CA with a good server certificate (localhost, 127.0.0.1) and
// the bad ones a client must refuse (expired, wrong name, wrong CA), agent
// client certificates, and one agent certificate from the wrong CA. EC P-256
// keys keep it to well under a second.
#ifndef TASKGRID_SERVICES_COMMON_TESTING_TEST_CERTS_H_
#define TASKGRID_SERVICES_COMMON_TESTING_TEST_CERTS_H_

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;

namespace taskgrid {

// A certificate and its key, as file paths.
struct CertFiles {
  std::string cert;
  std::string key;
};

// Owns its temp directory (removed on destruction). Not thread-safe.
class TestCerts {
 public:
  // Makes the CAs, the server certificates and one client certificate per
  // id in `agent_ids` (CN=id, DNS:id). kInternal when openssl fails (its
  // output is in dir()/openssl.log).
  static absl::StatusOr<std::unique_ptr<TestCerts>> Make(
      const std::vector<std::string>& agent_ids = {"agent-1"}) {
    std::unique_ptr<TestCerts> c(new TestCerts());
    char tmpl[] = "/tmp/taskgrid-certs-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
    c->dir_ = tmpl;
    if (absl::Status s = c->MakeCa("ca", &c->ca_); !s.ok()) return s;
    if (absl::Status s = c->MakeCa("other-ca", &c->other_ca_); !s.ok()) return s;
    const std::string local = "DNS:localhost,IP:127.0.0.1";
    struct Want {
      CertFiles* out;
      const char* name;
      const CertFiles* ca;
      std::string cn, san;
      bool expired;
    };
    for (const Want& w : std::vector<Want>{
             {&c->server_, "server", &c->ca_, "localhost", local, false},
             {&c->expired_server_, "expired", &c->ca_, "localhost", local, true},
             {&c->wrong_name_server_, "wrong-name", &c->ca_, "other.example", "DNS:other.example",
              false},
             {&c->wrong_ca_server_, "wrong-ca", &c->other_ca_, "localhost", local, false}}) {
      absl::StatusOr<CertFiles> f = c->Issue(w.name, *w.ca, w.cn, w.san, "serverAuth", w.expired);
      if (!f.ok()) return f.status();
      *w.out = *f;
    }
    for (const std::string& id : agent_ids) {
      absl::StatusOr<CertFiles> f = c->Issue("agent-" + id, c->ca_, id, "DNS:" + id, "clientAuth");
      if (!f.ok()) return f.status();
      c->agents_[id] = *f;
    }
    const std::string first = agent_ids.empty() ? "agent-1" : agent_ids.front();
    absl::StatusOr<CertFiles> f =
        c->Issue("wrong-ca-agent", c->other_ca_, first, "DNS:" + first, "clientAuth");
    if (!f.ok()) return f.status();
    c->wrong_ca_agent_ = *f;
    return c;
  }

  ~TestCerts() {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  // Issues another server certificate from the CA (a new serial) for
  // localhost and 127.0.0.1, named `name` in dir(). For reload tests.
  absl::StatusOr<CertFiles> NewServerCert(const std::string& name) {
    return Issue(name, ca_, "localhost", "DNS:localhost,IP:127.0.0.1", "serverAuth");
  }

  const std::string& dir() const { return dir_; }
  const CertFiles& ca() const { return ca_; }              // ca.cert is the trust root.
  const CertFiles& other_ca() const { return other_ca_; }  // An unrelated CA.
  const CertFiles& server() const { return server_; }
  const CertFiles& expired_server() const { return expired_server_; }
  const CertFiles& wrong_name_server() const { return wrong_name_server_; }  // other.example
  const CertFiles& wrong_ca_server() const { return wrong_ca_server_; }      // By other_ca.
  const CertFiles& agent(const std::string& id) const { return agents_.at(id); }
  // For the first agent id, signed by other_ca.
  const CertFiles& wrong_ca_agent() const { return wrong_ca_agent_; }

 private:
  TestCerts() = default;

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  absl::Status Openssl(std::vector<std::string> args) {
    args.insert(args.begin(), "openssl");
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    const std::string log = Path("openssl.log");
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    pid_t pid = 0;
    const int rc = posix_spawnp(&pid, "openssl", &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) return absl::InternalError("cannot run openssl");
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      return absl::InternalError(absl::StrCat("openssl ", args[1], " failed; see ", log));
    }
    return absl::OkStatus();
  }

  // `openssl ca` (not `x509 -req`) because only it takes a start date,
  // which the expired certificate needs.
  absl::Status WriteConfig(const std::string& name) {
    std::ofstream db(Path(name + ".index"));
    std::ofstream serial(Path(name + ".serial"));
    serial << (name == "ca" ? "1000" : "5000") << "\n";
    std::ofstream cnf(Path(name + ".cnf"));
    cnf << "[req]\ndistinguished_name = dn\n[dn]\n"
        << "[ca]\ndefault_ca = tca\n[tca]\n"
        << "database = " << Path(name + ".index") << "\n"
        << "new_certs_dir = " << dir_ << "\n"
        << "serial = " << Path(name + ".serial") << "\n"
        << "default_md = sha256\npolicy = any\nunique_subject = no\n"
        << "[any]\ncommonName = supplied\n"
        << "[v3_ca]\nbasicConstraints = critical,CA:TRUE\n"
        << "keyUsage = critical,keyCertSign,cRLSign\n";
    return cnf ? absl::OkStatus() : absl::InternalError("cannot write " + Path(name + ".cnf"));
  }

  absl::Status MakeCa(const std::string& name, CertFiles* out) {
    if (absl::Status s = WriteConfig(name); !s.ok()) return s;
    out->cert = Path(name + ".pem");
    out->key = Path(name + ".key");
    ca_config_[out->cert] = Path(name + ".cnf");
    return Openssl({"req", "-config", Path(name + ".cnf"), "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", out->key, "-out",
                    out->cert, "-days", "2", "-subj", "/CN=taskgrid test " + name, "-extensions",
                    "v3_ca"});
  }

  absl::StatusOr<CertFiles> Issue(const std::string& name, const CertFiles& ca,
                                  const std::string& cn, const std::string& san,
                                  const std::string& usage, bool expired = false) {
    CertFiles out{Path(name + ".pem"), Path(name + ".key")};
    const std::string csr = Path(name + ".csr"), ext = Path(name + ".ext");
    {
      std::ofstream e(ext);
      e << "basicConstraints = CA:FALSE\nsubjectAltName = " << san
        << "\nextendedKeyUsage = " << usage << "\n";
    }
    const std::string cnf = ca_config_.at(ca.cert);
    if (absl::Status s = Openssl({"req", "-config", cnf, "-new", "-newkey", "ec", "-pkeyopt",
                                  "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", out.key,
                                  "-out", csr, "-subj", "/CN=" + cn});
        !s.ok()) {
      return s;
    }
    std::vector<std::string> args = {"ca",    "-batch",   "-config", cnf,        "-cert",
                                     ca.cert, "-keyfile", ca.key,    "-in",      csr,
                                     "-out",  out.cert,   "-notext", "-extfile", ext};
    if (expired) {
      for (const char* a : {"-startdate", "20200101000000Z", "-enddate", "20200102000000Z"}) {
        args.push_back(a);
      }
    } else {
      args.push_back("-days");
      args.push_back("2");
    }
    if (absl::Status s = Openssl(args); !s.ok()) return s;
    return out;
  }

  std::string dir_;
  std::map<std::string, std::string> ca_config_;  // CA certificate -> its openssl config.
  CertFiles ca_, other_ca_, server_, expired_server_, wrong_name_server_, wrong_ca_server_,
      wrong_ca_agent_;
  std::map<std::string, CertFiles> agents_;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_TESTING_TEST_CERTS_H_
