// The WebSocket session a connection turns into on an upgrade request.
// Private to the HTTP server's files.
#ifndef TASKGRID_SERVICES_GATEWAY_WEBSOCKET_SESSION_H_
#define TASKGRID_SERVICES_GATEWAY_WEBSOCKET_SESSION_H_

#include <boost/beast/http.hpp>
#include <functional>
#include <memory>

#include "services/gateway/http_connection.h"

namespace taskgrid::gateway::http_internal {

namespace http = beast::http;

template <class Stream>
struct WebSocketUpgrade {
  std::shared_ptr<WebSocketConnection> connection;  // What the handler writes to.
  // On the connection's strand: takes the socket, answers the handshake.
  std::function<void(Stream, http::request<http::string_body>)> accept;
};

// A tracked session, not yet accepted: one read loop and one bounded write
// queue, all on `executor` (the connection's strand).
template <class Stream>
WebSocketUpgrade<Stream> StartWebSocket(ConnectionHost& host, asio::any_io_executor executor);

}  // namespace taskgrid::gateway::http_internal

#endif  // TASKGRID_SERVICES_GATEWAY_WEBSOCKET_SESSION_H_
