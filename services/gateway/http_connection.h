// What the HTTP server's connections share. Private to the server's own
// files (http_server.cc, http_session.cc, websocket_session.cc): the stream
// types, the list of open connections Shutdown closes, and the counters the
// server reports.
#ifndef TASKGRID_SERVICES_GATEWAY_HTTP_CONNECTION_H_
#define TASKGRID_SERVICES_GATEWAY_HTTP_CONNECTION_H_

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <memory>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/gateway/http_server.h"

namespace taskgrid::gateway::http_internal {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
// Every connection is one of these: the same session code serves both.
using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

inline std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  return std::chrono::nanoseconds(absl::ToInt64Nanoseconds(d));
}

// Anything the server must close on shutdown.
class Connection {
 public:
  virtual ~Connection() = default;
  virtual void Close() = 0;  // Any thread.
};

class ConnectionHost {
 public:
  ConnectionHost(const HttpServerOptions& options, Handler handler)
      : options_(options), handler_(std::move(handler)) {}

  const HttpServerOptions& options() const { return options_; }
  const Handler& handler() const { return handler_; }

  void Track(std::shared_ptr<Connection> c) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    // Drop entries of finished connections now and then.
    if (connections_.size() > 1024 && connections_.size() % 1024 == 0) {
      std::erase_if(connections_, [](const auto& w) { return w.expired(); });
    }
    connections_.push_back(std::move(c));
  }
  void Forget(Connection* c) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    // Not only the first match: an expired entry before `c` must not keep it
    // listed (Shutdown would close it again).
    std::erase_if(connections_, [c](const std::weak_ptr<Connection>& w) {
      const std::shared_ptr<Connection> open = w.lock();
      return open == nullptr || open.get() == c;
    });
  }
  std::vector<std::shared_ptr<Connection>> Open() ABSL_LOCKS_EXCLUDED(mu_) {
    std::vector<std::shared_ptr<Connection>> open;
    absl::MutexLock lock(&mu_);
    for (const auto& weak : connections_) {
      if (auto c = weak.lock()) open.push_back(std::move(c));
    }
    return open;
  }

  void StreamOpened() { ++open_streams_; }
  void StreamEnded() { --open_streams_; }
  size_t open_streams() const { return open_streams_.load(); }
  void CountSlowClient() {
    ++slow_clients_;
    if (options_.on_slow_client) options_.on_slow_client();
  }
  size_t slow_clients() const { return slow_clients_.load(); }

 private:
  const HttpServerOptions options_;
  const Handler handler_;
  std::atomic<size_t> open_streams_{0};
  std::atomic<size_t> slow_clients_{0};
  absl::Mutex mu_;
  std::vector<std::weak_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
};

// Serves one accepted connection: the TLS handshake when Stream is
// TlsStream (with `tls`), then requests until it closes.
template <class Stream>
void ServeConnection(tcp::socket socket, std::shared_ptr<ssl::context> tls, ConnectionHost& host);

}  // namespace taskgrid::gateway::http_internal

#endif  // TASKGRID_SERVICES_GATEWAY_HTTP_CONNECTION_H_
