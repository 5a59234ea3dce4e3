// /api: tasks, runs, the event stream, audit, agents.
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/common/proto_time.h"
#include "services/common/task_status.h"
#include "services/gateway/gateway.h"
#include "services/gateway/gateway_routes.h"

namespace taskgrid::gateway {

void Gateway::ServeApi(ExchangePtr x) {
  const HttpRequest& req = x->req;
  const Reply& reply = x->reply;
  const std::vector<std::string>& parts = x->parts;
  const std::string &m = req.method, &p0 = x->p0, &p1 = x->p1, &p2 = x->p2, &p3 = x->p3;
  auto& async = *stub_->async();
  if (p0 == "api" && p1 == "tasks") {
    const std::string& id = p2;
    if (parts.size() == 2 && m == "POST") {
      if (!NeedsJson(*x, "/api/tasks")) return;
      v1::SubmitRequest submit;
      if (absl::Status s = FromJson(req.body, submit.mutable_spec()); !s.ok()) {
        return reply("/api/tasks", ErrorResponse(400, "invalid_argument", s.message(), "body"));
      }
      submit.set_idempotency_key(req.Header("idempotency-key"));
      return CallCoordinator<v1::SubmitRequest, v1::SubmitResponse>(
          inflight_, req, submit,
          [&async](auto* c, auto* q, auto* r, auto cb) { async.Submit(c, q, r, cb); },
          [reply](const grpc::Status& s, const v1::SubmitResponse& resp) {
            if (!s.ok()) return reply("/api/tasks", ErrorResponse(s));
            HttpResponse r = JsonResponse(resp.existing() ? 200 : 201, ToJson(resp.task()));
            r.headers.emplace_back("X-Taskgrid-Cursor", std::to_string(resp.cursor()));
            r.headers.emplace_back("Location", "/api/tasks/" + resp.task().id());
            reply("/api/tasks", std::move(r));
          });
    }
    if ((parts.size() == 2 && m == "GET") || (id == "active" && parts.size() == 3 && m == "GET")) {
      const std::string route = id == "active" ? "/api/tasks/active" : "/api/tasks";
      v1::ListRequest list;
      if (id == "active") OnlyUnfinished(list);
      for (const std::string& s : SplitList(req.Query("status"))) {
        v1::TaskStatus st;
        if (!v1::TaskStatus_Parse("TASK_STATUS_" + absl::AsciiStrToUpper(s), &st)) {
          return reply(route, ErrorResponse(400, "invalid_argument",
                                            "status: unknown status \"" + s + "\"", "status"));
        }
        list.add_status(st);
      }
      for (const std::string& s : SplitList(req.Query("priority"))) {
        int p = -1;
        if (!absl::SimpleAtoi(s, &p) || !v1::Priority_IsValid(p)) {
          return reply(route,
                       ErrorResponse(400, "invalid_argument",
                                     "priority: must be 0 to 3, got \"" + s + "\"", "priority"));
        }
        list.add_priority(static_cast<v1::Priority>(p));
      }
      for (const std::string& t : SplitList(req.Query("type"))) list.add_type(t);
      for (const std::string& t : SplitList(req.Query("tags"))) list.add_tags(t);
      list.set_agent_id(req.Query("assignedTo"));
      list.set_run_id(req.Query("run"));
      if (std::string ps = req.Query("pageSize"); !ps.empty()) {
        int n = 0;
        if (!absl::SimpleAtoi(ps, &n)) {
          return reply(
              route, ErrorResponse(400, "invalid_argument", "pageSize: not a number", "pageSize"));
        }
        list.set_page_size(n);
      }
      list.set_page_token(req.Query("pageToken"));
      return CallCoordinator<v1::ListRequest, v1::ListResponse>(
          inflight_, req, list,
          [&async](auto* c, auto* q, auto* r, auto cb) { async.List(c, q, r, cb); },
          ProtoReply(reply, route, 200));
    }
    if (id == "stats" && parts.size() == 3 && m == "GET") {
      return CallCoordinator<v1::StatsRequest, v1::StatsResponse>(
          inflight_, req, v1::StatsRequest(),
          [&async](auto* c, auto* q, auto* r, auto cb) { async.Stats(c, q, r, cb); },
          ProtoReply(reply, "/api/tasks/stats", 200));
    }
    if (id == "cleanup" && parts.size() == 3 && m == "POST") {
      return reply(
          "/api/tasks/cleanup",
          ErrorResponse(501, "unimplemented",
                        "cleanup is automatic: finished tasks are removed after the "
                        "coordinator's --retention; delete one with DELETE /api/tasks/{id}"));
    }
    if (parts.size() == 3 && m == "GET") {
      return GetTask(req, id, ProtoReply(reply, "/api/tasks/{id}", 200));
    }
    if (parts.size() == 3 && m == "DELETE") {
      v1::DeleteRequest del;
      del.set_task_id(id);
      return CallCoordinator<v1::DeleteRequest, v1::DeleteResponse>(
          inflight_, req, del,
          [&async](auto* c, auto* q, auto* r, auto cb) { async.Delete(c, q, r, cb); },
          [reply](const grpc::Status& s, const v1::DeleteResponse&) {
            reply("/api/tasks/{id}",
                  s.ok() ? JsonResponse(200, R"({"message":"task deleted"})") : ErrorResponse(s));
          });
    }
    if (parts.size() == 4 && p3 == "cancel" && m == "POST") {
      v1::CancelRequest cancel;
      cancel.set_task_id(id);
      return CallCoordinator<v1::CancelRequest, v1::Task>(
          inflight_, req, cancel,
          [&async](auto* c, auto* q, auto* r, auto cb) { async.Cancel(c, q, r, cb); },
          ProtoReply(reply, "/api/tasks/{id}/cancel", 200));
    }
    if (parts.size() == 4 && (p3 == "status" || p3 == "progress") && m == "PATCH") {
      return reply("/api/tasks/{id}/" + p3,
                   ErrorResponse(405, "method_not_allowed",
                                 p3 == "status" ? "status is owned by the coordinator; use POST "
                                                  "/api/tasks/{id}/cancel to end a task"
                                                : "progress comes from the task itself: print "
                                                  "\"::progress PERCENT MESSAGE\" on stdout"));
    }
    if (parts.size() == 4 && p3 == "output" && m == "GET") {
      v1::GetOutputRequest out;
      out.set_task_id(id);
      const std::string stream = req.Query("stream");
      out.set_stream(stream == "stderr" ? v1::OUTPUT_STREAM_STDERR : v1::OUTPUT_STREAM_STDOUT);
      if (!stream.empty() && stream != "stdout" && stream != "stderr") {
        return reply("/api/tasks/{id}/output",
                     ErrorResponse(400, "invalid_argument", "stream: stdout or stderr", "stream"));
      }
      int64_t n = 0;
      if (!req.Query("offset").empty() && !absl::SimpleAtoi(req.Query("offset"), &n)) {
        return reply("/api/tasks/{id}/output",
                     ErrorResponse(400, "invalid_argument", "offset: not a number", "offset"));
      }
      out.set_offset(n);
      return CallCoordinator<v1::GetOutputRequest, v1::GetOutputResponse>(
          inflight_, req, out,
          [&async](auto* c, auto* q, auto* r, auto cb) { async.GetOutput(c, q, r, cb); },
          ProtoReply(reply, "/api/tasks/{id}/output", 200));
    }
    if (parts.size() == 4 && p3 == "events" && m == "GET") {
      // The task must exist (404 otherwise); its stream opens with its state
      // and replays what the coordinator's log still holds.
      return GetTask(req, id, [this, x, reply, id](const grpc::Status& s, const v1::Task& t) {
        if (!s.ok()) return reply("/api/tasks/{id}/events", ErrorResponse(s));
        v1::WatchRequest watch;
        watch.set_task_id(id);
        watch.set_after_cursor(0);
        StartStream(x, "/api/tasks/{id}/events", watch, StreamFormat::kTaskEvents,
                    {absl::StrCat("event: initial_state\ndata: ", ToJson(t), "\n\n")});
      });
    }
  }
  if (p0 == "api" && p1 == "runs") {
    const std::string& id = p2;
    if (parts.size() == 2 && m == "POST") {
      if (!NeedsJson(*x, "/api/runs")) return;
      v1::SubmitRunRequest submit;
      if (absl::Status s = FromJson(req.body, submit.mutable_spec()); !s.ok()) {
        return reply("/api/runs", ErrorResponse(400, "invalid_argument", s.message(), "body"));
      }
      submit.set_idempotency_key(req.Header("idempotency-key"));
      return CallCoordinator<v1::SubmitRunRequest, v1::SubmitRunResponse>(
          inflight_, req, submit,
          [&async](auto* c, auto* q, auto* r, auto cb) { async.SubmitRun(c, q, r, cb); },
          [reply](const grpc::Status& s, const v1::SubmitRunResponse& resp) {
            if (!s.ok()) return reply("/api/runs", ErrorResponse(s));
            HttpResponse r = JsonResponse(resp.existing() ? 200 : 201, ToJson(resp.run()));
            r.headers.emplace_back("X-Taskgrid-Cursor", std::to_string(resp.cursor()));
            r.headers.emplace_back("Location", "/api/runs/" + resp.run().id());
            reply("/api/runs", std::move(r));
          });
    }
    if (parts.size() == 2 && m == "GET") {
      v1::ListRunsRequest list;
      if (std::string ps = req.Query("pageSize"); !ps.empty()) {
        int n = 0;
        if (!absl::SimpleAtoi(ps, &n)) {
          return reply("/api/runs", ErrorResponse(400, "invalid_argument", "pageSize: not a number",
                                                  "pageSize"));
        }
        list.set_page_size(n);
      }
      list.set_page_token(req.Query("pageToken"));
      return CallCoordinator<v1::ListRunsRequest, v1::ListRunsResponse>(
          inflight_, req, list,
          [&async](auto* c, auto* q, auto* r, auto cb) { async.ListRuns(c, q, r, cb); },
          ProtoReply(reply, "/api/runs", 200));
    }
    auto get_run = [&](auto done) {
      v1::GetRunRequest g;
      g.set_run_id(id);
      CallCoordinator<v1::GetRunRequest, v1::Run>(
          inflight_, req, g,
          [&async](auto* c, auto* q, auto* r, auto cb) { async.GetRun(c, q, r, cb); },
          std::move(done));
    };
    if (parts.size() == 3 && m == "GET") return get_run(ProtoReply(reply, "/api/runs/{id}", 200));
    if (parts.size() == 4 && p3 == "cancel" && m == "POST") {
      v1::CancelRunRequest cancel;
      cancel.set_run_id(id);
      return CallCoordinator<v1::CancelRunRequest, v1::Run>(
          inflight_, req, cancel,
          [&async](auto* c, auto* q, auto* r, auto cb) { async.CancelRun(c, q, r, cb); },
          ProtoReply(reply, "/api/runs/{id}/cancel", 200));
    }
    if (parts.size() == 4 && p3 == "events" && m == "GET") {
      // Opens with the run and every target's row, then replays what the
      // coordinator's log holds of the run and follows it live.
      return get_run([this, x, reply, id](const grpc::Status& s, const v1::Run& run) {
        if (!s.ok()) return reply("/api/runs/{id}/events", ErrorResponse(s));
        v1::WatchRequest watch;
        watch.set_run_id(id);
        watch.set_after_cursor(0);
        StartStream(x, "/api/runs/{id}/events", watch, StreamFormat::kTaskEvents,
                    {absl::StrCat("event: initial_state\ndata: ", ToJson(run), "\n\n")});
      });
    }
  }
  if (m == "GET" && req.path == "/api/events") {
    v1::WatchRequest watch;
    watch.set_task_id(req.Query("task"));
    watch.set_agent_id(req.Query("agent"));
    watch.set_run_id(req.Query("run"));
    if (absl::Status s = AddEventTypes("types", req.Query("types"), watch); !s.ok()) {
      return reply("/api/events", ErrorResponse(400, "invalid_argument", s.message(), "types"));
    }
    if (!req.Header("last-event-id").empty() || !req.Query("after").empty()) {
      return StartStream(x, "/api/events", watch, StreamFormat::kTaskEvents, {});
    }
    // A new client first gets the unfinished tasks, then every event after
    // the cursor of that listing: nothing falls between the two.
    v1::ListRequest active;
    OnlyUnfinished(active);
    active.set_page_size(1000);
    return CallCoordinator<v1::ListRequest, v1::ListResponse>(
        inflight_, req, active,
        [&async](auto* c, auto* q, auto* r, auto cb) { async.List(c, q, r, cb); },
        [this, x, reply, watch](const grpc::Status& s, const v1::ListResponse& list) {
          if (!s.ok()) return reply("/api/events", ErrorResponse(s));
          v1::WatchRequest after = watch;
          after.set_after_cursor(list.cursor());
          StartStream(x, "/api/events", after, StreamFormat::kTaskEvents,
                      {absl::StrCat("id: ", list.cursor(),
                                    "\nevent: initial_state\ndata: ", ToJson(list), "\n\n")});
        });
  }
  if (m == "GET" && p0 == "api" && p1 == "audit" && parts.size() == 2) {
    v1::ListAuditRequest audit;
    audit.set_actor(req.Query("actor"));
    audit.set_action(req.Query("action"));
    for (const auto& [param, field] :
         {std::pair<const char*, const char*>{"after", "after_seq"}, {"limit", "limit"}}) {
      if (req.Query(param).empty()) continue;
      uint64_t n = 0;
      if (!absl::SimpleAtoi(req.Query(param), &n) || n > 1'000'000'000) {
        return reply("/api/audit", ErrorResponse(400, "invalid_argument",
                                                 std::string(param) + ": not a number", param));
      }
      std::string(field) == "limit" ? audit.set_limit(static_cast<int32_t>(n))
                                    : audit.set_after_seq(n);
    }
    if (const std::string since = req.Query("since"); !since.empty()) {
      absl::Time t;
      std::string err;
      if (!absl::ParseTime(absl::RFC3339_full, since, &t, &err)) {
        return reply("/api/audit", ErrorResponse(400, "invalid_argument",
                                                 "since: not an RFC 3339 time", "since"));
      }
      *audit.mutable_since() = ToProto(t);
    }
    const bool lines = req.Query("format") == "jsonl";
    return CallCoordinator<v1::ListAuditRequest, v1::ListAuditResponse>(
        inflight_, req, audit,
        [&async](auto* c, auto* q, auto* r, auto cb) { async.ListAudit(c, q, r, cb); },
        [reply, lines](const grpc::Status& s, const v1::ListAuditResponse& resp) {
          if (!s.ok()) return reply("/api/audit", ErrorResponse(s));
          if (!lines) return reply("/api/audit", JsonResponse(200, ToJson(resp)));
          // JSON lines, for export: one entry per line.
          std::string body;
          for (const v1::AuditEntry& e : resp.entries()) absl::StrAppend(&body, ToJson(e), "\n");
          HttpResponse r = JsonResponse(200, std::move(body));
          r.content_type = "application/x-ndjson";
          if (resp.next_after_seq() != 0) {
            r.headers.emplace_back("X-Next-After", std::to_string(resp.next_after_seq()));
          }
          reply("/api/audit", std::move(r));
        });
  }
  if (m == "GET" && p0 == "api" && p1 == "agents" && parts.size() == 2) {
    return CallCoordinator<v1::ListAgentsRequest, v1::ListAgentsResponse>(
        inflight_, req, v1::ListAgentsRequest(),
        [&async](auto* c, auto* q, auto* r, auto cb) { async.ListAgents(c, q, r, cb); },
        ProtoReply(reply, "/api/agents", 200));
  }
  if (m == "GET" && p0 == "api" && p1 == "v1" && p2 == "tasks" &&
      Segment(parts, 4) == "stream-info" && parts.size() == 5) {
    return GetTask(req, p3, [this, reply](const grpc::Status& s, const v1::Task& t) {
      const std::string route = "/api/v1/tasks/{id}/stream-info";
      if (!s.ok()) return reply(route, ErrorResponse(s));
      const bool final = IsFinal(t.status());
      reply(route,
            JsonResponse(
                200,
                absl::StrCat(R"({"thread_id":)", JsonString(t.id()), R"(,"stream_key":)",
                             JsonString("taskgrid:task:" + t.id()), R"(,"stream_length":)",
                             t.stdout().total_bytes() + t.stderr().total_bytes(),
                             R"(,"stdout_bytes":)", t.stdout().total_bytes(), R"(,"stderr_bytes":)",
                             t.stderr().total_bytes(), R"(,"dropped_bytes":)",
                             t.stdout().dropped_bytes() + t.stderr().dropped_bytes(),
                             R"(,"active_connections":)", StreamsFor(t.id()),
                             R"(,"consumer_active":)", final ? "false" : "true", "}")));
    });
  }
  NotFound(*x);
}

}  // namespace taskgrid::gateway
