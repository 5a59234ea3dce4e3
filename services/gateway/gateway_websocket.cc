// WebSockets: one task's events (/api/v1/ws/tasks/{id}) and the monitoring feed.
#include <google/protobuf/struct.pb.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/gateway/gateway.h"
#include "services/gateway/gateway_routes.h"

namespace taskgrid::gateway {

void Gateway::ServeWebSocket(ExchangePtr x) {
  const HttpRequest& req = x->req;
  const std::shared_ptr<Responder>& responder = x->responder;
  const Reply& reply = x->reply;
  const std::vector<std::string>& parts = x->parts;
  const std::string &p0 = x->p0, &p1 = x->p1, &p2 = x->p2, &p3 = x->p3, &caller = x->caller,
                    &key = x->key;
  auto& async = *stub_->async();
  // Messages from the client: {"type":"ping"} is answered with a pong.
  auto serve = [this, req, caller, key](std::shared_ptr<WebSocketConnection> ws,
                                        v1::WatchRequest watch, StreamFormat format,
                                        std::vector<std::string> initial) {
    std::weak_ptr<WebSocketConnection> weak = ws;
    ws->OnMessage([weak](std::string text) {
      auto conn = weak.lock();
      if (!conn) return;
      google::protobuf::Struct msg;
      if (FromJson(text, &msg).ok() && msg.fields().count("type") &&
          msg.fields().at("type").string_value() == "ping") {
        conn->Write(R"({"type":"pong"})");
      }
    });
    if (const std::string after = req.Query("after"); !after.empty()) {
      uint64_t cursor = 0;
      if (!absl::SimpleAtoi(after, &cursor)) return ws->CloseWith(4400, "after: not a cursor");
      watch.set_after_cursor(cursor);
      initial.clear();
    }
    metrics_.Observe(
        req.path.rfind("/ws/monitoring", 0) == 0 ? "/ws/monitoring" : "/api/v1/ws/tasks/{id}", 101,
        0);
    auto close_stream = OpenStream(caller, watch.task_id());
    if (!close_stream) return ws->CloseWith(4429, "too many open streams for this caller");
    TrackStream(EventStream::Start(*stub_, watch, key, ws, format, std::move(initial), metrics_,
                                   CountStream(std::move(close_stream))));
  };
  if (p0 == "api" && p1 == "v1" && p2 == "ws" && p3 == "tasks" && parts.size() == 5) {
    const std::string id = parts[4];
    return GetTask(req, id, [responder, serve, id](const grpc::Status& s, const v1::Task& t) {
      auto ws = responder->AcceptWebSocket();
      if (s.error_code() == grpc::StatusCode::NOT_FOUND)
        return ws->CloseWith(4004, "task not found");
      if (!s.ok()) return ws->CloseWith(4000 + ErrorResponse(s).status, s.error_message());
      v1::WatchRequest watch;
      watch.set_task_id(id);
      watch.set_after_cursor(0);
      serve(
          ws, watch, StreamFormat::kRedisSre,
          {absl::StrCat(R"({"update_type":"initial_state","thread_id":)", JsonString(id),
                        R"(,"status":)", JsonString(NodelinkStatus(t.status())), R"(,"task":)",
                        ToJson(t), R"(,"timestamp":)", JsonString(Rfc3339(t.updated_at())), "}")});
    });
  }
  if (req.path == "/ws/monitoring") {
    v1::WatchRequest watch;
    watch.set_task_id(req.Query("task_id"));
    if (absl::Status s = AddEventTypes("event_types", req.Query("event_types"), watch); !s.ok()) {
      return reply("/ws/monitoring",
                   ErrorResponse(400, "invalid_argument", s.message(), "event_types"));
    }
    const bool stats_only = req.Query("stats_only") == "true";
    if (stats_only) {
      watch.clear_types();
      watch.add_types(v1::EVENT_TYPE_TASK_STATUS);
      watch.add_types(v1::EVENT_TYPE_SYSTEM_METRICS);
    }
    return CallCoordinator<v1::StatsRequest, v1::StatsResponse>(
        inflight_, req, v1::StatsRequest(),
        [&async](auto* c, auto* q, auto* r, auto cb) { async.Stats(c, q, r, cb); },
        [responder, serve, watch](const grpc::Status& s, const v1::StatsResponse& stats) {
          auto ws = responder->AcceptWebSocket();
          if (!s.ok()) return ws->CloseWith(4000 + ErrorResponse(s).status, s.error_message());
          serve(ws, watch, StreamFormat::kWebSocketEvents,
                {absl::StrCat(R"({"type":"stats_snapshot","stats":)", ToJson(stats), "}")});
        });
  }
  return reply("websocket", ErrorResponse(404, "not_found", "no WebSocket at " + req.path));
}

}  // namespace taskgrid::gateway
