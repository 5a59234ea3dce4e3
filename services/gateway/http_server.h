// A small asynchronous HTTP/1.1 server (Boost.Beast, kept inside its .cc
// files): keep-alive requests answered from any thread,
// text/event-stream responses and WebSockets fed through bounded queues. A
// few I/O threads (each connection on its own strand) hold thousands of
// connections. Plain HTTP, or HTTPS (and wss) with a certificate that is
// re-read when its files change.
#ifndef TASKGRID_SERVICES_GATEWAY_HTTP_SERVER_H_
#define TASKGRID_SERVICES_GATEWAY_HTTP_SERVER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/tls.h"

namespace taskgrid::gateway {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;                          // "GET"
  std::string path;                            // Without the query string.
  std::map<std::string, std::string> query;    // Percent-decoded.
  std::map<std::string, std::string> headers;  // Lower-case names.
  std::string body;
  // A WebSocket upgrade request (answer with AcceptWebSocket or Reply).
  bool websocket = false;
  // The client's IP address.
  std::string remote;

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
  std::string Query(const std::string& name) const {
    auto it = query.find(name);
    return it == query.end() ? "" : it->second;
  }
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  Headers headers;
};

// The body of an open text/event-stream response. Thread-safe.
class EventStreamWriter {
 public:
  virtual ~EventStreamWriter() = default;
  // Queues bytes. Returns false once the stream is closed; a client whose
  // queue would pass the server's bound is closed instead (it is too slow).
  virtual bool Write(std::string data) = 0;
  virtual void Close() = 0;
  virtual bool closed() const = 0;
  // Runs once, on the server's thread, when the stream ends for any reason
  // (at once if it already has).
  virtual void OnClose(std::function<void()> callback) = 0;
  // Bytes written to the stream that the client has not taken yet.
  virtual size_t queued_bytes() const = 0;
  // Runs once, on the server's thread, when queued bytes fall to
  // `low_water` or below (at once if they are). Lets a producer pause
  // instead of queueing without bound.
  virtual void WhenDrained(size_t low_water, std::function<void()> callback) = 0;
};

// An accepted WebSocket. Write sends one text message (same bounded queue,
// backpressure and slow-client cutoff as an event stream). Thread-safe.
class WebSocketConnection : public EventStreamWriter {
 public:
  // Runs on the server's thread for each text message from the client. Set
  // it right after accepting.
  virtual void OnMessage(std::function<void(std::string)> callback) = 0;
  // Sends what is queued, then the close frame with `code` and `reason`.
  virtual void CloseWith(uint16_t code, std::string reason) = 0;
};

// Answers one request. Thread-safe; call exactly one of Reply,
// StartEventStream or (for request.websocket) AcceptWebSocket, once.
class Responder {
 public:
  virtual ~Responder() = default;
  virtual void Reply(HttpResponse response) = 0;
  virtual std::shared_ptr<EventStreamWriter> StartEventStream(Headers headers) = 0;
  virtual std::shared_ptr<WebSocketConnection> AcceptWebSocket() = 0;
};

using Handler = std::function<void(HttpRequest request, std::shared_ptr<Responder> responder)>;

struct HttpServerOptions {
  // host:port; port 0 picks a free one.
  std::string address = "127.0.0.1:8080";
  // Threads running the event loop.
  int io_threads = 2;
  size_t max_body_bytes = 1 << 20;
  size_t max_header_bytes = 16 << 10;
  // Largest WebSocket message a client may send.
  size_t max_message_bytes = 64 << 10;
  // Hard bound on bytes queued per event stream; a client past it is cut off.
  size_t max_stream_queue_bytes = 4 << 20;
  // A stream client that takes nothing for this long while bytes wait is cut
  // off with a resync hint.
  absl::Duration stall_timeout = absl::Seconds(30);
  // Comment frames keep idle streams (and proxies) alive.
  absl::Duration heartbeat_interval = absl::Seconds(15);
  // Called (on the server's thread) each time a stream client is cut off.
  std::function<void()> on_slow_client;
  // Idle keep-alive connections are closed after this.
  absl::Duration idle_timeout = absl::Seconds(60);
  // HTTPS (and wss) when tls.cert_file is set. The files are checked every
  // tls.reload_interval; a changed pair applies to connections accepted
  // afterwards, open ones keep theirs. client_ca_file is not supported.
  ServerTlsOptions tls;
  // TLS handshakes that take longer are dropped.
  absl::Duration handshake_timeout = absl::Seconds(10);
};

// Owns the listener, the I/O thread and every connection. Thread-safe.
class HttpServer {
 public:
  // kInvalidArgument for a malformed address, kUnavailable when it cannot
  // be bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                           Handler handler);
  virtual ~HttpServer() = default;
  virtual int port() const = 0;
  // Stops accepting, closes every connection and stream, joins the threads.
  virtual void Shutdown() = 0;
  // Open event streams now.
  virtual size_t open_streams() const = 0;
  // Event streams cut off because the client did not keep up.
  virtual size_t slow_clients() const = 0;
};

}  // namespace taskgrid::gateway

#endif  // TASKGRID_SERVICES_GATEWAY_HTTP_SERVER_H_
