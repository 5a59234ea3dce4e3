// One HTTP connection: requests and responses, the event stream it can turn
// into, and the hand-over of its socket to a WebSocket session.
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <deque>
#include <optional>
#include <type_traits>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "services/gateway/http_connection.h"
#include "services/gateway/websocket_session.h"

namespace taskgrid::gateway::http_internal {
namespace {

namespace websocket = beast::websocket;

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
  Session(tcp::socket socket, std::shared_ptr<ssl::context> tls, ConnectionHost& host);
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
  ConnectionHost& host_;
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

template <class Stream>
Stream MakeStream(tcp::socket socket, ssl::context* tls) {
  if constexpr (std::is_same_v<Stream, TlsStream>) {
    return Stream(std::move(socket), *tls);
  } else {
    return Stream(std::move(socket));
  }
}

template <class Stream>
Session<Stream>::Session(tcp::socket socket, std::shared_ptr<ssl::context> tls,
                         ConnectionHost& host)
    : tls_(std::move(tls)),
      stream_(MakeStream<Stream>(std::move(socket), tls_.get())),
      executor_(stream_.get_executor()),
      host_(host),
      heartbeat_(executor_),
      stall_timer_(executor_) {}

template <class Stream>
void Session<Stream>::Run() {
  asio::dispatch(executor_, [self = this->shared_from_this()] {
    if constexpr (kTls) {
      self->lowest().expires_after(ToChrono(self->host_.options().handshake_timeout));
      self->stream_.async_handshake(ssl::stream_base::server, [self](beast::error_code ec) {
        if (ec) {
          spdlog::debug("tls_handshake_failed error=\"{}\"", ec.message());
          self->lowest().close();
          self->host_.Forget(self.get());
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
      self->host_.Forget(self.get());
    });
  } else {
    beast::error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
    lowest().close();
    host_.Forget(this);
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
  parser_->body_limit(host_.options().max_body_bytes);
  parser_->header_limit(static_cast<uint32_t>(host_.options().max_header_bytes));
  lowest().expires_after(ToChrono(host_.options().idle_timeout));
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
    host_.Forget(this);
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
  host_.handler()(std::move(req),
                  std::make_shared<ResponderImpl<Stream>>(this->shared_from_this()));
}

template <class Stream>
void Session<Stream>::RefuseAndClose(int status, absl::string_view code,
                                     absl::string_view message) {
  HttpResponse r;
  r.status = status;
  r.body =
      absl::StrCat(R"({"error":{"code":")", code, R"(","message":")", message, R"(","field":""}})");
  keep_alive_ = false;
  SendResponse(std::move(r));
}

template <class Stream>
void Session<Stream>::SendResponse(HttpResponse response) {
  asio::post(executor_, [self = this->shared_from_this(), response = std::move(response)] {
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
  asio::post(executor_, [self = this->shared_from_this(), head = std::move(head)]() mutable {
    self->host_.StreamOpened();
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
  if (queued_bytes_.load() + data.size() > host_.options().max_stream_queue_bytes) {
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
  heartbeat_.expires_after(ToChrono(host_.options().heartbeat_interval));
  heartbeat_.async_wait([self = this->shared_from_this()](beast::error_code ec) {
    if (ec || self->stream_closed_.load()) return;
    self->Enqueue(":\n\n");
    self->Heartbeat();
  });
}

template <class Stream>
void Session<Stream>::WhenDrained(size_t low_water, std::function<void()> cb) {
  asio::post(executor_, [self = this->shared_from_this(), low_water, cb = std::move(cb)] {
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
  const auto timeout = ToChrono(host_.options().stall_timeout);
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
  host_.CountSlowClient();
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
    // Uncounted before the peer can see the end: whoever sees it closed
    // finds it gone from open_streams() too.
    host_.StreamEnded();
    beast::error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    lowest().socket().close(ec);
  }
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
  host_.Forget(this);
}

template <class Stream>
std::shared_ptr<WebSocketConnection> Session<Stream>::Upgrade() {
  WebSocketUpgrade<Stream> ws = StartWebSocket<Stream>(host_, executor_);
  asio::post(executor_, [self = this->shared_from_this(), accept = std::move(ws.accept)] {
    self->upgraded_ = true;
    accept(std::move(self->stream_), std::move(self->upgrade_request_));
    self->host_.Forget(self.get());
  });
  return std::move(ws.connection);
}

}  // namespace

template <class Stream>
void ServeConnection(tcp::socket socket, std::shared_ptr<ssl::context> tls, ConnectionHost& host) {
  auto session = std::make_shared<Session<Stream>>(std::move(socket), std::move(tls), host);
  host.Track(session);
  session->Run();
}

template void ServeConnection<PlainStream>(tcp::socket, std::shared_ptr<ssl::context>,
                                           ConnectionHost&);
template void ServeConnection<TlsStream>(tcp::socket, std::shared_ptr<ssl::context>,
                                         ConnectionHost&);

}  // namespace taskgrid::gateway::http_internal
