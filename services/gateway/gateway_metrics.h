// The gateway's Prometheus metrics, registered once at startup.
#ifndef TASKGRID_SERVICES_GATEWAY_GATEWAY_METRICS_H_
#define TASKGRID_SERVICES_GATEWAY_GATEWAY_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <string>

namespace taskgrid::gateway {

// Thread-safe. Holds references into `registry`, which must outlive it.
struct GatewayMetrics {
  explicit GatewayMetrics(prometheus::Registry& registry);

  // One request answered: `route` is the route pattern, never a raw path.
  void Observe(const std::string& route, int code, double seconds);

  prometheus::Family<prometheus::Counter>& requests;  // gateway_http_requests_total{route,code}
  prometheus::Family<prometheus::Histogram>&
      duration;                                  // gateway_http_request_duration_seconds{route}
  prometheus::Gauge& sse_clients;                // gateway_sse_clients
  prometheus::Counter& events_delivered;         // gateway_events_delivered_total
  prometheus::Counter& events_dropped;           // gateway_events_dropped_total
  prometheus::Counter& slow_client_disconnects;  // gateway_slow_client_disconnects_total
};

}  // namespace taskgrid::gateway

#endif  // TASKGRID_SERVICES_GATEWAY_GATEWAY_METRICS_H_
