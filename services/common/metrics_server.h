// Serves a prometheus::Registry at /metrics on its own port, with a
// `<service>_build_info` gauge; and the one-line registration helpers every
// service's metrics struct uses.
#ifndef TASKGRID_SERVICES_COMMON_METRICS_SERVER_H_
#define TASKGRID_SERVICES_COMMON_METRICS_SERVER_H_

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace taskgrid {

// Register an unlabelled metric and return it.
prometheus::Counter& AddCounter(prometheus::Registry& r, const std::string& name,
                                const std::string& help);
prometheus::Gauge& AddGauge(prometheus::Registry& r, const std::string& name,
                            const std::string& help);
prometheus::Histogram& AddHistogram(prometheus::Registry& r, const std::string& name,
                                    const std::string& help,
                                    const prometheus::Histogram::BucketBoundaries& buckets);

// Owns the HTTP exposer. Thread-safe. Stops serving when destroyed.
class MetricsServer {
 public:
  // Binds `address` (host:port; port 0 picks one). Returns kUnavailable when
  // the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& address, const std::string& service,
      std::shared_ptr<prometheus::Registry> registry);

  int port() const;

 private:
  explicit MetricsServer(std::unique_ptr<prometheus::Exposer> exposer)
      : exposer_(std::move(exposer)) {}
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_METRICS_SERVER_H_
