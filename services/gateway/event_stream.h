// One Server-Sent Events client fed by its own coordinator Watch: the
// coordinator keeps the cursor and filters, the gateway only formats frames.
// The frame id is the coordinator's cursor, so a browser that reconnects with
// Last-Event-ID resumes exactly where it stopped.
#ifndef TASKGRID_SERVICES_GATEWAY_EVENT_STREAM_H_
#define TASKGRID_SERVICES_GATEWAY_EVENT_STREAM_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "services/gateway/gateway_metrics.h"
#include "services/gateway/http_server.h"
#include "taskgrid/v1/task_service.grpc.pb.h"

namespace taskgrid::gateway {

enum class StreamFormat {
  // `id: CURSOR`, `event: task:status` (...), `data: <TaskEvent JSON>`.
  kTaskEvents,
  // nodelink's `event: response` frames for one task's output, ending after
  // the final one.
  kNodelink,
  // WebSocket text messages {"type": "task:status", "cursor", "event"}.
  kWebSocketEvents,
  // Redis SRE's WebSocket messages for one task: {"update_type":
  // "status_change" | "progress" | "output", "thread_id", ...}.
  kRedisSre,
};

// The SSE name of an event type ("task:status", "agent:connected", ...).
std::string SseEventName(v1::EventType type);

// One event as an SSE frame: `id: CURSOR`, `event: NAME`, `data: JSON`.
std::string SseFrame(const v1::TaskEvent& event);

// Owns itself until the Watch ends; ends when the HTTP client goes away, is
// too slow, or the coordinator closes the stream. Thread-safe.
class EventStream final : public grpc::ClientReadReactor<v1::WatchResponse> {
 public:
  // Starts `watch` and writes its events to `writer`. Frames in `initial`
  // are written first. `api_key` is forwarded to the coordinator. `on_end`
  // runs once when the stream is over.
  static std::weak_ptr<EventStream> Start(v1::TaskService::Stub& stub,
                                          const v1::WatchRequest& watch, const std::string& api_key,
                                          std::shared_ptr<EventStreamWriter> writer,
                                          StreamFormat format, std::vector<std::string> initial,
                                          GatewayMetrics& metrics, std::function<void()> on_end);

  // Ends the Watch (the stream then ends too). Any thread.
  void Cancel() { context_.TryCancel(); }

 private:
  EventStream(std::shared_ptr<EventStreamWriter> writer, StreamFormat format,
              GatewayMetrics& metrics)
      : writer_(std::move(writer)), format_(format), metrics_(metrics) {}

  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;
  // Formats and queues one event; false when the stream must end.
  bool Deliver(const v1::TaskEvent& event);

  static constexpr size_t kHighWaterBytes = 512 << 10;
  static constexpr size_t kLowWaterBytes = 128 << 10;

  grpc::ClientContext context_;
  v1::WatchRequest request_;
  v1::WatchResponse batch_;
  std::shared_ptr<EventStreamWriter> writer_;
  const StreamFormat format_;
  GatewayMetrics& metrics_;
  std::shared_ptr<EventStream> self_;
  std::function<void()> on_end_;
  int64_t sequence_ = 0;  // nodelink's per-stream message counter.
};

}  // namespace taskgrid::gateway

#endif  // TASKGRID_SERVICES_GATEWAY_EVENT_STREAM_H_
