// nodelink's routes (/tasks, /agents, /stream), in nodelink's shapes.
#include "absl/strings/str_cat.h"
#include "services/common/proto_time.h"
#include "services/gateway/gateway.h"
#include "services/gateway/gateway_routes.h"

namespace taskgrid::gateway {

void Gateway::ServeNodelink(ExchangePtr x) {
  const HttpRequest& req = x->req;
  const Reply& reply = x->reply;
  const std::vector<std::string>& parts = x->parts;
  const std::string &m = req.method, &p0 = x->p0, &p1 = x->p1, &p2 = x->p2;
  auto& async = *stub_->async();
  auto nodelink_task = [](const v1::Task& t) {
    return absl::StrCat(R"({"task_id":)", JsonString(t.id()), R"(,"agent_id":)",
                        JsonString(t.agent_id().empty() ? t.spec().agent_id() : t.agent_id()),
                        R"(,"status":)", JsonString(NodelinkStatus(t.status())),
                        R"(,"created_at":)", JsonString(Rfc3339(t.created_at())),
                        R"(,"updated_at":)", JsonString(Rfc3339(t.updated_at())), "}");
  };
  if (p0 == "tasks" && (p1 == "shell" || p1 == "docker") && parts.size() == 2 && m == "POST") {
    const std::string route = "/tasks/" + p1;
    if (!NeedsJson(*x, route)) return;
    google::protobuf::Struct body;
    if (absl::Status s = FromJson(req.body, &body); !s.ok()) {
      return reply(route, ErrorResponse(400, "invalid_argument", s.message(), "body"));
    }
    v1::SubmitRequest submit;
    v1::TaskSpec& spec = *submit.mutable_spec();
    if (absl::Status s =
            p1 == "shell" ? NodelinkShellSpec(body, spec) : NodelinkDockerSpec(body, spec);
        !s.ok()) {
      return reply(route, ErrorResponse(400, "invalid_argument", s.message()));
    }
    if (!spec.has_timeout()) spec.mutable_timeout()->set_seconds(300);  // nodelink's default.
    return CallCoordinator<v1::SubmitRequest, v1::SubmitResponse>(
        inflight_, req, submit,
        [&async](auto* c, auto* q, auto* r, auto cb) { async.Submit(c, q, r, cb); },
        [reply, route](const grpc::Status& s, const v1::SubmitResponse& resp) {
          if (!s.ok()) return reply(route, ErrorResponse(s));
          const v1::Task& t = resp.task();
          reply(route,
                JsonResponse(200, absl::StrCat(R"({"task_id":)", JsonString(t.id()),
                                               R"(,"agent_id":)", JsonString(t.spec().agent_id()),
                                               R"(,"status":"pending","created_at":)",
                                               JsonString(Rfc3339(t.created_at())), "}")));
        });
  }
  if (p0 == "tasks" && parts.size() == 2 && m == "GET") {
    return GetTask(req, p1, [reply, nodelink_task](const grpc::Status& s, const v1::Task& t) {
      if (!s.ok()) return reply("/tasks/{id}", ErrorResponse(s));
      std::string body = nodelink_task(t);
      body.pop_back();
      absl::StrAppend(&body, R"(,"timeout":)",
                      JsonString(absl::FormatDuration(FromProto(t.spec().timeout()))), "}");
      reply("/tasks/{id}", JsonResponse(200, body));
    });
  }
  if (p0 == "tasks" && parts.size() == 2 && m == "DELETE") {
    v1::CancelRequest cancel;
    cancel.set_task_id(p1);
    return CallCoordinator<v1::CancelRequest, v1::Task>(
        inflight_, req, cancel,
        [&async](auto* c, auto* q, auto* r, auto cb) { async.Cancel(c, q, r, cb); },
        [reply](const grpc::Status& s, const v1::Task&) {
          if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
            // nodelink documents 400 for a task already in a final state.
            return reply("/tasks/{id}",
                         ErrorResponse(400, "failed_precondition", s.error_message()));
          }
          reply("/tasks/{id}",
                s.ok() ? JsonResponse(200, R"({"message":"task cancelled"})") : ErrorResponse(s));
        });
  }
  if ((p0 == "tasks" && parts.size() == 1 && m == "GET") ||
      (p0 == "agents" && p2 == "tasks" && parts.size() == 3 && m == "GET")) {
    const bool per_agent = p0 == "agents";
    const std::string route = per_agent ? "/agents/{id}/tasks" : "/tasks";
    v1::ListRequest list;
    list.set_agent_id(per_agent ? p1 : "");
    list.set_page_size(1000);
    const std::string agent = p1;
    return CallCoordinator<v1::ListRequest, v1::ListResponse>(
        inflight_, req, list,
        [&async](auto* c, auto* q, auto* r, auto cb) { async.List(c, q, r, cb); },
        [reply, route, per_agent, agent, nodelink_task](const grpc::Status& s,
                                                        const v1::ListResponse& resp) {
          if (!s.ok()) return reply(route, ErrorResponse(s));
          std::string body = per_agent ? absl::StrCat(R"({"agent_id":)", JsonString(agent), ",")
                                       : std::string("{");
          body += R"("tasks":[)";
          for (int i = 0; i < resp.tasks_size(); ++i) {
            if (i) body += ",";
            body += nodelink_task(resp.tasks(i));
          }
          body += "]}";
          reply(route, JsonResponse(200, body));
        });
  }
  if (p0 == "agents" && parts.size() == 1 && m == "GET") {
    return CallCoordinator<v1::ListAgentsRequest, v1::ListAgentsResponse>(
        inflight_, req, v1::ListAgentsRequest(),
        [&async](auto* c, auto* q, auto* r, auto cb) { async.ListAgents(c, q, r, cb); },
        ProtoReply(reply, "/agents", 200));
  }
  if (m == "GET" && req.path == "/stream") {
    const std::string ref = req.Query("ref");
    if (ref.empty()) {
      return reply("/stream",
                   ErrorResponse(400, "invalid_argument", "ref: the task id is required", "ref"));
    }
    return GetTask(req, ref, [this, x, reply, ref](const grpc::Status& s, const v1::Task&) {
      if (!s.ok()) return reply("/stream", ErrorResponse(s));
      v1::WatchRequest watch;
      watch.set_task_id(ref);
      watch.set_after_cursor(0);
      StartStream(x, "/stream", watch, StreamFormat::kNodelink, {});
    });
  }
  NotFound(*x);
}

}  // namespace taskgrid::gateway
