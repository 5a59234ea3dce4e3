// The listener: accepts connections, hands each to a session
// (http_session.cc), reloads the TLS certificate, and shuts everything down.
#include "services/gateway/http_server.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <atomic>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/gateway/http_connection.h"

namespace taskgrid::gateway {
namespace http_internal {
namespace {

// A TLS context with the pair of files in `tls`. kInvalidArgument naming the
// flag when a file does not load or the key is not the certificate's.
absl::StatusOr<std::shared_ptr<ssl::context>> MakeTlsContext(const ServerTlsOptions& tls) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::single_dh_use);
  beast::error_code ec;
  ctx->use_certificate_chain_file(tls.cert_file, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls_cert: cannot load ", tls.cert_file, ": ", ec.message()));
  }
  ctx->use_private_key_file(tls.key_file, ssl::context::pem, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls_key: cannot load ", tls.key_file, ": ", ec.message()));
  }
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls_key: ", tls.key_file, " is not the key of ", tls.cert_file));
  }
  return ctx;
}

// Changes whenever either file is replaced or rewritten.
std::string FilesSignature(const ServerTlsOptions& tls) {
  std::string sig;
  for (const std::string& path : {tls.cert_file, tls.key_file}) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) return "";
    absl::StrAppend(&sig, st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec, ".",
                    st.st_mtim.tv_nsec, ";");
  }
  return sig;
}

class Server final : public HttpServer {
 public:
  Server(const HttpServerOptions& options, Handler handler)
      : host_(options, std::move(handler)), acceptor_(asio::make_strand(ioc_)) {}

  absl::Status Listen() {
    const size_t colon = options_.address.rfind(':');
    int port = 0;
    if (colon == std::string::npos ||
        !absl::SimpleAtoi(options_.address.substr(colon + 1), &port)) {
      return absl::InvalidArgumentError("http_address: want host:port, got " + options_.address);
    }
    std::string host = options_.address.substr(0, colon);
    if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
    if (host == "localhost") host = "127.0.0.1";
    beast::error_code ec;
    const auto ip = asio::ip::make_address(host, ec);
    if (ec) return absl::InvalidArgumentError("http_address: bad host " + host);
    const tcp::endpoint endpoint(ip, static_cast<uint16_t>(port));
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return absl::UnavailableError("http_address " + options_.address + ": " + ec.message());
    port_ = acceptor_.local_endpoint().port();
    if (options_.tls.enabled()) {
      tls_signature_ = FilesSignature(options_.tls);
      absl::StatusOr<std::shared_ptr<ssl::context>> ctx = MakeTlsContext(options_.tls);
      if (!ctx.ok()) return ctx.status();
      SetTlsContext(*std::move(ctx));
      WatchTlsFiles();
    }
    Accept();
    for (int i = 0; i < options_.io_threads; ++i) threads_.emplace_back([this] { ioc_.run(); });
    return absl::OkStatus();
  }

  int port() const override { return port_; }
  size_t open_streams() const override { return host_.open_streams(); }
  size_t slow_clients() const override { return host_.slow_clients(); }

  void Shutdown() override {
    if (shut_down_.exchange(true)) return;
    // On the listener's strand: a close racing an accept's completion on
    // another I/O thread would pull the descriptor from under it.
    asio::post(acceptor_.get_executor(), [this] {
      beast::error_code ec;
      acceptor_.close(ec);
      reload_timer_.cancel();
    });
    for (const std::shared_ptr<Connection>& c : host_.Open()) c->Close();
    // Give closing handshakes a moment, then stop whatever is left.
    auto timer = std::make_shared<asio::steady_timer>(ioc_, std::chrono::milliseconds(100));
    timer->async_wait([this, timer](beast::error_code) { ioc_.stop(); });
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

  ~Server() override { Shutdown(); }

 private:
  std::shared_ptr<ssl::context> tls_context() ABSL_LOCKS_EXCLUDED(tls_mu_) {
    absl::MutexLock lock(&tls_mu_);
    return tls_context_;
  }
  void SetTlsContext(std::shared_ptr<ssl::context> ctx) ABSL_LOCKS_EXCLUDED(tls_mu_) {
    absl::MutexLock lock(&tls_mu_);
    tls_context_ = std::move(ctx);
  }

  // Checks the certificate files every reload interval; a changed pair that
  // loads becomes the context of connections accepted from then on (open
  // ones keep theirs). A pair that does not load is retried next time.
  void WatchTlsFiles() {
    reload_timer_.expires_after(ToChrono(options_.tls.reload_interval));
    reload_timer_.async_wait([this](beast::error_code ec) {
      if (ec || shut_down_.load()) return;
      const std::string signature = FilesSignature(options_.tls);
      if (signature != tls_signature_) {
        absl::StatusOr<std::shared_ptr<ssl::context>> ctx = MakeTlsContext(options_.tls);
        if (ctx.ok()) {
          SetTlsContext(*std::move(ctx));
          tls_signature_ = signature;
          spdlog::info("tls_reloaded cert={}", options_.tls.cert_file);
        } else {
          spdlog::warn("tls_reload_failed status=\"{}\"", ctx.status().ToString());
        }
      }
      WatchTlsFiles();
    });
  }

  void Accept() {
    acceptor_.async_accept(
        asio::make_strand(ioc_), [this](beast::error_code ec, tcp::socket socket) {
          if (ec) {
            if (ec != asio::error::operation_aborted)
              spdlog::warn("http_accept_failed error=\"{}\"", ec.message());
            if (!acceptor_.is_open()) return;
          } else {
            // SSE frames and WebSocket messages are small writes: without
            // this, Nagle holds each one behind the client's delayed ACK
            // (40 ms on Linux).
            socket.set_option(tcp::no_delay(true), ec);
            if (std::shared_ptr<ssl::context> tls = tls_context()) {
              ServeConnection<TlsStream>(std::move(socket), std::move(tls), host_);
            } else {
              ServeConnection<PlainStream>(std::move(socket), nullptr, host_);
            }
          }
          Accept();
        });
  }

  ConnectionHost host_;
  const HttpServerOptions& options_ = host_.options();
  asio::io_context ioc_{options_.io_threads};
  // The listener's strand: accepts, the certificate reload timer and the
  // close take turns.
  tcp::acceptor acceptor_;
  std::vector<std::thread> threads_;
  int port_ = 0;
  std::atomic<bool> shut_down_{false};
  // Accepts read it on any I/O thread; the reload timer replaces it.
  absl::Mutex tls_mu_;
  std::shared_ptr<ssl::context> tls_context_ ABSL_GUARDED_BY(tls_mu_);
  std::string tls_signature_;  // Only touched by Listen, then the timer chain.
  asio::steady_timer reload_timer_{acceptor_.get_executor()};
};

}  // namespace
}  // namespace http_internal

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                              Handler handler) {
  auto server = std::make_unique<http_internal::Server>(options, std::move(handler));
  if (absl::Status s = server->Listen(); !s.ok()) return s;
  return std::unique_ptr<HttpServer>(std::move(server));
}

}  // namespace taskgrid::gateway
