// /api/monitoring: agents' metrics, service health, alerts.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/common/proto_time.h"
#include "services/gateway/gateway.h"
#include "services/gateway/gateway_routes.h"

namespace taskgrid::gateway {

void Gateway::ServeMonitoring(ExchangePtr x) {
  const HttpRequest& req = x->req;
  const Reply& reply = x->reply;
  const std::vector<std::string>& parts = x->parts;
  const std::string &m = req.method, &p0 = x->p0, &p1 = x->p1, &p2 = x->p2, &p3 = x->p3;
  if (p0 == "api" && p1 == "monitoring") {
    auto& mon = *monitoring_->async();
    if (m == "GET" && p2 == "metrics" && p3 == "latest" && parts.size() == 4) {
      return CallCoordinator<v1::GetLatestMetricsRequest, v1::MetricsResponse>(
          inflight_, req, {},
          [&mon](auto* c, auto* q, auto* r, auto cb) { mon.GetLatestMetrics(c, q, r, cb); },
          ProtoReply(reply, "/api/monitoring/metrics/latest", 200));
    }
    if (m == "GET" && p2 == "metrics" && p3 == "history" && parts.size() == 4) {
      const std::string route = "/api/monitoring/metrics/history";
      v1::GetMetricsHistoryRequest history;
      history.set_agent_id(req.Query("agent"));
      for (const char* bound : {"since", "until"}) {
        if (req.Query(bound).empty()) continue;
        absl::Time t;
        std::string err;
        if (!absl::ParseTime(absl::RFC3339_full, req.Query(bound), &t, &err)) {
          return reply(
              route,
              ErrorResponse(400, "invalid_argument",
                            absl::StrCat(bound, ": not an RFC 3339 time (", err, ")"), bound));
        }
        *(std::string(bound) == "since" ? history.mutable_since() : history.mutable_until()) =
            ToProto(t);
      }
      if (history.agent_id().empty()) {
        return reply(route, ErrorResponse(400, "invalid_argument",
                                          "agent: is required (the agent's id)", "agent"));
      }
      return CallCoordinator<v1::GetMetricsHistoryRequest, v1::MetricsResponse>(
          inflight_, req, history,
          [&mon](auto* c, auto* q, auto* r, auto cb) { mon.GetMetricsHistory(c, q, r, cb); },
          ProtoReply(reply, route, 200));
    }
    if (m == "GET" && p2 == "services" && parts.size() == 3) {
      return CallCoordinator<v1::ListServicesRequest, v1::ListServicesResponse>(
          inflight_, req, {},
          [&mon](auto* c, auto* q, auto* r, auto cb) { mon.ListServices(c, q, r, cb); },
          ProtoReply(reply, "/api/monitoring/services", 200));
    }
    if (m == "GET" && p2 == "services" && parts.size() >= 4) {  // Names hold a '/'.
      v1::GetServiceRequest get;
      get.set_name(absl::StrJoin(parts.begin() + 3, parts.end(), "/"));
      return CallCoordinator<v1::GetServiceRequest, v1::ServiceHealth>(
          inflight_, req, get,
          [&mon](auto* c, auto* q, auto* r, auto cb) { mon.GetService(c, q, r, cb); },
          ProtoReply(reply, "/api/monitoring/services/{name}", 200));
    }
    if (m == "GET" && p2 == "alerts" && parts.size() == 3) {
      v1::ListAlertsRequest list;
      list.set_active_only(req.Query("active") == "true");
      return CallCoordinator<v1::ListAlertsRequest, v1::ListAlertsResponse>(
          inflight_, req, list,
          [&mon](auto* c, auto* q, auto* r, auto cb) { mon.ListAlerts(c, q, r, cb); },
          ProtoReply(reply, "/api/monitoring/alerts", 200));
    }
    if (m == "POST" && p2 == "alerts" && Segment(parts, 4) == "resolve" && parts.size() == 5) {
      v1::ResolveAlertRequest resolve;
      resolve.set_alert_id(p3);
      return CallCoordinator<v1::ResolveAlertRequest, v1::Alert>(
          inflight_, req, resolve,
          [&mon](auto* c, auto* q, auto* r, auto cb) { mon.ResolveAlert(c, q, r, cb); },
          ProtoReply(reply, "/api/monitoring/alerts/{id}/resolve", 200));
    }
    if (m == "GET" && p2 == "status" && parts.size() == 3) {
      return CallCoordinator<v1::GetStatusRequest, v1::MonitoringStatus>(
          inflight_, req, {},
          [&mon](auto* c, auto* q, auto* r, auto cb) { mon.GetStatus(c, q, r, cb); },
          ProtoReply(reply, "/api/monitoring/status", 200));
    }
    if (m == "POST" && p2 == "start" && parts.size() == 3) {
      return CallCoordinator<v1::StartMonitoringRequest, v1::MonitoringStatus>(
          inflight_, req, {},
          [&mon](auto* c, auto* q, auto* r, auto cb) { mon.Start(c, q, r, cb); },
          ProtoReply(reply, "/api/monitoring/start", 200));
    }
    if (m == "POST" && p2 == "stop" && parts.size() == 3) {
      return CallCoordinator<v1::StopMonitoringRequest, v1::MonitoringStatus>(
          inflight_, req, {}, [&mon](auto* c, auto* q, auto* r, auto cb) { mon.Stop(c, q, r, cb); },
          ProtoReply(reply, "/api/monitoring/stop", 200));
    }
  }
  NotFound(*x);
}

}  // namespace taskgrid::gateway
