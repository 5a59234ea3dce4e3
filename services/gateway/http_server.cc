// The only translation unit that includes Beast (it is slow to compile).
#include "services/gateway/http_server.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <deque>
#include <optional>
#include <thread>

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
using tcp = asio::ip::tcp;

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
// writes each response, or turns into an event stream until it ends. All
// socket work runs on the connection's strand.
class Session : public Connection, public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Server& server);
  void Run() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->Read(); });
  }
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
  void Write(std::shared_ptr<http::response<http::string_body>> res);
  void WriteNextFrame();
  void Heartbeat();
  void CheckStall();
  void HangUp(const char* reason);
  void RunDrainedCallback();
  void WatchPeer();
  void EndStream();

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> upgrade_request_;  // Kept for the WebSocket handshake.
  Server& server_;
  bool keep_alive_ = false;

  // Event stream state, on the strand except the atomics.
  bool streaming_ = false;
  bool hang_up_ = false;  // Close once the queue drains.
  std::atomic<bool> hanging_up_{false};
  static constexpr size_t kMaxGather = 256;
  std::deque<std::string> frames_;
  std::vector<asio::const_buffer> gather_;  // The frames in flight.
  bool writing_ = false;
  std::atomic<bool> stream_closed_{false};
  std::atomic<size_t> queued_bytes_{0};
  asio::steady_timer heartbeat_;
  asio::steady_timer stall_timer_;
  std::chrono::steady_clock::time_point last_progress_;
  size_t drain_low_water_ = 0;
  std::function<void()> on_drained_;
  char peer_byte_ = 0;
  absl::Mutex mu_;
  std::function<void()> on_close_ ABSL_GUARDED_BY(mu_);
};

class ResponderImpl final : public Responder,
                            public EventStreamWriter,
                            public std::enable_shared_from_this<ResponderImpl> {
 public:
  explicit ResponderImpl(std::shared_ptr<Session> session) : session_(std::move(session)) {}
  void Reply(HttpResponse response) override { session_->SendResponse(std::move(response)); }
  std::shared_ptr<EventStreamWriter> StartEventStream(Headers headers) override {
    session_->BeginStream(std::move(headers));
    return shared_from_this();
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
  std::shared_ptr<Session> session_;
};

class Server final : public HttpServer {
 public:
  Server(const HttpServerOptions& options, Handler handler)
      : options_(options), handler_(std::move(handler)), acceptor_(ioc_) {}

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
    Accept();
    for (int i = 0; i < options_.io_threads; ++i) threads_.emplace_back([this] { ioc_.run(); });
    return absl::OkStatus();
  }

  int port() const override { return port_; }
  size_t open_streams() const override { return open_streams_.load(); }

  void Shutdown() override {
    if (shut_down_.exchange(true)) return;
    asio::post(ioc_, [this] {
      beast::error_code ec;
      acceptor_.close(ec);
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
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
      if (it->expired() || it->lock().get() == s) {
        sessions_.erase(it);
        return;
      }
    }
  }
  std::atomic<size_t> open_streams_{0};
  std::atomic<size_t> slow_clients_{0};
  size_t slow_clients() const override { return slow_clients_.load(); }

 private:
  void Accept() {
    acceptor_.async_accept(
        asio::make_strand(ioc_), [this](beast::error_code ec, tcp::socket socket) {
          if (ec) {
            if (ec != asio::error::operation_aborted)
              spdlog::warn("http_accept_failed error=\"{}\"", ec.message());
            if (!acceptor_.is_open()) return;
          } else {
            auto session = std::make_shared<Session>(std::move(socket), *this);
            {
              absl::MutexLock lock(&mu_);
              // Drop entries of finished sessions now and then.
              if (sessions_.size() > 1024 && sessions_.size() % 1024 == 0) {
                std::erase_if(sessions_, [](const auto& w) { return w.expired(); });
              }
              sessions_.push_back(session);
            }
            session->Run();
          }
          Accept();
        });
  }

  const HttpServerOptions options_;
  const Handler handler_;
  asio::io_context ioc_{options_.io_threads};
  tcp::acceptor acceptor_;
  std::vector<std::thread> threads_;
  int port_ = 0;
  std::atomic<bool> shut_down_{false};
  absl::Mutex mu_;
  std::vector<std::weak_ptr<Connection>> sessions_ ABSL_GUARDED_BY(mu_);
};

Session::Session(tcp::socket socket, Server& server)
    : stream_(std::move(socket)),
      server_(server),
      heartbeat_(stream_.get_executor()),
      stall_timer_(stream_.get_executor()) {}

void Session::Close() {
  asio::post(stream_.get_executor(), [self = shared_from_this()] {
    if (self->streaming_) {
      // Graceful: what is queued still goes out, then the stream ends (the
      // stall check ends it if the client takes nothing).
      self->hang_up_ = true;
      self->hanging_up_ = true;
      self->WriteNextFrame();
    } else {
      beast::error_code ec;
      self->stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
      self->stream_.close();
    }
  });
}

void Session::Read() {
  parser_.emplace();
  parser_->body_limit(server_.options().max_body_bytes);
  parser_->header_limit(static_cast<uint32_t>(server_.options().max_header_bytes));
  stream_.expires_after(ToChrono(server_.options().idle_timeout));
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
}

void Session::OnRead(beast::error_code ec) {
  if (ec == http::error::body_limit || ec == http::error::header_limit) {
    HttpResponse r;
    r.status = ec == http::error::body_limit ? 413 : 431;
    r.body = absl::StrCat(R"({"error":{"code":")",
                          r.status == 413 ? "payload_too_large" : "headers_too_large",
                          R"(","message":"request )", r.status == 413 ? "body" : "headers",
                          R"( larger than the limit","field":""}})");
    keep_alive_ = false;
    SendResponse(std::move(r));
    return;
  }
  if (ec) {
    stream_.close();
    server_.Forget(this);
    return;
  }
  stream_.expires_never();
  http::request<http::string_body> msg = parser_->release();
  keep_alive_ = msg.keep_alive();
  HttpRequest req;
  req.websocket = websocket::is_upgrade(msg);
  beast::error_code remote_ec;
  req.remote = stream_.socket().remote_endpoint(remote_ec).address().to_string();
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
  server_.handler()(std::move(req), std::make_shared<ResponderImpl>(shared_from_this()));
}

void Session::SendResponse(HttpResponse response) {
  asio::post(stream_.get_executor(), [self = shared_from_this(), response = std::move(response)] {
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

void Session::Write(std::shared_ptr<http::response<http::string_body>> res) {
  http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code ec, size_t) {
    if (ec || !self->keep_alive_) {
      beast::error_code ignored;
      self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      self->stream_.close();
      self->server_.Forget(self.get());
      return;
    }
    self->Read();
  });
}

void Session::BeginStream(Headers headers) {
  std::string head =
      "HTTP/1.1 200 OK\r\nServer: taskgrid-gateway\r\nContent-Type: text/event-stream\r\n"
      "Cache-Control: no-cache\r\nConnection: close\r\nX-Accel-Buffering: no\r\n";
  for (const auto& [k, v] : headers) absl::StrAppend(&head, k, ": ", v, "\r\n");
  head += "\r\n";
  queued_bytes_ += head.size();
  asio::post(stream_.get_executor(), [self = shared_from_this(), head = std::move(head)]() mutable {
    self->streaming_ = true;
    ++self->server_.open_streams_;
    self->frames_.push_front(std::move(head));
    self->last_progress_ = std::chrono::steady_clock::now();
    self->WriteNextFrame();
    self->WatchPeer();
    self->Heartbeat();
    self->CheckStall();
  });
}

bool Session::Enqueue(std::string data) {
  if (stream_closed_.load() || hanging_up_.load()) return false;
  if (queued_bytes_.load() + data.size() > server_.options().max_stream_queue_bytes) {
    hanging_up_ = true;
    asio::post(stream_.get_executor(),
               [self = shared_from_this()] { self->HangUp("queue limit reached"); });
    return false;
  }
  queued_bytes_ += data.size();
  asio::post(stream_.get_executor(), [self = shared_from_this(), data = std::move(data)]() mutable {
    if (self->stream_closed_.load()) return;
    self->frames_.push_back(std::move(data));
    self->WriteNextFrame();
  });
  return true;
}

void Session::WriteNextFrame() {
  if (writing_ || stream_closed_.load() || !streaming_) return;
  if (frames_.empty()) {
    if (hang_up_) EndStream();
    return;
  }
  // One gathered write for everything queued (up to a bound): a busy stream
  // costs one system call per batch, not per event.
  writing_ = true;
  gather_.clear();
  for (size_t i = 0; i < frames_.size() && i < kMaxGather; ++i) {
    gather_.push_back(asio::buffer(frames_[i]));
  }
  asio::async_write(stream_.socket(), gather_,
                    [self = shared_from_this(), n = gather_.size()](beast::error_code ec, size_t) {
                      self->writing_ = false;
                      for (size_t i = 0; i < n; ++i) {
                        self->queued_bytes_ -= self->frames_.front().size();
                        self->frames_.pop_front();
                      }
                      if (ec) {
                        self->EndStream();
                        return;
                      }
                      self->last_progress_ = std::chrono::steady_clock::now();
                      self->RunDrainedCallback();
                      self->WriteNextFrame();
                    });
}

void Session::Heartbeat() {
  heartbeat_.expires_after(ToChrono(server_.options().heartbeat_interval));
  heartbeat_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec || self->stream_closed_.load()) return;
    self->Enqueue(":\n\n");
    self->Heartbeat();
  });
}

void Session::WhenDrained(size_t low_water, std::function<void()> cb) {
  asio::post(stream_.get_executor(), [self = shared_from_this(), low_water, cb = std::move(cb)] {
    self->drain_low_water_ = low_water;
    self->on_drained_ = std::move(cb);
    self->RunDrainedCallback();
  });
}

void Session::RunDrainedCallback() {
  if (on_drained_ && (queued_bytes_.load() <= drain_low_water_ || stream_closed_.load())) {
    auto cb = std::move(on_drained_);
    on_drained_ = nullptr;
    cb();
  }
}

void Session::CheckStall() {
  const auto timeout = ToChrono(server_.options().stall_timeout);
  stall_timer_.expires_after(timeout / 4);
  stall_timer_.async_wait([self = shared_from_this(), timeout](beast::error_code ec) {
    if (ec || self->stream_closed_.load()) return;
    if (!self->frames_.empty() &&
        std::chrono::steady_clock::now() - self->last_progress_ > timeout) {
      if (self->hang_up_) {
        self->EndStream();  // Already ending; the client will not take the rest.
      } else {
        self->HangUp("stalled");
      }
      return;
    }
    self->CheckStall();
  });
}

void Session::HangUp(const char* reason) {
  if (stream_closed_.load() || hang_up_) return;
  spdlog::info("sse_client_too_slow reason={} queued_bytes={}", reason, queued_bytes_.load());
  ++server_.slow_clients_;
  if (server_.options().on_slow_client) server_.options().on_slow_client();
  hanging_up_ = true;
  hang_up_ = true;
  if (writing_) {  // The socket is full: the client takes nothing, so no hint can reach it.
    EndStream();
    return;
  }
  // Drop what it has not taken, tell it to resync, then hang up.
  queued_bytes_ = 0;
  frames_.clear();
  frames_.push_back("event: resync\ndata: {\"reason\":\"client too slow\"}\n\n");
  queued_bytes_ += frames_.back().size();
  WriteNextFrame();
}

void Session::WatchPeer() {
  // A browser never sends on an event stream; any read completion means it
  // went away.
  stream_.socket().async_read_some(
      asio::buffer(&peer_byte_, 1),
      [self = shared_from_this()](beast::error_code, size_t) { self->EndStream(); });
}

void Session::EndStream() {
  if (stream_closed_.exchange(true)) return;
  --server_.open_streams_;
  heartbeat_.cancel();
  stall_timer_.cancel();
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
  stream_.socket().close(ec);
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
class WsSession final : public Connection,
                        public WebSocketConnection,
                        public std::enable_shared_from_this<WsSession> {
 public:
  WsSession(Server& server, asio::any_io_executor executor)
      : server_(server), executor_(std::move(executor)), stall_timer_(executor_) {}

  // On the strand: takes the socket and completes the handshake.
  void Accept(beast::tcp_stream stream, http::request<http::string_body> request) {
    ws_.emplace(std::move(stream));
    ws_->set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_->set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "taskgrid-gateway"); }));
    request_ = std::move(request);
    ws_->async_accept(request_, [self = shared_from_this()](beast::error_code ec) {
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
    asio::post(executor_, [self = shared_from_this(), data = std::move(data)]() mutable {
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
    asio::post(executor_, [self = shared_from_this(), callback = std::move(callback)] {
      if (self->closed_.load()) return callback();
      self->on_close_ = std::move(callback);
    });
  }
  void WhenDrained(size_t low_water, std::function<void()> callback) override {
    asio::post(executor_, [self = shared_from_this(), low_water, callback = std::move(callback)] {
      self->low_water_ = low_water;
      self->on_drained_ = std::move(callback);
      self->RunDrained();
    });
  }
  void OnMessage(std::function<void(std::string)> callback) override {
    asio::post(executor_, [self = shared_from_this(), callback = std::move(callback)] {
      self->on_message_ = std::move(callback);
    });
  }
  void CloseWith(uint16_t code, std::string reason) override {
    closing_ = true;
    asio::post(executor_, [self = shared_from_this(), code, reason = std::move(reason)] {
      if (self->close_code_ == 0) {
        self->close_code_ = code;
        self->close_reason_ = reason;
      }
      self->WriteNext();
    });
  }

 private:
  void Read() {
    ws_->async_read(in_, [self = shared_from_this()](beast::error_code ec, size_t) {
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
            [self = shared_from_this()](beast::error_code) { self->End(); });
      }
      return;
    }
    writing_ = true;
    ws_->text(true);
    ws_->async_write(asio::buffer(out_.front()),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
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
    stall_timer_.async_wait([self = shared_from_this(), timeout](beast::error_code ec) {
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
  std::optional<websocket::stream<beast::tcp_stream>> ws_;
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

std::shared_ptr<WebSocketConnection> Session::Upgrade() {
  auto ws = std::make_shared<WsSession>(server_, stream_.get_executor());
  server_.Track(ws);
  asio::post(stream_.get_executor(), [self = shared_from_this(), ws] {
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
