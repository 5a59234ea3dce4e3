#include "services/gateway/gateway_metrics.h"

#include "services/common/metrics_server.h"

namespace taskgrid::gateway {

GatewayMetrics::GatewayMetrics(prometheus::Registry& r)
    : requests(prometheus::BuildCounter()
                   .Name("gateway_http_requests_total")
                   .Help("HTTP requests answered, by route and status code.")
                   .Register(r)),
      duration(prometheus::BuildHistogram()
                   .Name("gateway_http_request_duration_seconds")
                   .Help("Time to answer an HTTP request (event streams: time to open).")
                   .Register(r)),
      sse_clients(AddGauge(r, "gateway_sse_clients", "Open Server-Sent Events streams.")),
      events_delivered(
          AddCounter(r, "gateway_events_delivered_total", "Events queued to stream clients.")),
      events_dropped(AddCounter(r, "gateway_events_dropped_total",
                                "Events not delivered because the client was too slow or gone.")),
      slow_client_disconnects(AddCounter(r, "gateway_slow_client_disconnects_total",
                                         "Stream clients cut off for not keeping up.")) {}

void GatewayMetrics::Observe(const std::string& route, int code, double seconds) {
  requests.Add({{"route", route}, {"code", std::to_string(code)}}).Increment();
  duration
      .Add({{"route", route}},
           prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                   0.1, 0.25, 0.5, 1, 2.5})
      .Observe(seconds);
}

}  // namespace taskgrid::gateway
