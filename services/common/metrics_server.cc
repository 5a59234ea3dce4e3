#include "services/common/metrics_server.h"

#include <exception>

#include "services/common/version.h"

namespace taskgrid {

prometheus::Counter& AddCounter(prometheus::Registry& r, const std::string& name,
                                const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}

prometheus::Gauge& AddGauge(prometheus::Registry& r, const std::string& name,
                            const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}

prometheus::Histogram& AddHistogram(prometheus::Registry& r, const std::string& name,
                                    const std::string& help,
                                    const prometheus::Histogram::BucketBoundaries& buckets) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add({}, buckets);
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& address, const std::string& service,
    std::shared_ptr<prometheus::Registry> registry) {
  prometheus::BuildGauge()
      .Name(service + "_build_info")
      .Help("Build information; the value is always 1.")
      .Register(*registry)
      .Add({{"version", kVersion}})
      .Set(1);
  std::unique_ptr<prometheus::Exposer> exposer;
  try {  // civetweb reports bind failures as exceptions.
    exposer = std::make_unique<prometheus::Exposer>(address, 2);
  } catch (const std::exception& e) {
    return absl::UnavailableError("metrics_address " + address + ": " + e.what());
  }
  exposer->RegisterCollectable(registry);
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(exposer)));
}

int MetricsServer::port() const {
  const auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

}  // namespace taskgrid
