// TLS on every link, with real handshakes on loopback: the coordinator's
// gRPC (server TLS, mutual TLS for agents, certificate reload under a live
// stream) and the gateway's HTTPS (REST and an event stream). Certificates
// come from the openssl command (TestCerts).
#include "services/common/tls.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/agent/agent.h"
#include "services/agent/agent_metrics.h"
#include "services/agent/posix_process_runner.h"
#include "services/common/coordinator_channel.h"
#include "services/common/testing/test_certs.h"
#include "services/common/testing/test_util.h"
#include "services/coordinator/coordinator.h"
#include "services/gateway/gateway.h"
#include "taskgrid/v1/agent.grpc.pb.h"
#include "taskgrid/v1/task_service.grpc.pb.h"
#include "tests/http_test_client.h"

namespace taskgrid {
namespace {

using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Copies `from` over `to` by rename, so a watcher never reads half a file.
void ReplaceFile(const std::string& from, const std::string& to) {
  std::filesystem::copy_file(from, to + ".new", std::filesystem::copy_options::overwrite_existing);
  std::filesystem::rename(to + ".new", to);
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = TestCerts::Make({"agent-1", "agent-2"});
    ASSERT_TRUE(c.ok()) << c.status();
    certs_ = std::move(*c);
  }

  void TearDown() override {
    gateway_.reset();
    agents_.clear();
    coordinator_.reset();
  }

  // Starts the coordinator serving `server`; with `client_ca`, mutual TLS.
  void StartCoordinator(const CertFiles& server, const std::string& client_ca = "",
                        absl::Duration reload = absl::Seconds(60)) {
    CoordinatorOptions o;
    o.grpc_address = "127.0.0.1:0";
    o.metrics_address = "";
    o.tls.cert_file = server.cert;
    o.tls.key_file = server.key;
    o.tls.client_ca_file = client_ca;
    o.tls.reload_interval = reload;
    auto c = Coordinator::Start(o);
    ASSERT_TRUE(c.ok()) << c.status();
    coordinator_ = std::move(*c);
    port_ = coordinator_->grpc_port();
  }

  // Trusts the test CA (or `ca`), connecting as localhost.
  ChannelTlsOptions ClientTls(const std::string& ca = "") const {
    ChannelTlsOptions t;
    t.ca_file = ca.empty() ? certs_->ca().cert : ca;
    return t;
  }

  std::string Address() const { return absl::StrCat("localhost:", port_); }

  // Submits `command` over a TLS channel with no client certificate (as API
  // clients do); the agent that ran it once it succeeded, else "".
  std::string RunOverTls(const std::string& command) {
    auto stub = v1::TaskService::NewStub(CoordinatorChannel(Address(), ClientTls()));
    v1::SubmitRequest req;
    req.mutable_spec()->mutable_shell()->set_command(command);
    v1::SubmitResponse resp;
    grpc::ClientContext ctx;
    if (!stub->Submit(&ctx, req, &resp).ok()) return "";
    v1::Task t;
    WaitFor([&] {
      v1::GetRequest get;
      get.set_task_id(resp.task().id());
      grpc::ClientContext c;
      stub->Get(&c, get, &t);
      return t.status() == v1::TASK_STATUS_SUCCEEDED;
    });
    return t.status() == v1::TASK_STATUS_SUCCEEDED ? t.agent_id() : "";
  }

  // One ListAgents call on a fresh connection (no subchannel shared with
  // earlier channels); returns its status and, in `peer_pem`, the server
  // certificate it saw.
  grpc::Status Call(const std::shared_ptr<grpc::ChannelCredentials>& creds,
                    std::string* peer_pem = nullptr) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto stub = v1::TaskService::NewStub(grpc::CreateCustomChannel(Address(), creds, args));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListAgentsResponse resp;
    grpc::Status s = stub->ListAgents(&ctx, v1::ListAgentsRequest(), &resp);
    if (peer_pem != nullptr && s.ok()) {
      for (const auto& v : ctx.auth_context()->FindPropertyValues("x509_pem_cert")) {
        peer_pem->assign(v.data(), v.size());
      }
    }
    return s;
  }

  Agent& StartAgent(const std::string& id, const CertFiles* client,
                    AgentMetrics* metrics = nullptr) {
    AgentOptions o;
    o.coordinator_address = Address();
    o.agent_id = id;
    o.slots = 2;
    o.reconnect_min = absl::Milliseconds(20);
    o.reconnect_max = absl::Milliseconds(200);
    o.tls = ClientTls();
    if (client != nullptr) {
      o.tls.cert_file = client->cert;
      o.tls.key_file = client->key;
    }
    EXPECT_TRUE(o.Validate().ok()) << o.Validate();
    agents_.push_back(std::make_unique<Agent>(o, runner_, metrics));
    agents_.back()->Start();
    return *agents_.back();
  }

  // Says hello on the agent stream as `id`, presenting `client` (if any);
  // returns the status the coordinator ends the stream with, or OK if it
  // is still open after the hello was answered.
  grpc::Status Hello(const std::string& id, const CertFiles* client) {
    ChannelTlsOptions t = ClientTls();
    if (client != nullptr) {
      t.cert_file = client->cert;
      t.key_file = client->key;
    }
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto stub = v1::AgentService::NewStub(
        grpc::CreateCustomChannel(Address(), GrpcChannelCredentials(t), args));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    auto stream = stub->Connect(&ctx);
    v1::AgentBatch batch;
    v1::Hello* hello = batch.add_messages()->mutable_hello();
    hello->set_agent_id(id);
    hello->set_slots(1);
    stream->Write(batch);
    stream->WritesDone();
    v1::CoordinatorBatch in;
    while (stream->Read(&in)) {
    }
    return stream->Finish();
  }

  std::unique_ptr<TestCerts> certs_;
  PosixProcessRunner runner_;
  prometheus::Registry registry_;
  AgentMetrics agent_metrics_{registry_};  // Outlives the agents.
  std::unique_ptr<Coordinator> coordinator_;
  std::vector<std::unique_ptr<Agent>> agents_;
  std::unique_ptr<gateway::Gateway> gateway_;
  int port_ = 0;
};

TEST_F(TlsTest, GoodCertificateConnects) {
  StartCoordinator(certs_->server());
  EXPECT_TRUE(Call(GrpcChannelCredentials(ClientTls())).ok());
  // The shared channel (what the CLI and gateway use) as well.
  auto stub = v1::TaskService::NewStub(CoordinatorChannel(Address(), ClientTls()));
  grpc::ClientContext ctx;
  v1::ListAgentsResponse resp;
  EXPECT_TRUE(stub->ListAgents(&ctx, v1::ListAgentsRequest(), &resp).ok());
}

TEST_F(TlsTest, ExpiredServerCertificateFails) {
  StartCoordinator(certs_->expired_server());
  EXPECT_EQ(Call(GrpcChannelCredentials(ClientTls())).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, WrongNameFails) {
  StartCoordinator(certs_->wrong_name_server());
  EXPECT_EQ(Call(GrpcChannelCredentials(ClientTls())).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, WrongCaFails) {
  StartCoordinator(certs_->wrong_ca_server());
  EXPECT_EQ(Call(GrpcChannelCredentials(ClientTls())).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, PlaintextClientToTlsServerFails) {
  StartCoordinator(certs_->server());
  EXPECT_EQ(Call(grpc::InsecureChannelCredentials()).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, ServerNameOverrideAcceptsAnotherName) {
  StartCoordinator(certs_->wrong_name_server());
  ChannelTlsOptions t = ClientTls();
  t.server_name = "other.example";
  auto stub = v1::TaskService::NewStub(CoordinatorChannel(Address(), t));
  grpc::ClientContext ctx;
  v1::ListAgentsResponse resp;
  EXPECT_TRUE(stub->ListAgents(&ctx, v1::ListAgentsRequest(), &resp).ok());
}

TEST_F(TlsTest, MutualTlsAgentRunsATask) {
  StartCoordinator(certs_->server(), certs_->ca().cert);
  Agent& agent = StartAgent("agent-1", &certs_->agent("agent-1"));
  ASSERT_TRUE(WaitFor([&] { return agent.connected(); }));

  // API clients need no certificate.
  EXPECT_EQ(RunOverTls("echo over-tls"), "agent-1");
}

TEST_F(TlsTest, MutualTlsRefusesAgentWithoutCertificate) {
  StartCoordinator(certs_->server(), certs_->ca().cert);
  grpc::Status s = Hello("agent-1", nullptr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
}

TEST_F(TlsTest, MutualTlsRefusesCertificateFromWrongCa) {
  StartCoordinator(certs_->server(), certs_->ca().cert);
  grpc::Status s = Hello("agent-1", &certs_->wrong_ca_agent());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

TEST_F(TlsTest, MutualTlsRefusesAnotherAgentsCertificate) {
  StartCoordinator(certs_->server(), certs_->ca().cert);
  grpc::Status s = Hello("agent-1", &certs_->agent("agent-2"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("agent-2"));
  // The same certificate with its own id is welcome.
  Agent& agent = StartAgent("agent-2", &certs_->agent("agent-2"));
  EXPECT_TRUE(WaitFor([&] { return agent.connected(); }));
}

TEST_F(TlsTest, ReloadedCertificateServesNewConnectionsAndKeepsLiveStreams) {
  // The coordinator reads copies the test can replace.
  const CertFiles live{certs_->dir() + "/live.pem", certs_->dir() + "/live.key"};
  std::filesystem::copy_file(certs_->server().cert, live.cert);
  std::filesystem::copy_file(certs_->server().key, live.key);
  StartCoordinator(live, certs_->ca().cert, absl::Seconds(1));
  AgentMetrics& metrics = agent_metrics_;
  Agent& agent = StartAgent("agent-1", &certs_->agent("agent-1"), &metrics);
  ASSERT_TRUE(WaitFor([&] { return agent.connected(); }));
  const double reconnects = metrics.reconnects.Value();

  std::string pem;
  ASSERT_TRUE(Call(GrpcChannelCredentials(ClientTls()), &pem).ok());
  EXPECT_EQ(pem, ReadFile(certs_->server().cert));

  auto renewed = certs_->NewServerCert("renewed");
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  ReplaceFile(renewed->key, live.key);
  ReplaceFile(renewed->cert, live.cert);
  const std::string want = ReadFile(renewed->cert);
  EXPECT_TRUE(WaitFor(
      [&] {
        std::string seen;
        return Call(GrpcChannelCredentials(ClientTls()), &seen).ok() && seen == want;
      },
      absl::Seconds(20)));

  // The agent's stream, opened under the old certificate, still works.
  EXPECT_TRUE(agent.connected());
  EXPECT_EQ(metrics.reconnects.Value(), reconnects);
  EXPECT_EQ(RunOverTls("true"), "agent-1");
  EXPECT_EQ(metrics.reconnects.Value(), reconnects);
}

TEST_F(TlsTest, OptionsNameTheBadFlag) {
  ServerTlsOptions s;
  s.cert_file = certs_->server().cert;
  EXPECT_THAT(std::string(s.Validate().message()), HasSubstr("tls_key: is required"));
  s.key_file = "/nonexistent/key.pem";
  EXPECT_THAT(std::string(s.Validate().message()),
              HasSubstr("tls_key: cannot read /nonexistent/key.pem: No such file"));
  s.key_file = certs_->server().key;
  EXPECT_TRUE(s.Validate().ok());
  ServerTlsOptions ca_only;
  ca_only.client_ca_file = certs_->ca().cert;
  EXPECT_THAT(std::string(ca_only.Validate().message()), HasSubstr("tls_client_ca: needs"));

  ChannelTlsOptions c;
  c.cert_file = certs_->agent("agent-1").cert;
  c.key_file = certs_->agent("agent-1").key;
  EXPECT_THAT(std::string(c.Validate().message()), HasSubstr("tls_ca: is required"));
  c.ca_file = certs_->agent("agent-1").key + ".missing";
  EXPECT_THAT(std::string(c.Validate("coordinator_tls_").message()),
              HasSubstr("coordinator_tls_ca: cannot read"));
}

// Makes SIGCHLD arrive at this process's other threads all the time, as a
// child's exit does while the thread that started it has every signal
// blocked (the in-process agent's spawn, around vfork).
class ChildExitStorm {
 public:
  ChildExitStorm()
      : thread_([this] {
          sigset_t all;
          sigfillset(&all);
          pthread_sigmask(SIG_SETMASK, &all, nullptr);
          while (!stop_.load()) {
            const pid_t child = vfork();
            if (child == 0) _exit(0);
            waitpid(child, nullptr, 0);
            absl::SleepFor(absl::Microseconds(200));  // leaves the cores to the test
          }
        }) {}
  ~ChildExitStorm() {
    stop_ = true;
    thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A minimal HTTPS client on OpenSSL: one request, the answer read until the
// connection closes or `until` appears.
class HttpsClient {
 public:
  explicit HttpsClient(const std::string& ca) : ctx_(SSL_CTX_new(TLS_client_method())) {
    SSL_CTX_load_verify_locations(ctx_, ca.c_str(), nullptr);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  }
  ~HttpsClient() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (fd_ >= 0) close(fd_);
    SSL_CTX_free(ctx_);
  }

  // False when the TCP connection or the TLS handshake fails.
  bool Connect(int port, const std::string& host = "localhost") {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return false;
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    SSL_set_tlsext_host_name(ssl_, host.c_str());
    SSL_set1_host(ssl_, host.c_str());
    return Retrying([&] { return SSL_connect(ssl_); }) == 1;
  }

  // Sends a GET; returns what arrives until the server closes, `until`
  // appears, or 5 s pass with nothing new.
  std::string Get(const std::string& path, const std::string& until = "") {
    return Send(
        absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        until);
  }

  // Sends `request` as it is; then as ReadUntil.
  std::string Send(const std::string& request, const std::string& until) {
    const int size = static_cast<int>(request.size());
    if (Retrying([&] { return SSL_write(ssl_, request.data(), size); }) <= 0) return "";
    return ReadUntil(until);
  }

  std::string ReadUntil(const std::string& until) {
    char buf[4096];
    for (;;) {
      const int n = Retrying([&] { return SSL_read(ssl_, buf, sizeof(buf)); });
      if (n <= 0) break;
      got_.append(buf, static_cast<size_t>(n));
      if (!until.empty() && got_.find(until) != std::string::npos) break;
    }
    return got_;
  }

 private:
  // Runs an OpenSSL call again while a signal interrupts it, for up to 10 s.
  // A child's SIGCHLD goes to the thread that started it; while that thread
  // has every signal blocked (the in-process agent's spawn does, around
  // vfork) the kernel hands it to another thread, and a socket with
  // SO_RCVTIMEO then answers EINTR even though no handler runs.
  template <typename Call>
  int Retrying(Call call) {
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    for (;;) {
      errno = 0;
      const int n = call();
      if (n > 0 || errno != EINTR || absl::Now() >= give_up) return n;
      const int error = SSL_get_error(ssl_, n);
      if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) return n;
    }
  }

  SSL_CTX* ctx_;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  std::string got_;
};

class GatewayTlsTest : public TlsTest {
 protected:
  void StartGateway(const CertFiles& server, absl::Duration reload = absl::Seconds(60)) {
    StartCoordinator(certs_->server());
    gateway::GatewayOptions go;
    go.http_address = "127.0.0.1:0";
    go.metrics_address = "";
    go.coordinator_address = Address();
    go.coordinator_tls = ClientTls();
    go.health_interval = absl::ZeroDuration();
    go.http.tls.cert_file = server.cert;
    go.http.tls.key_file = server.key;
    go.http.tls.reload_interval = reload;
    auto g = gateway::Gateway::Start(go);
    ASSERT_TRUE(g.ok()) << g.status();
    gateway_ = std::move(*g);
    http_port_ = gateway_->http_port();
  }
  int http_port_ = 0;
};

TEST_F(GatewayTlsTest, RestOverHttps) {
  StartGateway(certs_->server());
  HttpsClient client(certs_->ca().cert);
  ASSERT_TRUE(client.Connect(http_port_));
  const std::string r = client.Get("/api/agents");
  EXPECT_THAT(r, HasSubstr("HTTP/1.1 200"));
}

TEST_F(GatewayTlsTest, EventStreamOverHttps) {
  // Signals interrupt the client's calls throughout: before HttpsClient
  // retried them, the handshake failed here 2 times in 60 (ASan build).
  ChildExitStorm storm;
  StartGateway(certs_->server());
  StartAgent("agent-1", nullptr);
  HttpsClient client(certs_->ca().cert);
  ASSERT_TRUE(client.Connect(http_port_));
  EXPECT_THAT(client.Get("/api/events", "\r\n\r\n"), HasSubstr("text/event-stream"));
  auto stub = v1::TaskService::NewStub(CoordinatorChannel(Address(), ClientTls()));
  v1::SubmitRequest req;
  req.mutable_spec()->mutable_shell()->set_command("true");
  v1::SubmitResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub->Submit(&ctx, req, &resp).ok());
  EXPECT_THAT(client.ReadUntil(resp.task().id()), HasSubstr(resp.task().id()));
}

TEST_F(GatewayTlsTest, WebSocketOverHttps) {
  StartGateway(certs_->server());
  HttpsClient client(certs_->ca().cert);
  ASSERT_TRUE(client.Connect(http_port_));
  EXPECT_THAT(client.Send("GET /ws/monitoring HTTP/1.1\r\nHost: localhost\r\n"
                          "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n",
                          "\r\n\r\n"),
              HasSubstr("HTTP/1.1 101"));
}

TEST_F(GatewayTlsTest, WrongCaFails) {
  StartGateway(certs_->server());
  HttpsClient client(certs_->other_ca().cert);
  EXPECT_FALSE(client.Connect(http_port_));
}

TEST_F(GatewayTlsTest, PlainHttpToHttpsGetsNoAnswer) {
  StartGateway(certs_->server());
  EXPECT_EQ(testing_http::Fetch(http_port_, "GET", "/api/agents").status, 0);
}

TEST_F(GatewayTlsTest, ReloadedCertificateServesNewConnections) {
  const CertFiles live{certs_->dir() + "/gw.pem", certs_->dir() + "/gw.key"};
  std::filesystem::copy_file(certs_->server().cert, live.cert);
  std::filesystem::copy_file(certs_->server().key, live.key);
  StartGateway(live, absl::Seconds(1));
  HttpsClient old_client(certs_->ca().cert);
  ASSERT_TRUE(old_client.Connect(http_port_));
  // Replace it with a certificate from another CA: new connections that
  // trust only that CA succeed once it is taken.
  ReplaceFile(certs_->wrong_ca_server().key, live.key);
  ReplaceFile(certs_->wrong_ca_server().cert, live.cert);
  EXPECT_TRUE(WaitFor(
      [&] {
        HttpsClient c(certs_->other_ca().cert);
        return c.Connect(http_port_);
      },
      absl::Seconds(20)));
  // The connection made before still answers.
  EXPECT_THAT(old_client.Get("/api/agents"), HasSubstr("HTTP/1.1 200"));
}

}  // namespace
}  // namespace taskgrid
