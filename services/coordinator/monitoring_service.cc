#include "services/coordinator/monitoring_service.h"

#include "absl/strings/str_cat.h"
#include "services/common/proto_time.h"
#include "services/common/version.h"
#include "services/coordinator/rpc_reply.h"
#include "services/coordinator/task_validation.h"

namespace taskgrid {

grpc::ServerUnaryReactor* MonitoringServiceImpl::GetLatestMetrics(
    grpc::CallbackServerContext* ctx, const v1::GetLatestMetricsRequest*,
    v1::MetricsResponse* resp) {
  if (auto c = access_.Authorize(ctx, Scope::kRead, "monitoring.read"); !c.ok()) {
    return Reply(ctx, c.status());
  }
  for (auto& m : registry_.monitor().Latest()) *resp->add_metrics() = std::move(m);
  return Reply(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* MonitoringServiceImpl::GetMetricsHistory(
    grpc::CallbackServerContext* ctx, const v1::GetMetricsHistoryRequest* req,
    v1::MetricsResponse* resp) {
  if (auto c = access_.Authorize(ctx, Scope::kRead, "monitoring.read"); !c.ok()) {
    return Reply(ctx, c.status());
  }
  if (absl::Status s = ValidateId("agent_id", req->agent_id(), true); !s.ok()) {
    return Reply(ctx, s);
  }
  auto history = registry_.monitor().History(
      req->agent_id(), req->has_since() ? FromProto(req->since()) : absl::InfinitePast(),
      req->has_until() ? FromProto(req->until()) : absl::InfiniteFuture());
  if (!history.ok()) return Reply(ctx, history.status());
  for (auto& m : *history) *resp->add_metrics() = std::move(m);
  return Reply(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* MonitoringServiceImpl::ListServices(grpc::CallbackServerContext* ctx,
                                                              const v1::ListServicesRequest*,
                                                              v1::ListServicesResponse* resp) {
  if (auto c = access_.Authorize(ctx, Scope::kRead, "monitoring.read"); !c.ok()) {
    return Reply(ctx, c.status());
  }
  for (auto& h : registry_.monitor().Services()) *resp->add_services() = std::move(h);
  return Reply(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* MonitoringServiceImpl::GetService(grpc::CallbackServerContext* ctx,
                                                            const v1::GetServiceRequest* req,
                                                            v1::ServiceHealth* resp) {
  if (auto c = access_.Authorize(ctx, Scope::kRead, "monitoring.read"); !c.ok()) {
    return Reply(ctx, c.status());
  }
  for (auto& h : registry_.monitor().Services()) {
    if (h.name() == req->name()) {
      *resp = std::move(h);
      return Reply(ctx, absl::OkStatus());
    }
  }
  return Reply(ctx, absl::NotFoundError(absl::StrCat(
                        "name: no service \"", req->name(),
                        "\" (coordinator, agent/ID or gateway/ID)")));
}

grpc::ServerUnaryReactor* MonitoringServiceImpl::ListAlerts(grpc::CallbackServerContext* ctx,
                                                            const v1::ListAlertsRequest* req,
                                                            v1::ListAlertsResponse* resp) {
  if (auto c = access_.Authorize(ctx, Scope::kRead, "monitoring.read"); !c.ok()) {
    return Reply(ctx, c.status());
  }
  for (auto& a : registry_.monitor().Alerts(req->active_only())) *resp->add_alerts() = std::move(a);
  return Reply(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* MonitoringServiceImpl::ResolveAlert(grpc::CallbackServerContext* ctx,
                                                              const v1::ResolveAlertRequest* req,
                                                              v1::Alert* resp) {
  constexpr absl::string_view kAction = "alert.resolve";
  absl::StatusOr<Caller> caller = access_.Authorize(ctx, Scope::kSubmit, kAction);
  if (!caller.ok()) return Reply(ctx, caller.status());
  absl::Status valid = ValidateId("alert_id", req->alert_id(), true);
  absl::StatusOr<v1::Alert> result =
      valid.ok() ? registry_.ResolveAlert(req->alert_id(), "manual") : valid;
  access_.Record(*caller, kAction, req->alert_id(), result.status());
  return ReplyWhenDurable(ctx, registry_, std::move(result), resp);
}

grpc::ServerUnaryReactor* MonitoringServiceImpl::GetStatus(grpc::CallbackServerContext* ctx,
                                                           const v1::GetStatusRequest*,
                                                           v1::MonitoringStatus* resp) {
  if (auto c = access_.Authorize(ctx, Scope::kRead, "monitoring.read"); !c.ok()) {
    return Reply(ctx, c.status());
  }
  *resp = registry_.monitor().Status();
  return Reply(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* MonitoringServiceImpl::SetRunning(grpc::CallbackServerContext* ctx,
                                                            bool running,
                                                            v1::MonitoringStatus* resp) {
  const absl::string_view action = running ? "monitoring.start" : "monitoring.stop";
  absl::StatusOr<Caller> caller = access_.Authorize(ctx, Scope::kAdmin, action);
  if (!caller.ok()) return Reply(ctx, caller.status());
  registry_.SetMonitoring(running);
  access_.Record(*caller, action, "", absl::OkStatus());
  *resp = registry_.monitor().Status();
  return Reply(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* MonitoringServiceImpl::Start(grpc::CallbackServerContext* ctx,
                                                       const v1::StartMonitoringRequest*,
                                                       v1::MonitoringStatus* resp) {
  return SetRunning(ctx, true, resp);
}

grpc::ServerUnaryReactor* MonitoringServiceImpl::Stop(grpc::CallbackServerContext* ctx,
                                                      const v1::StopMonitoringRequest*,
                                                      v1::MonitoringStatus* resp) {
  return SetRunning(ctx, false, resp);
}

grpc::ServerUnaryReactor* MonitoringServiceImpl::ReportHealth(grpc::CallbackServerContext* ctx,
                                                              const v1::ServiceHealth* req,
                                                              v1::ReportHealthResponse*) {
  if (auto c = access_.Authorize(ctx, Scope::kRead, "monitoring.read"); !c.ok()) {
    return Reply(ctx, c.status());
  }
  if (req->kind() != "gateway" || req->name().rfind("gateway/", 0) != 0) {
    return Reply(ctx, absl::InvalidArgumentError(
                          "name: reports come from gateways, named gateway/ID (kind gateway)"));
  }
  if (absl::Status s = ValidateId("name", req->name(), true); !s.ok()) return Reply(ctx, s);
  registry_.ReportHealth(*req);
  return Reply(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* MonitoringServiceImpl::GetInfo(grpc::CallbackServerContext* ctx,
                                                         const v1::GetInfoRequest*,
                                                         v1::CoordinatorInfo* resp) {
  resp->set_keys_required(access_.keys_required());
  resp->set_agent_tokens_required(agent_tokens_required_());
  resp->set_version(kVersion);
  return Reply(ctx, absl::OkStatus());
}

}  // namespace taskgrid
