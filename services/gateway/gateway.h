// The gateway: a stateless translator from HTTP to the coordinator's gRPC
// TaskService. JSON REST (the proto3 JSON mapping of taskgrid.v1, plus
// nodelink's documented shapes), Server-Sent Events fed by Watch with the
// coordinator's cursor as the event id, health and readiness. Any number of
// gateways can run against one coordinator.
#ifndef TASKGRID_SERVICES_GATEWAY_GATEWAY_H_
#define TASKGRID_SERVICES_GATEWAY_GATEWAY_H_

#include <grpcpp/grpcpp.h>
#include <prometheus/registry.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "services/common/metrics_server.h"
#include "services/common/rate_limiter.h"
#include "services/gateway/edge_policy.h"
#include "services/gateway/event_hub.h"
#include "services/gateway/event_stream.h"
#include "services/gateway/gateway_metrics.h"
#include "services/gateway/http_server.h"
#include "taskgrid/v1/monitoring.grpc.pb.h"
#include "taskgrid/v1/task_service.grpc.pb.h"

namespace taskgrid::gateway {

struct Exchange;  // gateway_routes.h
using ExchangePtr = std::shared_ptr<const Exchange>;

struct GatewayOptions {
  // HTTP address for browsers and REST clients; port 0 picks one.
  std::string http_address = "127.0.0.1:8080";
  // Prometheus /metrics address; empty disables it.
  std::string metrics_address = "127.0.0.1:9102";
  // The coordinator's gRPC address.
  std::string coordinator_address = "127.0.0.1:7000";
  // TLS to the coordinator (plaintext when coordinator_tls.ca_file is empty).
  ChannelTlsOptions coordinator_tls;
  // Allow a non-loopback HTTP address without HTTPS (http.tls) and in front
  // of a coordinator that checks no keys. The gateway forwards each caller's
  // key to the coordinator, which decides; a coordinator without keys would
  // otherwise be open to the network through us.
  bool insecure = false;
  // Requests per second per caller (its API key when the coordinator checks
  // keys, else its address: a key nobody checks is anyone's to invent), with
  // bursts up to rate_burst; 0 disables. Beyond: 429 and Retry-After.
  double rate_limit = 100;
  double rate_burst = 200;
  // Origins whose pages may call the gateway (CORS); "*" allows any. Empty:
  // only the dashboard's own origin.
  std::vector<std::string> cors_origins;
  // DNS names requests may carry as Host besides addresses and localhost
  // (a gateway reached by name, or behind a proxy); "*" allows any.
  std::vector<std::string> allowed_hosts;
  // Open event streams and WebSockets per caller (429 beyond).
  int max_streams_per_caller = 64;
  // Longest path plus query string (414 beyond).
  size_t max_url_bytes = 8192;
  HttpServerOptions http;
  // This gateway's name in service health ("gateway/ID"); empty: host:port.
  std::string gateway_id;
  // How often it reports its health to the coordinator; zero: never.
  absl::Duration health_interval = absl::Seconds(5);
  // Key for its own calls (health reports) when the coordinator has keys.
  std::string api_key;

  absl::Status Validate() const;
};

// Owns the HTTP server, the coordinator channel and the metrics endpoint.
// Thread-safe; Shutdown (or destruction) closes every stream.
class Gateway {
 public:
  static absl::StatusOr<std::unique_ptr<Gateway>> Start(const GatewayOptions& options);
  ~Gateway();

  int http_port() const { return http_->port(); }
  int metrics_port() const { return metrics_server_ ? metrics_server_->port() : 0; }
  const HttpServer& http() const { return *http_; }
  void Shutdown();

 private:
  explicit Gateway(const GatewayOptions& options);
  void Handle(HttpRequest request, std::shared_ptr<Responder> responder);
  // The routes, after the edge policy: each in its own file.
  void ServeWebSocket(ExchangePtr x);   // gateway_websocket.cc
  void ServeApi(ExchangePtr x);         // gateway_api.cc
  void ServeMonitoring(ExchangePtr x);  // gateway_monitoring.cc
  void ServeNodelink(ExchangePtr x);    // gateway_nodelink.cc
  // Task `id`, asked for with `req`'s key.
  void GetTask(const HttpRequest& req, const std::string& id,
               std::function<void(const grpc::Status&, const v1::Task&)> done);
  // Answers `x` with an event stream of `watch` that opens with `initial`,
  // unless the client resumes after a cursor (Last-Event-ID or ?after=).
  void StartStream(const ExchangePtr& x, const std::string& route, v1::WatchRequest watch,
                   StreamFormat format, std::vector<std::string> initial);
  // Open event streams of one task on this gateway.
  int StreamsFor(const std::string& task_id) ABSL_LOCKS_EXCLUDED(streams_mu_);
  // Counts a new stream for `caller` and `task_id` unless the caller is at
  // its limit; the returned callback (null when refused) uncounts it.
  std::function<void()> OpenStream(const std::string& caller, const std::string& task_id)
      ABSL_LOCKS_EXCLUDED(streams_mu_);
  // Asks the coordinator whether it checks API keys (GetInfo) and records
  // the answer; `wait` bounds a wait for it to come up.
  void ProbeCoordinator(absl::Duration wait);
  // Who a request with API key `key` counts against for rate and stream
  // limits.
  std::string CallerOf(const HttpRequest& req, const std::string& key) const;
  // Counts a stream as in flight until `on_end` has run.
  std::function<void()> CountStream(std::function<void()> on_end);
  // Remembers a stream so Shutdown can cancel it.
  void TrackStream(std::weak_ptr<EventStream> stream) ABSL_LOCKS_EXCLUDED(streams_mu_);
  // Sends this gateway's health and counters every health_interval, and
  // asks the coordinator again whether it checks keys (they can change).
  void ReportHealthLoop();

  const GatewayOptions options_;
  const EdgePolicy edge_;
  // Off loopback without --insecure: served only once the coordinator is
  // known to check keys.
  const bool needs_coordinator_keys_;
  enum class Keys { kUnknown, kRequired, kNone };
  std::atomic<Keys> coordinator_keys_{Keys::kUnknown};
  std::shared_ptr<prometheus::Registry> registry_;
  GatewayMetrics metrics_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::TaskService::Stub> stub_;
  std::unique_ptr<v1::MonitoringService::Stub> monitoring_;
  std::unique_ptr<EventHub> hub_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<MetricsServer> metrics_server_;
  absl::Mutex streams_mu_;
  absl::flat_hash_map<std::string, int> task_streams_ ABSL_GUARDED_BY(streams_mu_);
  absl::flat_hash_map<std::string, int> caller_streams_ ABSL_GUARDED_BY(streams_mu_);
  std::vector<std::weak_ptr<EventStream>> streams_ ABSL_GUARDED_BY(streams_mu_);
  // Coordinator calls and streams whose callbacks have not finished.
  std::atomic<int> inflight_{0};
  RateLimiter limiter_;
  // Requests answered, those answered 5xx, and their total time, for health.
  std::atomic<int64_t> requests_{0};
  std::atomic<int64_t> server_errors_{0};
  std::atomic<int64_t> busy_micros_{0};
  const absl::Time started_ = absl::Now();
  absl::Notification stop_reporting_;
  std::thread reporter_;
};

}  // namespace taskgrid::gateway

#endif  // TASKGRID_SERVICES_GATEWAY_GATEWAY_H_
