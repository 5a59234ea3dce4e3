// A WebSocket connection after its HTTP upgrade.
#include "services/gateway/websocket_session.h"

#include <atomic>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <deque>
#include <optional>

namespace taskgrid::gateway::http_internal {
namespace {

namespace websocket = beast::websocket;

// A WebSocket connection after the upgrade: one read loop, one write queue
// (bounded like an event stream's), all on the connection's strand.
template <class Stream>
class WsSession final : public Connection,
                        public WebSocketConnection,
                        public std::enable_shared_from_this<WsSession<Stream>> {
 public:
  WsSession(ConnectionHost& host, asio::any_io_executor executor)
      : host_(host), executor_(std::move(executor)), stall_timer_(executor_) {}

  // On the strand: takes the socket and completes the handshake.
  void Accept(Stream stream, http::request<http::string_body> request) {
    ws_.emplace(std::move(stream));
    ws_->set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    // Checked against each frame's header, so a larger message is refused
    // (close 1009) before it is buffered.
    ws_->read_message_max(host_.options().max_message_bytes);
    ws_->set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "taskgrid-gateway"); }));
    request_ = std::move(request);
    ws_->async_accept(request_, [self = this->shared_from_this()](beast::error_code ec) {
      if (ec) return self->End();
      self->accepted_ = true;
      self->host_.StreamOpened();
      self->counted_ = true;
      self->last_progress_ = std::chrono::steady_clock::now();
      self->Read();
      self->WriteNext();
      self->CheckStall();
    });
  }

  bool Write(std::string data) override {
    if (closed_.load() || closing_.load()) return false;
    if (queued_bytes_.load() + data.size() > host_.options().max_stream_queue_bytes) {
      CloseWith(1008, "client too slow; reconnect and resync");
      host_.CountSlowClient();
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
    const auto timeout = ToChrono(host_.options().stall_timeout);
    stall_timer_.expires_after(timeout / 4);
    stall_timer_.async_wait([self = this->shared_from_this(), timeout](beast::error_code ec) {
      if (ec || self->closed_.load()) return;
      if (!self->out_.empty() &&
          std::chrono::steady_clock::now() - self->last_progress_ > timeout) {
        self->host_.CountSlowClient();
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
    if (counted_) host_.StreamEnded();
    stall_timer_.cancel();
    if (ws_) {
      beast::error_code ec;
      beast::get_lowest_layer(*ws_).socket().close(ec);
    }
    if (auto cb = std::move(on_close_)) cb();
    RunDrained();
    host_.Forget(this);
  }

  ConnectionHost& host_;
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

}  // namespace

template <class Stream>
WebSocketUpgrade<Stream> StartWebSocket(ConnectionHost& host, asio::any_io_executor executor) {
  auto ws = std::make_shared<WsSession<Stream>>(host, std::move(executor));
  host.Track(ws);
  return {ws, [ws](Stream stream, http::request<http::string_body> request) {
            ws->Accept(std::move(stream), std::move(request));
          }};
}

template WebSocketUpgrade<PlainStream> StartWebSocket(ConnectionHost&, asio::any_io_executor);
template WebSocketUpgrade<TlsStream> StartWebSocket(ConnectionHost&, asio::any_io_executor);

}  // namespace taskgrid::gateway::http_internal
