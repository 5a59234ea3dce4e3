// MonitoringService over gRPC: host metrics, service health and alerts from
// the registry's monitor, authorized by API key scope (read to look, submit
// to resolve an alert, admin to start or stop; a gateway reports its health
// with its own key, read scope being enough).
#ifndef TASKGRID_SERVICES_COORDINATOR_MONITORING_SERVICE_H_
#define TASKGRID_SERVICES_COORDINATOR_MONITORING_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <functional>

#include "services/coordinator/access_control.h"
#include "services/coordinator/task_registry.h"
#include "taskgrid/v1/monitoring.grpc.pb.h"

namespace taskgrid {

// Thread-safe; owned by the coordinator, outlived by the registry.
class MonitoringServiceImpl final : public v1::MonitoringService::CallbackService {
 public:
  // `agent_tokens_required` says whether agents need a token now (GetInfo).
  MonitoringServiceImpl(TaskRegistry& registry, AccessControl& access,
                        std::function<bool()> agent_tokens_required)
      : registry_(registry),
        access_(access),
        agent_tokens_required_(std::move(agent_tokens_required)) {}

  grpc::ServerUnaryReactor* GetLatestMetrics(grpc::CallbackServerContext* ctx,
                                             const v1::GetLatestMetricsRequest* req,
                                             v1::MetricsResponse* resp) override;
  grpc::ServerUnaryReactor* GetMetricsHistory(grpc::CallbackServerContext* ctx,
                                              const v1::GetMetricsHistoryRequest* req,
                                              v1::MetricsResponse* resp) override;
  grpc::ServerUnaryReactor* ListServices(grpc::CallbackServerContext* ctx,
                                         const v1::ListServicesRequest* req,
                                         v1::ListServicesResponse* resp) override;
  grpc::ServerUnaryReactor* GetService(grpc::CallbackServerContext* ctx,
                                       const v1::GetServiceRequest* req,
                                       v1::ServiceHealth* resp) override;
  grpc::ServerUnaryReactor* ListAlerts(grpc::CallbackServerContext* ctx,
                                       const v1::ListAlertsRequest* req,
                                       v1::ListAlertsResponse* resp) override;
  grpc::ServerUnaryReactor* ResolveAlert(grpc::CallbackServerContext* ctx,
                                         const v1::ResolveAlertRequest* req,
                                         v1::Alert* resp) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* ctx,
                                      const v1::GetStatusRequest* req,
                                      v1::MonitoringStatus* resp) override;
  grpc::ServerUnaryReactor* Start(grpc::CallbackServerContext* ctx,
                                  const v1::StartMonitoringRequest* req,
                                  v1::MonitoringStatus* resp) override;
  grpc::ServerUnaryReactor* Stop(grpc::CallbackServerContext* ctx,
                                 const v1::StopMonitoringRequest* req,
                                 v1::MonitoringStatus* resp) override;
  grpc::ServerUnaryReactor* ReportHealth(grpc::CallbackServerContext* ctx,
                                         const v1::ServiceHealth* req,
                                         v1::ReportHealthResponse* resp) override;
  grpc::ServerUnaryReactor* GetInfo(grpc::CallbackServerContext* ctx,
                                    const v1::GetInfoRequest* req,
                                    v1::CoordinatorInfo* resp) override;

 private:
  grpc::ServerUnaryReactor* SetRunning(grpc::CallbackServerContext* ctx, bool running,
                                       v1::MonitoringStatus* resp);

  TaskRegistry& registry_;
  AccessControl& access_;
  const std::function<bool()> agent_tokens_required_;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_MONITORING_SERVICE_H_
