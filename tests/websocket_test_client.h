// A blocking WebSocket client for tests (Beast's client role; the gateway's
// server side is separate code). Every read has a deadline.
#ifndef TASKGRID_TESTS_WEBSOCKET_TEST_CLIENT_H_
#define TASKGRID_TESTS_WEBSOCKET_TEST_CLIENT_H_

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <optional>
#include <string>

namespace taskgrid::testing_ws {

class Client {
 public:
  // Connects and upgrades with `host` as Host and `origin` as Origin (none
  // when empty); ok() is false when the handshake fails.
  Client(int port, const std::string& path, const std::string& host = "127.0.0.1",
         const std::string& origin = "")
      : ws_(ioc_) {
    boost::beast::error_code ec;
    auto& socket = boost::beast::get_lowest_layer(ws_);
    socket.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)}, ec);
    socket.expires_after(std::chrono::seconds(10));
    if (!origin.empty()) {
      ws_.set_option(boost::beast::websocket::stream_base::decorator(
          [origin](boost::beast::websocket::request_type& req) {
            req.set(boost::beast::http::field::origin, origin);
          }));
    }
    if (!ec) ws_.handshake(host, path, ec);
    ok_ = !ec;
    socket.expires_never();
  }
  bool ok() const { return ok_; }

  // Writes `bytes` to the socket as they are: frames a client must not send.
  void SendRaw(const std::string& bytes) {
    boost::beast::error_code ec;
    boost::asio::write(boost::beast::get_lowest_layer(ws_).socket(), boost::asio::buffer(bytes),
                       ec);
  }

  void Send(const std::string& text) {
    boost::beast::error_code ec;
    ws_.text(true);
    ws_.write(boost::asio::buffer(text), ec);
  }

  // The next text message, or nothing when the connection closed or
  // nothing came within `timeout` (which ends the connection). After a
  // close, close_code() says why.
  std::optional<std::string> Next(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    // A sync read would ignore the stream's timer: read asynchronously and
    // run the loop for at most `timeout`.
    boost::beast::flat_buffer buf;
    std::optional<boost::beast::error_code> result;
    ws_.async_read(buf, [&](boost::beast::error_code ec, size_t) { result = ec; });
    ioc_.restart();
    ioc_.run_for(timeout);
    if (!result) {
      boost::beast::get_lowest_layer(ws_).cancel();
      ioc_.restart();
      ioc_.run();  // Lets the cancelled read finish.
      return std::nullopt;
    }
    if (*result) return std::nullopt;
    return boost::beast::buffers_to_string(buf.data());
  }
  int close_code() const { return static_cast<int>(ws_.reason().code); }

 private:
  boost::asio::io_context ioc_;
  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  bool ok_ = false;
};

}  // namespace taskgrid::testing_ws

#endif  // TASKGRID_TESTS_WEBSOCKET_TEST_CLIENT_H_
