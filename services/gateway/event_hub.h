// Fan-out for /api/events: one coordinator Watch shared by every client of
// this gateway. Each event is formatted once into an SSE frame and kept in a
// bounded ring; a client holds only its cursor and filter, so a thousand
// clients cost a filter check and a queue append per event each, not a
// thousand coordinator streams. Clients are served together in rounds, at
// least 5 ms apart and further apart the more clients there are, so a busy
// stream makes one write per client per round, not one per event, and the
// gateway's writes per second stay bounded. A cursor the ring does not cover
// is left to a dedicated coordinator Watch (the caller falls back).
#ifndef TASKGRID_SERVICES_GATEWAY_EVENT_HUB_H_
#define TASKGRID_SERVICES_GATEWAY_EVENT_HUB_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "services/gateway/gateway_metrics.h"
#include "services/gateway/http_server.h"
#include "taskgrid/v1/task_service.grpc.pb.h"

namespace taskgrid::gateway {

// Thread-safe. Owned by the gateway; outlives its subscribers' callbacks
// (Shutdown ends them all).
class EventHub {
 public:
  // `api_key` (read scope) authorizes the shared Watch where the
  // coordinator has keys.
  EventHub(v1::TaskService::Stub& stub, GatewayMetrics& metrics, std::string api_key,
           size_t max_bytes = 64 << 20);
  ~EventHub();

  // Streams events after `after` that match `filter` to `writer`. Returns
  // false (and takes nothing) when the ring cannot serve that cursor; the
  // caller then opens its own coordinator Watch. `on_end` runs once when the
  // subscription ends.
  bool Subscribe(std::shared_ptr<EventStreamWriter> writer, const v1::WatchRequest& filter,
                 uint64_t after, std::function<void()> on_end) ABSL_LOCKS_EXCLUDED(mu_);

  // Ends every subscription and the shared Watch.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Entry {
    uint64_t cursor;
    v1::EventType type;
    std::string task_id;
    std::string agent_id;
    std::string run_id;
    std::shared_ptr<const std::string> frame;
  };
  struct Subscriber {
    std::shared_ptr<EventStreamWriter> writer;
    v1::WatchRequest filter;
    uint64_t cursor;
    bool paused = false;
    bool done = false;
    std::function<void()> on_end;
  };
  class Feed;  // The shared Watch.

  // Starts the shared Watch if it is not running. Returns false when the
  // coordinator cannot be reached.
  bool EnsureFeedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnEvents(const v1::WatchResponse& batch) ABSL_LOCKS_EXCLUDED(mu_);
  // Serves every subscriber whenever events arrived, after a short delay
  // that lets more arrive.
  void FlushLoop() ABSL_LOCKS_EXCLUDED(mu_);
  void OnFeedEnded() ABSL_LOCKS_EXCLUDED(mu_);
  // Sends what `sub` may take now; pauses it when its queue is high.
  void PumpLocked(const std::shared_ptr<Subscriber>& sub) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Pump(const std::shared_ptr<Subscriber>& sub) ABSL_LOCKS_EXCLUDED(mu_);
  void EndLocked(const std::shared_ptr<Subscriber>& sub, std::vector<std::function<void()>>& ended)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  v1::TaskService::Stub& stub_;
  GatewayMetrics& metrics_;
  const std::string api_key_;
  const size_t max_bytes_;

  absl::Mutex mu_;
  std::shared_ptr<Feed> feed_ ABSL_GUARDED_BY(mu_);
  bool live_ ABSL_GUARDED_BY(mu_) = false;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  // Events (base_, base_ + entries_.size()] are in the ring.
  uint64_t base_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<Entry> entries_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::shared_ptr<Subscriber>> subscribers_ ABSL_GUARDED_BY(mu_);
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;  // Events arrived since the last round.
  absl::CondVar wake_;
  std::thread flusher_;
};

}  // namespace taskgrid::gateway

#endif  // TASKGRID_SERVICES_GATEWAY_EVENT_HUB_H_
