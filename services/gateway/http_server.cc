// The only translation unit that includes Beast (it is slow to compile).
#include "services/gateway/http_server.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <deque>
#include <optional>
#include <thread>
#include <type_traits>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"

namespace taskgrid::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
// Every connection is one of these: the same session code serves both.
using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

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

std::string PercentDecode(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size()) {
      int v = 0;
      if (absl::SimpleHexAtoi(s.substr(i + 1, 2), &v)) {
        out.push_back(static_cast<char>(v));
        i += 2;
      } else {
        out.push_back(s[i]);
      }
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  return std::chrono::nanoseconds(absl::ToInt64Nanoseconds(d));
}

class Server;

// Anything the server must close on shutdown.
class Connection {
 public:
  virtual ~Connection() = default;
  virtual void Close() = 0;  // Any thread.
};

// One TCP connection: reads requests one at a time (HTTP/1.1 keep-alive) and
// writes each response, or turns into an event stream until it ends. Socket
// work runs on the connection's strand, but for one shortcut: a plain-TCP
// event stream with nothing queued or in flight takes a frame straight from
// the writer's thread in one non-blocking send, and only what the socket
// does not take is queued for the strand. Most frames to a client that keeps
// up then cost one system call, not a strand hop and an asynchronous write.
template <class Stream>
class Session : public Connection, public std::enable_shared_from_this<Session<Stream>> {
 public:
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;
  // `tls` is the context of a TLS connection (null for plain HTTP).
  Session(tcp::socket socket, std::shared_ptr<ssl::context> tls, Server& server);
  // Completes the TLS handshake (if any), then serves requests.
  void Run();
  void Close() override;
  // Hands the socket and the upgrade request to a WebSocket session.
  std::shared_ptr<WebSocketConnection> Upgrade();

  // Responder and EventStreamWriter implementation details.
  void SendResponse(HttpResponse response);
  void BeginStream(Headers headers);
  bool Enqueue(std::string data);
  void SetOnClose(std::function<void()> cb) {
    {
      absl::MutexLock lock(&mu_);
      if (!stream_closed_.load()) {
        on_close_ = std::move(cb);
        return;
      }
    }
    cb();  // Already over.
  }
  bool stream_closed() const { return stream_closed_.load(); }
  size_t queued_bytes() const { return queued_bytes_.load(); }
  void WhenDrained(size_t low_water, std::function<void()> cb);

 private:
  void Read();
  void OnRead(beast::error_code ec);
  // Answers with an error body, then closes (the request cannot be served).
  void RefuseAndClose(int status, absl::string_view code, absl::string_view message);
  void Write(std::shared_ptr<http::response<http::string_body>> res);
  void WriteNextFrame() ABSL_LOCKS_EXCLUDED(out_mu_);
  // The frame went out whole; false (nothing sent, or only its start, which
  // `data` then loses) when the rest must be queued.
  bool SendNow(std::string& data) ABSL_EXCLUSIVE_LOCKS_REQUIRED(out_mu_);
  // Queues the strand's write unless one is due.
  void KickLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(out_mu_);
  void Heartbeat();
  void CheckStall();
  void HangUp(const char* reason);
  void RunDrainedCallback();
  void WatchPeer();
  void EndStream() ABSL_LOCKS_EXCLUDED(out_mu_);
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }
  // After a response with Connection: close.
  void CloseAfterResponse();

  const std::shared_ptr<ssl::context> tls_;  // Outlives stream_.
  Stream stream_;
  // stream_'s strand; kept apart because a WebSocket upgrade moves stream_.
  const asio::any_io_executor executor_;
  bool upgraded_ = false;  // stream_ now belongs to a WsSession.
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> upgrade_request_;  // Kept for the WebSocket handshake.
  Server& server_;
  bool keep_alive_ = false;

  // Event stream state. What writers share with the strand is guarded by
  // out_mu_ (the socket is closed under it too, so a send never reaches a
  // reused descriptor); the rest is the strand's.
  absl::Mutex out_mu_;
  bool streaming_ ABSL_GUARDED_BY(out_mu_) = false;
  bool hang_up_ ABSL_GUARDED_BY(out_mu_) = false;  // Close once the queue drains.
  std::atomic<bool> hanging_up_{false};
  static constexpr size_t kMaxGather = 256;
  std::deque<std::string> frames_ ABSL_GUARDED_BY(out_mu_);
  std::vector<asio::const_buffer> gather_;  // The frames in flight.
  bool writing_ ABSL_GUARDED_BY(out_mu_) = false;
  bool kicked_ ABSL_GUARDED_BY(out_mu_) = false;  // A WriteNextFrame is posted.
  std::atomic<bool> stream_closed_{false};
  std::atomic<size_t> queued_bytes_{0};
  asio::steady_timer heartbeat_;
  asio::steady_timer stall_timer_;
  std::chrono::steady_clock::time_point last_progress_ ABSL_GUARDED_BY(out_mu_);
  size_t drain_low_water_ = 0;
  std::function<void()> on_drained_;
  char peer_byte_ = 0;
  absl::Mutex mu_;
  std::function<void()> on_close_ ABSL_GUARDED_BY(mu_);
};

template <class Stream>
class ResponderImpl final : public Responder,
                            public EventStreamWriter,
                            public std::enable_shared_from_this<ResponderImpl<Stream>> {
 public:
  explicit ResponderImpl(std::shared_ptr<Session<Stream>> session) : session_(std::move(session)) {}
  void Reply(HttpResponse response) override { session_->SendResponse(std::move(response)); }
  std::shared_ptr<EventStreamWriter> StartEventStream(Headers headers) override {
    session_->BeginStream(std::move(headers));
    return this->shared_from_this();
  }
  bool Write(std::string data) override { return session_->Enqueue(std::move(data)); }
  void Close() override { session_->Close(); }
  std::shared_ptr<WebSocketConnection> AcceptWebSocket() override { return session_->Upgrade(); }
  bool closed() const override { return session_->stream_closed(); }
  size_t queued_bytes() const override { return session_->queued_bytes(); }
  void WhenDrained(size_t low_water, std::function<void()> callback) override {
    session_->WhenDrained(low_water, std::move(callback));
  }
  void OnClose(std::function<void()> callback) override {
    session_->SetOnClose(std::move(callback));
  }

 private:
  std::shared_ptr<Session<Stream>> session_;
};

class Server final : public HttpServer {
 public:
  Server(const HttpServerOptions& options, Handler handler)
      : options_(options), handler_(std::move(handler)), acceptor_(asio::make_strand(ioc_)) {}

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
  size_t open_streams() const override { return open_streams_.load(); }

  void Shutdown() override {
    if (shut_down_.exchange(true)) return;
    // On the listener's strand: a close racing an accept's completion on
    // another I/O thread would pull the descriptor from under it.
    asio::post(acceptor_.get_executor(), [this] {
      beast::error_code ec;
      acceptor_.close(ec);
      reload_timer_.cancel();
    });
    std::vector<std::shared_ptr<Connection>> sessions;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& weak : sessions_) {
        if (auto s = weak.lock()) sessions.push_back(std::move(s));
      }
    }
    for (auto& s : sessions) s->Close();
    sessions.clear();
    // Give closing handshakes a moment, then stop whatever is left.
    auto timer = std::make_shared<asio::steady_timer>(ioc_, std::chrono::milliseconds(100));
    timer->async_wait([this, timer](beast::error_code) { ioc_.stop(); });
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

  ~Server() override { Shutdown(); }

  const HttpServerOptions& options() const { return options_; }
  const Handler& handler() const { return handler_; }
  void Track(std::shared_ptr<Connection> c) {
    absl::MutexLock lock(&mu_);
    // Drop entries of finished connections now and then.
    if (sessions_.size() > 1024 && sessions_.size() % 1024 == 0) {
      std::erase_if(sessions_, [](const auto& w) { return w.expired(); });
    }
    sessions_.push_back(std::move(c));
  }
  void Forget(Connection* s) {
    absl::MutexLock lock(&mu_);
    // Not only the first match: an expired entry before `s` must not keep it
    // listed (Shutdown would close it again).
    std::erase_if(sessions_, [s](const std::weak_ptr<Connection>& w) {
      const std::shared_ptr<Connection> c = w.lock();
      return c == nullptr || c.get() == s;
    });
  }
  std::atomic<size_t> open_streams_{0};
  std::atomic<size_t> slow_clients_{0};
  size_t slow_clients() const override { return slow_clients_.load(); }

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
            auto start = [&](auto session) {
              Track(session);
              session->Run();
            };
            if (std::shared_ptr<ssl::context> tls = tls_context()) {
              start(std::make_shared<Session<TlsStream>>(std::move(socket), std::move(tls), *this));
            } else {
              start(std::make_shared<Session<PlainStream>>(std::move(socket), nullptr, *this));
            }
          }
          Accept();
        });
  }

  const HttpServerOptions options_;
  const Handler handler_;
  asio::io_context ioc_{options_.io_threads};
  // The listener's strand: accepts, the certificate reload timer and the
  // close take turns.
  tcp::acceptor acceptor_;
  std::vector<std::thread> threads_;
  int port_ = 0;
  std::atomic<bool> shut_down_{false};
  absl::Mutex mu_;
  std::vector<std::weak_ptr<Connection>> sessions_ ABSL_GUARDED_BY(mu_);
  // Accepts read it on any I/O thread; the reload timer replaces it.
  absl::Mutex tls_mu_;
  std::shared_ptr<ssl::context> tls_context_ ABSL_GUARDED_BY(tls_mu_);
  std::string tls_signature_;  // Only touched by Listen, then the timer chain.
  asio::steady_timer reload_timer_{acceptor_.get_executor()};
};

template <class Stream>
Stream MakeStream(tcp::socket socket, ssl::context* tls) {
  if constexpr (std::is_same_v<Stream, TlsStream>) {
    return Stream(std::move(socket), *tls);
  } else {
    return Stream(std::move(socket));
  }
}

template <class Stream>
Session<Stream>::Session(tcp::socket socket, std::shared_ptr<ssl::context> tls, Server& server)
    : tls_(std::move(tls)),
      stream_(MakeStream<Stream>(std::move(socket), tls_.get())),
      executor_(stream_.get_executor()),
      server_(server),
      heartbeat_(executor_),
      stall_timer_(executor_) {}

template <class Stream>
void Session<Stream>::Run() {
  asio::dispatch(executor_, [self = this->shared_from_this()] {
    if constexpr (kTls) {
      self->lowest().expires_after(ToChrono(self->server_.options().handshake_timeout));
      self->stream_.async_handshake(ssl::stream_base::server, [self](beast::error_code ec) {
        if (ec) {
          spdlog::debug("tls_handshake_failed error=\"{}\"", ec.message());
          self->lowest().close();
          self->server_.Forget(self.get());
          return;
        }
        self->Read();
      });
    } else {
      self->Read();
    }
  });
}

template <class Stream>
void Session<Stream>::CloseAfterResponse() {
  if constexpr (kTls) {
    // close_notify tells the client the response is complete; bounded, as a
    // client may never answer it.
    lowest().expires_after(std::chrono::seconds(1));
    stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) {
      self->lowest().close();
      self->server_.Forget(self.get());
    });
  } else {
    beast::error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
    lowest().close();
    server_.Forget(this);
  }
}

template <class Stream>
void Session<Stream>::Close() {
  asio::post(executor_, [self = this->shared_from_this()] {
    if (self->upgraded_) return;  // The WebSocket session closes itself.
    bool streaming;
    {
      absl::MutexLock lock(&self->out_mu_);
      streaming = self->streaming_;
      // Graceful: what is queued still goes out, then the stream ends (the
      // stall check ends it if the client takes nothing).
      if (streaming) self->hang_up_ = true;
    }
    if (streaming) {
      self->hanging_up_ = true;
      self->WriteNextFrame();
    } else {
      beast::error_code ec;
      self->lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
      self->lowest().close();
    }
  });
}

template <class Stream>
void Session<Stream>::Read() {
  parser_.emplace();
  parser_->body_limit(server_.options().max_body_bytes);
  parser_->header_limit(static_cast<uint32_t>(server_.options().max_header_bytes));
  lowest().expires_after(ToChrono(server_.options().idle_timeout));
  http::async_read(
      stream_, buffer_, *parser_,
      [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
}

template <class Stream>
void Session<Stream>::OnRead(beast::error_code ec) {
  if (ec == http::error::body_limit) {
    return RefuseAndClose(413, "payload_too_large", "request body larger than the limit");
  }
  if (ec == http::error::header_limit) {
    return RefuseAndClose(431, "headers_too_large", "request headers larger than the limit");
  }
  if (ec.category() == http::make_error_code(http::error::bad_version).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message) {
    // A request we cannot parse gets a reason before the connection closes.
    return RefuseAndClose(400, "bad_request", "malformed HTTP request: " + ec.message());
  }
  if (ec) {
    lowest().close();
    server_.Forget(this);
    return;
  }
  lowest().expires_never();
  http::request<http::string_body> msg = parser_->release();
  keep_alive_ = msg.keep_alive();
  HttpRequest req;
  req.websocket = websocket::is_upgrade(msg);
  beast::error_code remote_ec;
  req.remote = lowest().socket().remote_endpoint(remote_ec).address().to_string();
  if (req.websocket) upgrade_request_ = msg;
  req.method = std::string(msg.method_string());
  const std::string target(msg.target());
  const size_t q = target.find('?');
  req.path = PercentDecode(target.substr(0, q));
  if (q != std::string::npos) {
    for (absl::string_view kv : absl::StrSplit(target.substr(q + 1), '&', absl::SkipEmpty())) {
      const size_t eq = kv.find('=');
      req.query[PercentDecode(kv.substr(0, eq))] =
          eq == absl::string_view::npos ? "" : PercentDecode(kv.substr(eq + 1));
    }
  }
  for (const auto& field : msg) {
    req.headers[absl::AsciiStrToLower(std::string(field.name_string()))] =
        std::string(field.value());
  }
  req.body = std::move(msg.body());
  server_.handler()(std::move(req),
                    std::make_shared<ResponderImpl<Stream>>(this->shared_from_this()));
}

template <class Stream>
void Session<Stream>::RefuseAndClose(int status, absl::string_view code,
                                     absl::string_view message) {
  HttpResponse r;
  r.status = status;
  r.body = absl::StrCat(R"({"error":{"code":")", code, R"(","message":")", message,
                        R"(","field":""}})");
  keep_alive_ = false;
  SendResponse(std::move(r));
}

template <class Stream>
void Session<Stream>::SendResponse(HttpResponse response) {
  asio::post(executor_, [self = this->shared_from_this(),
                                      response = std::move(response)] {
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(response.status), 11);
    res->set(http::field::server, "taskgrid-gateway");
    res->set(http::field::content_type, response.content_type);
    for (const auto& [k, v] : response.headers) res->set(k, v);
    res->keep_alive(self->keep_alive_);
    res->body() = response.body;
    res->prepare_payload();
    self->Write(std::move(res));
  });
}

template <class Stream>
void Session<Stream>::Write(std::shared_ptr<http::response<http::string_body>> res) {
  http::async_write(stream_, *res,
                    [self = this->shared_from_this(), res](beast::error_code ec, size_t) {
                      if (ec || !self->keep_alive_) return self->CloseAfterResponse();
                      self->Read();
                    });
}

template <class Stream>
void Session<Stream>::BeginStream(Headers headers) {
  std::string head =
      "HTTP/1.1 200 OK\r\nServer: taskgrid-gateway\r\nContent-Type: text/event-stream\r\n"
      "Cache-Control: no-cache\r\nConnection: close\r\nX-Accel-Buffering: no\r\n";
  for (const auto& [k, v] : headers) absl::StrAppend(&head, k, ": ", v, "\r\n");
  head += "\r\n";
  queued_bytes_ += head.size();
  asio::post(executor_,
             [self = this->shared_from_this(), head = std::move(head)]() mutable {
               ++self->server_.open_streams_;
               {
                 absl::MutexLock lock(&self->out_mu_);
                 self->streaming_ = true;
                 self->frames_.push_front(std::move(head));  // Before what was written early.
                 self->last_progress_ = std::chrono::steady_clock::now();
               }
               self->WriteNextFrame();
               self->WatchPeer();
               self->Heartbeat();
               self->CheckStall();
             });
}

template <class Stream>
bool Session<Stream>::Enqueue(std::string data) {
  if (stream_closed_.load() || hanging_up_.load()) return false;
  if (queued_bytes_.load() + data.size() > server_.options().max_stream_queue_bytes) {
    hanging_up_ = true;
    asio::post(executor_,
               [self = this->shared_from_this()] { self->HangUp("queue limit reached"); });
    return false;
  }
  absl::MutexLock lock(&out_mu_);
  if (stream_closed_.load()) return false;
  if (SendNow(data)) return true;
  queued_bytes_ += data.size();
  frames_.push_back(std::move(data));
  KickLocked();
  return true;
}

template <class Stream>
bool Session<Stream>::SendNow(std::string& data) {
  if constexpr (kTls) {
    return false;  // Records are the TLS stream's: only the strand writes them.
  } else {
    if (!streaming_ || writing_ || !frames_.empty()) return false;  // It would overtake.
    const ssize_t n = ::send(lowest().socket().native_handle(), data.data(), data.size(),
                             MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) return false;  // Full (EAGAIN) or failing: the strand's write finds out which.
    last_progress_ = std::chrono::steady_clock::now();
    if (static_cast<size_t>(n) == data.size()) return true;
    data.erase(0, static_cast<size_t>(n));
    return false;
  }
}

template <class Stream>
void Session<Stream>::KickLocked() {
  if (writing_ || kicked_ || !streaming_) return;
  kicked_ = true;
  asio::post(executor_, [self = this->shared_from_this()] { self->WriteNextFrame(); });
}

template <class Stream>
void Session<Stream>::WriteNextFrame() {
  {
    absl::MutexLock lock(&out_mu_);
    kicked_ = false;
    if (writing_ || stream_closed_.load() || !streaming_) return;
    if (!frames_.empty()) {
      // One gathered write for everything queued (up to a bound): a busy
      // stream costs one system call per batch, not per event. Frames queued
      // meanwhile go behind: a deque keeps the ones in flight in place.
      writing_ = true;
      gather_.clear();
      for (size_t i = 0; i < frames_.size() && i < kMaxGather; ++i) {
        gather_.push_back(asio::buffer(frames_[i]));
      }
      asio::async_write(
          stream_, gather_,
          [self = this->shared_from_this(), n = gather_.size()](beast::error_code ec, size_t) {
            {
              absl::MutexLock lock(&self->out_mu_);
              self->writing_ = false;
              for (size_t i = 0; i < n; ++i) {
                self->queued_bytes_ -= self->frames_.front().size();
                self->frames_.pop_front();
              }
              if (!ec) self->last_progress_ = std::chrono::steady_clock::now();
            }
            if (ec) {
              self->EndStream();
              return;
            }
            self->RunDrainedCallback();
            self->WriteNextFrame();
          });
      return;
    }
    if (!hang_up_) return;
  }
  EndStream();  // Hung up and drained.
}

template <class Stream>
void Session<Stream>::Heartbeat() {
  heartbeat_.expires_after(ToChrono(server_.options().heartbeat_interval));
  heartbeat_.async_wait([self = this->shared_from_this()](beast::error_code ec) {
    if (ec || self->stream_closed_.load()) return;
    self->Enqueue(":\n\n");
    self->Heartbeat();
  });
}

template <class Stream>
void Session<Stream>::WhenDrained(size_t low_water, std::function<void()> cb) {
  asio::post(executor_,
             [self = this->shared_from_this(), low_water, cb = std::move(cb)] {
               self->drain_low_water_ = low_water;
               self->on_drained_ = std::move(cb);
               self->RunDrainedCallback();
             });
}

template <class Stream>
void Session<Stream>::RunDrainedCallback() {
  if (on_drained_ && (queued_bytes_.load() <= drain_low_water_ || stream_closed_.load())) {
    auto cb = std::move(on_drained_);
    on_drained_ = nullptr;
    cb();
  }
}

template <class Stream>
void Session<Stream>::CheckStall() {
  const auto timeout = ToChrono(server_.options().stall_timeout);
  stall_timer_.expires_after(timeout / 4);
  stall_timer_.async_wait([self = this->shared_from_this(), timeout](beast::error_code ec) {
    if (ec || self->stream_closed_.load()) return;
    bool stalled, hung_up;
    {
      absl::MutexLock lock(&self->out_mu_);
      stalled = !self->frames_.empty() &&
                std::chrono::steady_clock::now() - self->last_progress_ > timeout;
      hung_up = self->hang_up_;
    }
    if (stalled) {
      if (hung_up) {
        self->EndStream();  // Already ending; the client will not take the rest.
      } else {
        self->HangUp("stalled");
      }
      return;
    }
    self->CheckStall();
  });
}

template <class Stream>
void Session<Stream>::HangUp(const char* reason) {
  hanging_up_ = true;  // Writers stop first.
  {
    absl::MutexLock lock(&out_mu_);
    if (stream_closed_.load() || hang_up_) return;
    hang_up_ = true;
  }
  spdlog::info("sse_client_too_slow reason={} queued_bytes={}", reason, queued_bytes_.load());
  ++server_.slow_clients_;
  if (server_.options().on_slow_client) server_.options().on_slow_client();
  bool writing;
  {
    absl::MutexLock lock(&out_mu_);
    // With a write in flight the socket is full: the client takes nothing,
    // so no hint can reach it. Else drop what it has not taken, tell it to
    // resync, then hang up.
    writing = writing_;
    if (!writing) {
      queued_bytes_ = 0;
      frames_.clear();
      frames_.push_back("event: resync\ndata: {\"reason\":\"client too slow\"}\n\n");
      queued_bytes_ += frames_.back().size();
    }
  }
  if (writing) {
    EndStream();
  } else {
    WriteNextFrame();
  }
}

template <class Stream>
void Session<Stream>::WatchPeer() {
  // A browser never sends on an event stream; any read completion means it
  // went away.
  stream_.async_read_some(
      asio::buffer(&peer_byte_, 1),
      [self = this->shared_from_this()](beast::error_code, size_t) { self->EndStream(); });
}

template <class Stream>
void Session<Stream>::EndStream() {
  {
    absl::MutexLock lock(&out_mu_);  // No writer's send is under way.
    if (stream_closed_.exchange(true)) return;
    beast::error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    lowest().socket().close(ec);
  }
  --server_.open_streams_;
  heartbeat_.cancel();
  stall_timer_.cancel();
  std::function<void()> cb;
  {
    absl::MutexLock lock(&mu_);
    cb = std::move(on_close_);
    on_close_ = nullptr;
  }
  if (cb) cb();
  RunDrainedCallback();
  server_.Forget(this);
}

// A WebSocket connection after the upgrade: one read loop, one write queue
// (bounded like an event stream's), all on the connection's strand.
template <class Stream>
class WsSession final : public Connection,
                        public WebSocketConnection,
                        public std::enable_shared_from_this<WsSession<Stream>> {
 public:
  WsSession(Server& server, asio::any_io_executor executor)
      : server_(server), executor_(std::move(executor)), stall_timer_(executor_) {}

  // On the strand: takes the socket and completes the handshake.
  void Accept(Stream stream, http::request<http::string_body> request) {
    ws_.emplace(std::move(stream));
    ws_->set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    // Checked against each frame's header, so a larger message is refused
    // (close 1009) before it is buffered.
    ws_->read_message_max(server_.options().max_message_bytes);
    ws_->set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "taskgrid-gateway"); }));
    request_ = std::move(request);
    ws_->async_accept(request_, [self = this->shared_from_this()](beast::error_code ec) {
      if (ec) return self->End();
      self->accepted_ = true;
      ++self->server_.open_streams_;
      self->counted_ = true;
      self->last_progress_ = std::chrono::steady_clock::now();
      self->Read();
      self->WriteNext();
      self->CheckStall();
    });
  }

  bool Write(std::string data) override {
    if (closed_.load() || closing_.load()) return false;
    if (queued_bytes_.load() + data.size() > server_.options().max_stream_queue_bytes) {
      CloseWith(1008, "client too slow; reconnect and resync");
      ++server_.slow_clients_;
      if (server_.options().on_slow_client) server_.options().on_slow_client();
      return false;
    }
    queued_bytes_ += data.size();
    asio::post(executor_, [self = this->shared_from_this(), data = std::move(data)]() mutable {
      if (self->closed_.load()) return;
      self->out_.push_back(std::move(data));
      self->WriteNext();
    });
    return true;
  }
  void Close() override { CloseWith(1001, "going away"); }
  bool closed() const override { return closed_.load(); }
  size_t queued_bytes() const override { return queued_bytes_.load(); }
  void OnClose(std::function<void()> callback) override {
    asio::post(executor_, [self = this->shared_from_this(), callback = std::move(callback)] {
      if (self->closed_.load()) return callback();
      self->on_close_ = std::move(callback);
    });
  }
  void WhenDrained(size_t low_water, std::function<void()> callback) override {
    asio::post(executor_,
               [self = this->shared_from_this(), low_water, callback = std::move(callback)] {
                 self->low_water_ = low_water;
                 self->on_drained_ = std::move(callback);
                 self->RunDrained();
               });
  }
  void OnMessage(std::function<void(std::string)> callback) override {
    asio::post(executor_, [self = this->shared_from_this(), callback = std::move(callback)] {
      self->on_message_ = std::move(callback);
    });
  }
  void CloseWith(uint16_t code, std::string reason) override {
    closing_ = true;
    asio::post(executor_, [self = this->shared_from_this(), code, reason = std::move(reason)] {
      if (self->close_code_ == 0) {
        self->close_code_ = code;
        self->close_reason_ = reason;
      }
      self->WriteNext();
    });
  }

 private:
  void Read() {
    ws_->async_read(in_, [self = this->shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->End();
      if (self->on_message_) self->on_message_(beast::buffers_to_string(self->in_.data()));
      self->in_.consume(self->in_.size());
      self->Read();
    });
  }

  void WriteNext() {
    if (!accepted_ || writing_ || closed_.load()) return;
    if (out_.empty()) {
      if (close_code_ != 0 && !close_sent_) {
        close_sent_ = true;
        ws_->async_close(
            websocket::close_reason(static_cast<websocket::close_code>(close_code_), close_reason_),
            [self = this->shared_from_this()](beast::error_code) { self->End(); });
      }
      return;
    }
    writing_ = true;
    ws_->text(true);
    ws_->async_write(asio::buffer(out_.front()),
                     [self = this->shared_from_this()](beast::error_code ec, size_t) {
                       self->writing_ = false;
                       self->queued_bytes_ -= self->out_.front().size();
                       self->out_.pop_front();
                       if (ec) return self->End();
                       self->last_progress_ = std::chrono::steady_clock::now();
                       self->RunDrained();
                       self->WriteNext();
                     });
  }

  void CheckStall() {
    const auto timeout = ToChrono(server_.options().stall_timeout);
    stall_timer_.expires_after(timeout / 4);
    stall_timer_.async_wait([self = this->shared_from_this(), timeout](beast::error_code ec) {
      if (ec || self->closed_.load()) return;
      if (!self->out_.empty() &&
          std::chrono::steady_clock::now() - self->last_progress_ > timeout) {
        ++self->server_.slow_clients_;
        if (self->server_.options().on_slow_client) self->server_.options().on_slow_client();
        return self->End();  // It takes nothing; a close frame would not get through either.
      }
      self->CheckStall();
    });
  }

  void RunDrained() {
    if (on_drained_ && (queued_bytes_.load() <= low_water_ || closed_.load())) {
      auto cb = std::move(on_drained_);
      on_drained_ = nullptr;
      cb();
    }
  }

  void End() {
    if (closed_.exchange(true)) return;
    if (counted_) --server_.open_streams_;
    stall_timer_.cancel();
    if (ws_) {
      beast::error_code ec;
      beast::get_lowest_layer(*ws_).socket().close(ec);
    }
    if (auto cb = std::move(on_close_)) cb();
    RunDrained();
    server_.Forget(this);
  }

  Server& server_;
  asio::any_io_executor executor_;
  std::optional<websocket::stream<Stream>> ws_;
  http::request<http::string_body> request_;
  beast::flat_buffer in_;
  std::deque<std::string> out_;
  bool accepted_ = false, writing_ = false, counted_ = false, close_sent_ = false;
  uint16_t close_code_ = 0;
  std::string close_reason_;
  std::atomic<bool> closed_{false}, closing_{false};
  std::atomic<size_t> queued_bytes_{0};
  size_t low_water_ = 0;
  std::function<void()> on_close_, on_drained_;
  std::function<void(std::string)> on_message_;
  asio::steady_timer stall_timer_;
  std::chrono::steady_clock::time_point last_progress_;
};

template <class Stream>
std::shared_ptr<WebSocketConnection> Session<Stream>::Upgrade() {
  auto ws = std::make_shared<WsSession<Stream>>(server_, executor_);
  server_.Track(ws);
  asio::post(executor_, [self = this->shared_from_this(), ws] {
    self->upgraded_ = true;
    ws->Accept(std::move(self->stream_), std::move(self->upgrade_request_));
    self->server_.Forget(self.get());
  });
  return ws;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                              Handler handler) {
  auto server = std::make_unique<Server>(options, std::move(handler));
  if (absl::Status s = server->Listen(); !s.ok()) return s;
  return std::unique_ptr<HttpServer>(std::move(server));
}

}  // namespace taskgrid::gateway
