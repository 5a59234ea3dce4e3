// The gateway: a stateless translator from HTTP to the coordinator's gRPC
// TaskService. JSON REST (the proto3 JSON mapping of taskgrid.v1, plus
// nodelink's documented shapes), Server-Sent Events fed by Watch with the
// coordinator's cursor as the event id, health and readiness. Any number of
// gateways can run against one coordinator.
#ifndef TASKGRID_SERVICES_GATEWAY_GATEWAY_H_
#define TASKGRID_SERVICES_GATEWAY_GATEWAY_H_

#include <grpcpp/grpcpp.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "services/common/metrics_server.h"
#include "services/gateway/gateway_metrics.h"
#include "services/gateway/http_server.h"
#include "taskgrid/v1/task_service.grpc.pb.h"

namespace taskgrid::gateway {

struct GatewayOptions {
  // HTTP address for browsers and REST clients; port 0 picks one.
  std::string http_address = "127.0.0.1:8080";
  // Prometheus /metrics address; empty disables it.
  std::string metrics_address = "127.0.0.1:9102";
  // The coordinator's gRPC address.
  std::string coordinator_address = "127.0.0.1:7000";
  // Allow a non-loopback HTTP address. The gateway forwards each caller's
  // key to the coordinator, which decides; a coordinator without keys would
  // otherwise be open to the network through us.
  bool insecure = false;
  HttpServerOptions http;

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
  // Open event streams of one task on this gateway.
  int StreamsFor(const std::string& task_id) ABSL_LOCKS_EXCLUDED(streams_mu_);

  const GatewayOptions options_;
  std::shared_ptr<prometheus::Registry> registry_;
  GatewayMetrics metrics_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::TaskService::Stub> stub_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<MetricsServer> metrics_server_;
  absl::Mutex streams_mu_;
  absl::flat_hash_map<std::string, int> task_streams_ ABSL_GUARDED_BY(streams_mu_);
};

}  // namespace taskgrid::gateway

#endif  // TASKGRID_SERVICES_GATEWAY_GATEWAY_H_
