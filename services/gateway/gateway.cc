#include "services/gateway/gateway.h"

#include <google/protobuf/struct.pb.h>
#include <spdlog/spdlog.h>

#include <functional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "services/common/auth.h"
#include "services/common/clock.h"
#include "services/common/coordinator_channel.h"
#include "services/common/proto_time.h"
#include "services/common/service_process.h"
#include "services/common/task_status.h"
#include "services/gateway/event_stream.h"
#include "services/gateway/json.h"
#include "services/gateway/web_assets.h"

namespace taskgrid::gateway {
namespace {

constexpr absl::Duration kCallTimeout = absl::Seconds(10);

// The caller's key, forwarded so the coordinator decides what it may do.
std::string ApiKeyOf(const HttpRequest& req) {
  if (std::string key = req.Header("x-api-key"); !key.empty()) return key;
  const std::string auth = req.Header("authorization");
  if (absl::StartsWithIgnoreCase(auth, "bearer ")) return auth.substr(7);
  return "";
}

// One unary call to the coordinator: owns the request, response and context
// until the callback has run.
template <typename Req, typename Resp>
struct Call {
  grpc::ClientContext context;
  Req request;
  Resp response;
};

// `inflight` counts the call until its callback has run, so shutdown can wait
// for it.
template <typename Req, typename Resp, typename Invoke, typename Done>
void CallCoordinator(std::atomic<int>& inflight, const HttpRequest& http, Req request,
                     Invoke invoke, Done done) {
  ++inflight;
  auto call = std::make_shared<Call<Req, Resp>>();
  call->request = std::move(request);
  if (std::string key = ApiKeyOf(http); !key.empty()) call->context.AddMetadata("x-api-key", key);
  // For the coordinator's audit log: who asked, besides this gateway.
  call->context.AddMetadata("x-forwarded-for", http.remote);
  call->context.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
  invoke(&call->context, &call->request, &call->response,
         [call, done = std::move(done), &inflight](grpc::Status s) {
           done(s, call->response);
           --inflight;
         });
}

std::vector<std::string> SplitList(const std::string& s) {
  return absl::StrSplit(s, ',', absl::SkipWhitespace());
}

// Adds the event names in `value` ("task:status,agent:connected") to
// `watch`; kInvalidArgument naming `param` for an unknown one.
absl::Status AddEventTypes(const std::string& param, const std::string& value,
                           v1::WatchRequest& watch) {
  for (const std::string& t : SplitList(value)) {
    std::string name = absl::AsciiStrToUpper(t);
    std::replace(name.begin(), name.end(), ':', '_');
    v1::EventType type;
    if (!v1::EventType_Parse("EVENT_TYPE_" + name, &type)) {
      return absl::InvalidArgumentError(param + ": unknown event type \"" + t + "\"");
    }
    watch.add_types(type);
  }
  return absl::OkStatus();
}

// Restricts `list` to tasks that have not finished.
void OnlyUnfinished(v1::ListRequest& list) {
  for (auto s : {v1::TASK_STATUS_PENDING, v1::TASK_STATUS_QUEUED, v1::TASK_STATUS_DISPATCHED,
                 v1::TASK_STATUS_RUNNING}) {
    list.add_status(s);
  }
}

std::string Segment(const std::vector<std::string>& parts, size_t i) {
  return i < parts.size() ? parts[i] : "";
}

// Whether the route at `parts` refuses query parameters it does not read:
// the API's own routes (a misspelt filter must not quietly list
// everything), not static files, health checks or nodelink's routes, whose
// clients may add their own.
bool StrictQuery(const std::vector<std::string>& parts) {
  const std::string p0 = Segment(parts, 0);
  return p0 == "api" || p0 == "ws" || p0 == "stream";
}

// The query parameters the route at `parts` reads.
std::vector<absl::string_view> QueryParamsOf(const std::vector<std::string>& parts) {
  const std::string path = absl::StrJoin(parts, "/");
  const std::string p0 = Segment(parts, 0), p1 = Segment(parts, 1), p3 = Segment(parts, 3);
  if (path == "api/tasks" || path == "api/tasks/active") {
    return {"status", "priority", "type", "tags", "assignedTo", "run", "pageSize", "pageToken"};
  }
  if (p0 == "api" && p1 == "tasks" && parts.size() == 4 && p3 == "output") {
    return {"stream", "offset"};
  }
  if (path == "api/runs") return {"pageSize", "pageToken"};
  if (path == "api/events") return {"task", "agent", "run", "types", "after"};
  if (p0 == "api" && (p1 == "tasks" || p1 == "runs") && parts.size() == 4 && p3 == "events") {
    return {"after"};
  }
  if (path == "api/audit") return {"actor", "action", "after", "limit", "since", "format"};
  if (path == "api/monitoring/metrics/history") return {"agent", "since", "until"};
  if (path == "api/monitoring/alerts") return {"active"};
  if (path == "stream") return {"ref"};
  if (path == "ws/monitoring") return {"task_id", "event_types", "stats_only", "after"};
  if (p0 == "api" && p1 == "v1" && Segment(parts, 2) == "ws") return {"after"};
  return {};
}

}  // namespace

absl::Status GatewayOptions::Validate() const {
  if (coordinator_address.empty()) return absl::InvalidArgumentError("coordinator: is required");
  if (absl::Status s = http.tls.Validate("tls_"); !s.ok()) return s;
  if (!http.tls.client_ca_file.empty()) {
    return absl::InvalidArgumentError(
        "tls_client_ca: the gateway takes API keys, not client certificates");
  }
  if (absl::Status s = coordinator_tls.Validate("coordinator_tls_"); !s.ok()) return s;
  if (!insecure && !http.tls.enabled() && !IsLoopbackAddress(http_address)) {
    return absl::FailedPreconditionError(
        "http_address " + http_address +
        " is not loopback: put the gateway behind TLS and keys, or pass --insecure");
  }
  if (absl::Status s = EdgeOptions{allowed_hosts, cors_origins}.Validate(); !s.ok()) return s;
  if (health_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("health_interval: must not be negative");
  }
  return absl::OkStatus();
}

Gateway::Gateway(const GatewayOptions& options)
    : options_(options),
      edge_(EdgeOptions{options.allowed_hosts, options.cors_origins}),
      needs_coordinator_keys_(!options.insecure && !IsLoopbackAddress(options.http_address)),
      registry_(std::make_shared<prometheus::Registry>()),
      metrics_(*registry_),
      limiter_(Clock::Real(), options.rate_limit, options.rate_burst) {}

absl::StatusOr<std::unique_ptr<Gateway>> Gateway::Start(const GatewayOptions& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  std::unique_ptr<Gateway> g(new Gateway(options));
  g->channel_ = CoordinatorChannel(options.coordinator_address, options.coordinator_tls);
  g->stub_ = v1::TaskService::NewStub(g->channel_);
  g->monitoring_ = v1::MonitoringService::NewStub(g->channel_);
  g->hub_ = std::make_unique<EventHub>(*g->stub_, g->metrics_, options.api_key);
  if (g->needs_coordinator_keys_) {
    // Asked before listening: a coordinator that checks no keys must not be
    // reachable from the network through us. One that is not up yet is asked
    // again every few seconds; until it answers, requests get 503.
    g->ProbeCoordinator(absl::Seconds(5));
    if (g->coordinator_keys_ == Keys::kNone) {
      return absl::FailedPreconditionError(absl::StrCat(
          "http_address ", options.http_address, " is not loopback and the coordinator at ",
          options.coordinator_address,
          " checks no API keys: anyone who reaches this gateway could run commands. Give the "
          "coordinator --keys_file, or pass --insecure"));
    }
  }
  HttpServerOptions http = options.http;
  http.address = options.http_address;
  http.on_slow_client = [self = g.get()] { self->metrics_.slow_client_disconnects.Increment(); };
  Gateway* self = g.get();
  auto server = HttpServer::Start(http, [self](HttpRequest req, std::shared_ptr<Responder> r) {
    self->Handle(std::move(req), std::move(r));
  });
  if (!server.ok()) return server.status();
  g->http_ = std::move(*server);
  if (!options.metrics_address.empty()) {
    auto m = MetricsServer::Start(options.metrics_address, "gateway", g->registry_);
    if (!m.ok()) return m.status();
    g->metrics_server_ = std::move(*m);
  }
  g->reporter_ = std::thread([self] { self->ReportHealthLoop(); });
  spdlog::info("gateway_started http_port={} coordinator={}", g->http_port(),
               options.coordinator_address);
  return g;
}

void Gateway::ProbeCoordinator(absl::Duration wait) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + wait));
  ctx.set_wait_for_ready(true);
  v1::CoordinatorInfo info;
  const grpc::Status s = monitoring_->GetInfo(&ctx, v1::GetInfoRequest(), &info);
  if (!s.ok()) {
    // Unreachable is ordinary (it may not be up yet); anything else (an
    // older coordinator) leaves a network-facing gateway refusing requests.
    const bool down = s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                      s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    if (down) {
      spdlog::debug("coordinator_info_failed code={} message=\"{}\"",
                    static_cast<int>(s.error_code()), s.error_message());
    } else {
      spdlog::error("coordinator_info_failed code={} message=\"{}\"",
                    static_cast<int>(s.error_code()), s.error_message());
    }
    return;  // Keeps what it knew.
  }
  const Keys keys = info.keys_required() ? Keys::kRequired : Keys::kNone;
  if (coordinator_keys_.exchange(keys) != keys && keys == Keys::kNone && needs_coordinator_keys_) {
    spdlog::error("coordinator_keys_missing coordinator={} (requests refused until it checks keys)",
                  options_.coordinator_address);
  }
}

std::string Gateway::CallerOf(const HttpRequest& req, const std::string& key) const {
  if (key.empty() || coordinator_keys_ != Keys::kRequired) return "ip:" + req.remote;
  return "key:" + key;
}

void Gateway::ReportHealthLoop() {
  v1::ServiceHealth h;
  h.set_name("gateway/" + (options_.gateway_id.empty()
                               ? absl::StrCat(HostName(), ":", http_port())
                               : options_.gateway_id));
  h.set_kind("gateway");
  h.set_status(v1::HEALTH_STATUS_HEALTHY);
  *h.mutable_started_at() = ToProto(started_);
  const absl::Duration every =
      options_.health_interval > absl::ZeroDuration() ? options_.health_interval : absl::Seconds(5);
  do {
    ProbeCoordinator(absl::Seconds(2));
    if (options_.health_interval <= absl::ZeroDuration()) continue;
    const int64_t requests = requests_.load();
    h.set_requests(requests);
    h.set_errors(server_errors_.load());
    h.set_mean_response_seconds(requests ? busy_micros_.load() / 1e6 / requests : 0);
    *h.mutable_uptime() = ToProto(absl::Now() - started_);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    if (!options_.api_key.empty()) ctx.AddMetadata("x-api-key", options_.api_key);
    v1::ReportHealthResponse ignored;
    if (grpc::Status s = monitoring_->ReportHealth(&ctx, h, &ignored); !s.ok()) {
      spdlog::debug("health_report_failed code={} message=\"{}\"",
                    static_cast<int>(s.error_code()), s.error_message());
    }
  } while (!stop_reporting_.WaitForNotificationWithTimeout(every));
}

Gateway::~Gateway() { Shutdown(); }

void Gateway::Shutdown() {
  if (!stop_reporting_.HasBeenNotified()) stop_reporting_.Notify();
  if (reporter_.joinable()) reporter_.join();
  if (http_) http_->Shutdown();
  if (hub_) hub_->Shutdown();
  // Calls still in flight would answer into a server that is gone: cancel
  // the streams and wait (bounded) for every callback to have run.
  std::vector<std::weak_ptr<EventStream>> streams;
  {
    absl::MutexLock lock(&streams_mu_);
    streams.swap(streams_);
  }
  for (auto& weak : streams) {
    if (auto s = weak.lock()) s->Cancel();
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (inflight_.load() > 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
}

std::function<void()> Gateway::CountStream(std::function<void()> on_end) {
  ++inflight_;
  return [this, on_end = std::move(on_end)] {
    if (on_end) on_end();
    --inflight_;
  };
}

void Gateway::TrackStream(std::weak_ptr<EventStream> stream) {
  absl::MutexLock lock(&streams_mu_);
  if (streams_.size() >= 1024 && streams_.size() % 1024 == 0) {
    std::erase_if(streams_, [](const auto& w) { return w.expired(); });
  }
  streams_.push_back(std::move(stream));
}

int Gateway::StreamsFor(const std::string& task_id) {
  absl::MutexLock lock(&streams_mu_);
  auto it = task_streams_.find(task_id);
  return it == task_streams_.end() ? 0 : it->second;
}

std::function<void()> Gateway::OpenStream(const std::string& caller, const std::string& task_id) {
  absl::MutexLock lock(&streams_mu_);
  int& open = caller_streams_[caller];
  if (open >= options_.max_streams_per_caller) return nullptr;
  ++open;
  ++task_streams_[task_id];
  return [this, caller, task_id] {
    absl::MutexLock lock(&streams_mu_);
    if (--caller_streams_[caller] == 0) caller_streams_.erase(caller);
    if (--task_streams_[task_id] == 0) task_streams_.erase(task_id);
  };
}

void Gateway::Handle(HttpRequest req, std::shared_ptr<Responder> responder) {
  const absl::Time start = absl::Now();
  // Every reply goes through here so metrics see the route pattern.
  const Headers cors = edge_.CorsHeaders(req);
  auto reply = [this, responder, start, cors](const std::string& route, HttpResponse r) {
    const absl::Duration took = absl::Now() - start;
    metrics_.Observe(route, r.status, absl::ToDoubleSeconds(took));
    ++requests_;
    if (r.status >= 500) ++server_errors_;
    busy_micros_ += absl::ToInt64Microseconds(took);
    r.headers.insert(r.headers.end(), cors.begin(), cors.end());
    responder->Reply(std::move(r));
  };
  const std::string key = ApiKeyOf(req);
  const std::string caller = CallerOf(req, key);

  // ---------------------------------------------------------------- edge policy
  if (std::optional<HttpResponse> refusal = edge_.Refusal(req)) {
    return reply("rejected", *std::move(refusal));
  }
  if (needs_coordinator_keys_ && coordinator_keys_ != Keys::kRequired && req.path != "/health") {
    return reply("rejected",
                 ErrorResponse(503, "unavailable",
                               "this gateway serves the network only in front of a coordinator "
                               "that checks API keys, which it has not confirmed yet"));
  }
  size_t url_bytes = req.path.size();
  for (const auto& [k, v] : req.query) url_bytes += k.size() + v.size() + 2;
  if (url_bytes > options_.max_url_bytes) {
    return reply("rejected", ErrorResponse(414, "uri_too_long",
                                           "URL longer than " +
                                               std::to_string(options_.max_url_bytes) + " bytes"));
  }
  if (req.method == "OPTIONS") {  // CORS preflight.
    HttpResponse r = JsonResponse(204, "");
    if (!cors.empty()) {
      r.headers = {{"Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE, OPTIONS"},
                   {"Access-Control-Allow-Headers",
                    "Content-Type, X-Api-Key, Authorization, Idempotency-Key, Last-Event-ID"},
                   {"Access-Control-Max-Age", "600"}};
    }
    return reply("preflight", std::move(r));
  }
  if (req.path != "/health" && req.path != "/ready") {
    if (const absl::Duration wait = limiter_.Take(caller); wait > absl::ZeroDuration()) {
      HttpResponse r = ErrorResponse(429, "resource_exhausted",
                                     "rate limit exceeded; retry after Retry-After seconds");
      r.headers.emplace_back(
          "Retry-After", std::to_string(absl::ToInt64Seconds(absl::Ceil(wait, absl::Seconds(1)))));
      return reply("rate_limited", std::move(r));
    }
  }
  auto& async = *stub_->async();
  const std::vector<std::string> parts = absl::StrSplit(req.path, '/', absl::SkipEmpty());
  if (!req.query.empty() && StrictQuery(parts)) {
    const std::vector<absl::string_view> known = QueryParamsOf(parts);
    for (const auto& [param, value] : req.query) {
      if (std::find(known.begin(), known.end(), param) != known.end()) continue;
      return reply("rejected",
                   ErrorResponse(400, "invalid_argument",
                                 absl::StrCat(param, ": unknown query parameter",
                                              known.empty() ? " (this route takes none)"
                                                            : " (this route takes " +
                                                                  absl::StrJoin(known, ", ") + ")"),
                                 param));
    }
  }
  const std::string& m = req.method;
  const std::string p0 = Segment(parts, 0), p1 = Segment(parts, 1), p2 = Segment(parts, 2),
                    p3 = Segment(parts, 3);

  auto proto_reply = [reply](std::string route, int ok_status) {
    return [reply, route, ok_status](const grpc::Status& s, const google::protobuf::Message& resp) {
      reply(route, s.ok() ? JsonResponse(ok_status, ToJson(resp)) : ErrorResponse(s));
    };
  };
  auto needs_json = [&](const std::string& route) {
    const std::string type = req.Header("content-type");
    if (!absl::StartsWith(absl::AsciiStrToLower(type), "application/json")) {
      reply(route, ErrorResponse(415, "unsupported_media_type",
                                 "send the body as Content-Type: application/json"));
      return false;
    }
    return true;
  };
  auto get_task = [&](const std::string& id, auto done) {
    v1::GetRequest g;
    g.set_task_id(id);
    CallCoordinator<v1::GetRequest, v1::Task>(
        inflight_, req, g, [&async](auto* c, auto* q, auto* r, auto cb) { async.Get(c, q, r, cb); },
        std::move(done));
  };
  auto start_stream = [this, req, responder, reply, caller, key, cors](
                          const std::string& route, v1::WatchRequest watch, StreamFormat format,
                          std::vector<std::string> initial) {
    // ?after= is for clients that cannot set headers on their first request
    // (a browser's EventSource).
    const bool by_header = !req.Header("last-event-id").empty();
    const std::string param = by_header ? "Last-Event-ID" : "after";
    if (const std::string last = by_header ? req.Header("last-event-id") : req.Query("after");
        !last.empty()) {
      uint64_t cursor = 0;
      if (!absl::SimpleAtoi(last, &cursor)) {
        reply(route, ErrorResponse(400, "invalid_argument", param + ": not a cursor", param));
        return;
      }
      watch.set_after_cursor(cursor);
      initial.clear();  // The client has the state; it resumes after its cursor.
    }
    auto close_stream = OpenStream(caller, watch.task_id());
    if (!close_stream) {
      reply(route,
            ErrorResponse(429, "resource_exhausted", "too many open streams for this caller"));
      return;
    }
    metrics_.Observe(route, 200, 0);
    auto writer = responder->StartEventStream(cors);
    if (route == "/api/events" && watch.has_after_cursor() && req.Header("last-event-id").empty() &&
        req.Query("after").empty()) {
      // Shared fan-out when the hub's ring covers the cursor, for a caller
      // whose key the coordinator has just accepted (the listing); one that
      // resumes gets its own Watch, so its key is checked there.
      for (auto& frame : initial) writer->Write(std::move(frame));
      initial.clear();
      writer->Write("retry: 2000\n\n");
      if (hub_->Subscribe(writer, watch, watch.after_cursor(), close_stream)) return;
    }
    TrackStream(EventStream::Start(*stub_, watch, key, std::move(writer), format,
                                   std::move(initial), metrics_,
                                   CountStream(std::move(close_stream))));
  };

  // ---------------------------------------------------------------- WebSocket
  if (req.websocket) {
    // Messages from the client: {"type":"ping"} is answered with a pong.
    auto serve = [this, req, caller, key](std::shared_ptr<WebSocketConnection> ws,
                                          v1::WatchRequest watch, StreamFormat format,
                                          std::vector<std::string> initial) {
      std::weak_ptr<WebSocketConnection> weak = ws;
      ws->OnMessage([weak](std::string text) {
        auto conn = weak.lock();
        if (!conn) return;
        google::protobuf::Struct msg;
        if (FromJson(text, &msg).ok() && msg.fields().count("type") &&
            msg.fields().at("type").string_value() == "ping") {
          conn->Write(R"({"type":"pong"})");
        }
      });
      if (const std::string after = req.Query("after"); !after.empty()) {
        uint64_t cursor = 0;
        if (!absl::SimpleAtoi(after, &cursor)) return ws->CloseWith(4400, "after: not a cursor");
        watch.set_after_cursor(cursor);
        initial.clear();
      }
      metrics_.Observe(
          req.path.rfind("/ws/monitoring", 0) == 0 ? "/ws/monitoring" : "/api/v1/ws/tasks/{id}",
          101, 0);
      auto close_stream = OpenStream(caller, watch.task_id());
      if (!close_stream) return ws->CloseWith(4429, "too many open streams for this caller");
      TrackStream(EventStream::Start(*stub_, watch, key, ws, format, std::move(initial), metrics_,
                                     CountStream(std::move(close_stream))));
    };
    if (p0 == "api" && p1 == "v1" && p2 == "ws" && p3 == "tasks" && parts.size() == 5) {
      const std::string id = parts[4];
      return get_task(id, [responder, serve, id](const grpc::Status& s, const v1::Task& t) {
        auto ws = responder->AcceptWebSocket();
        if (s.error_code() == grpc::StatusCode::NOT_FOUND)
          return ws->CloseWith(4004, "task not found");
        if (!s.ok()) return ws->CloseWith(4000 + ErrorResponse(s).status, s.error_message());
        v1::WatchRequest watch;
        watch.set_task_id(id);
        watch.set_after_cursor(0);
        serve(ws, watch, StreamFormat::kRedisSre,
              {absl::StrCat(R"({"update_type":"initial_state","thread_id":)", JsonString(id),
                            R"(,"status":)", JsonString(NodelinkStatus(t.status())), R"(,"task":)",
                            ToJson(t), R"(,"timestamp":)", JsonString(Rfc3339(t.updated_at())),
                            "}")});
      });
    }
    if (req.path == "/ws/monitoring") {
      v1::WatchRequest watch;
      watch.set_task_id(req.Query("task_id"));
      if (absl::Status s = AddEventTypes("event_types", req.Query("event_types"), watch); !s.ok()) {
        return reply("/ws/monitoring",
                     ErrorResponse(400, "invalid_argument", s.message(), "event_types"));
      }
      const bool stats_only = req.Query("stats_only") == "true";
      if (stats_only) {
        watch.clear_types();
        watch.add_types(v1::EVENT_TYPE_TASK_STATUS);
        watch.add_types(v1::EVENT_TYPE_SYSTEM_METRICS);
      }
      return CallCoordinator<v1::StatsRequest, v1::StatsResponse>(
          inflight_, req, v1::StatsRequest(),
          [&async](auto* c, auto* q, auto* r, auto cb) { async.Stats(c, q, r, cb); },
          [responder, serve, watch](const grpc::Status& s, const v1::StatsResponse& stats) {
            auto ws = responder->AcceptWebSocket();
            if (!s.ok()) return ws->CloseWith(4000 + ErrorResponse(s).status, s.error_message());
            serve(ws, watch, StreamFormat::kWebSocketEvents,
                  {absl::StrCat(R"({"type":"stats_snapshot","stats":)", ToJson(stats), "}")});
          });
    }
    return reply("websocket", ErrorResponse(404, "not_found", "no WebSocket at " + req.path));
  }

  // ---------------------------------------------------------------- static
  if (m == "GET") {
    const auto& assets = web::Assets();
    auto it = assets.find(req.path == "/" ? "/index.html" : req.path);
    if (it != assets.end()) {
      HttpResponse r;
      r.content_type = std::string(it->second.first);
      r.body = std::string(it->second.second);
      r.headers.emplace_back("Cache-Control", "no-cache");
      return reply(req.path == "/" ? "/index.html" : req.path, std::move(r));
    }
  }

  if (m == "GET" && req.path == "/favicon.ico") return reply("/favicon.ico", JsonResponse(204, ""));

  // ---------------------------------------------------------------- health
  if (m == "GET" && req.path == "/health") {
    return reply("/health", JsonResponse(200, R"({"status":"ok"})"));
  }
  if (m == "GET" && req.path == "/ready") {
    // GetInfo: answered without the registry, so a busy coordinator is not
    // made busier by its probes.
    return CallCoordinator<v1::GetInfoRequest, v1::CoordinatorInfo>(
        inflight_, req, v1::GetInfoRequest(),
        [this](auto* c, auto* q, auto* r, auto cb) { monitoring_->async()->GetInfo(c, q, r, cb); },
        [reply](const grpc::Status& s, const v1::CoordinatorInfo&) {
          // Any answer means the coordinator is there.
          const bool up = s.error_code() != grpc::StatusCode::UNAVAILABLE &&
                          s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED;
          reply("/ready", up ? JsonResponse(200, R"({"status":"ready"})")
                             : ErrorResponse(503, "unavailable", "coordinator unreachable"));
        });
  }

  // ---------------------------------------------------------------- /api
  if (p0 == "api" && p1 == "tasks") {
    const std::string& id = p2;
    if (parts.size() == 2 && m == "POST") {
      if (!needs_json("/api/tasks")) return;
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
          proto_reply(route, 200));
    }
    if (id == "stats" && parts.size() == 3 && m == "GET") {
      return CallCoordinator<v1::StatsRequest, v1::StatsResponse>(
          inflight_, req, v1::StatsRequest(),
          [&async](auto* c, auto* q, auto* r, auto cb) { async.Stats(c, q, r, cb); },
          proto_reply("/api/tasks/stats", 200));
    }
    if (id == "cleanup" && parts.size() == 3 && m == "POST") {
      return reply(
          "/api/tasks/cleanup",
          ErrorResponse(501, "unimplemented",
                        "cleanup is automatic: finished tasks are removed after the "
                        "coordinator's --retention; delete one with DELETE /api/tasks/{id}"));
    }
    if (parts.size() == 3 && m == "GET") {
      return get_task(id, proto_reply("/api/tasks/{id}", 200));
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
          proto_reply("/api/tasks/{id}/cancel", 200));
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
          proto_reply("/api/tasks/{id}/output", 200));
    }
    if (parts.size() == 4 && p3 == "events" && m == "GET") {
      // The task must exist (404 otherwise); its stream opens with its state
      // and replays what the coordinator's log still holds.
      return get_task(id, [start_stream, reply, id](const grpc::Status& s, const v1::Task& t) {
        if (!s.ok()) return reply("/api/tasks/{id}/events", ErrorResponse(s));
        v1::WatchRequest watch;
        watch.set_task_id(id);
        watch.set_after_cursor(0);
        start_stream("/api/tasks/{id}/events", watch, StreamFormat::kTaskEvents,
                     {absl::StrCat("event: initial_state\ndata: ", ToJson(t), "\n\n")});
      });
    }
  }
  if (p0 == "api" && p1 == "runs") {
    const std::string& id = p2;
    if (parts.size() == 2 && m == "POST") {
      if (!needs_json("/api/runs")) return;
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
          return reply("/api/runs", ErrorResponse(400, "invalid_argument",
                                                  "pageSize: not a number", "pageSize"));
        }
        list.set_page_size(n);
      }
      list.set_page_token(req.Query("pageToken"));
      return CallCoordinator<v1::ListRunsRequest, v1::ListRunsResponse>(
          inflight_, req, list,
          [&async](auto* c, auto* q, auto* r, auto cb) { async.ListRuns(c, q, r, cb); },
          proto_reply("/api/runs", 200));
    }
    auto get_run = [&](auto done) {
      v1::GetRunRequest g;
      g.set_run_id(id);
      CallCoordinator<v1::GetRunRequest, v1::Run>(
          inflight_, req, g,
          [&async](auto* c, auto* q, auto* r, auto cb) { async.GetRun(c, q, r, cb); },
          std::move(done));
    };
    if (parts.size() == 3 && m == "GET") return get_run(proto_reply("/api/runs/{id}", 200));
    if (parts.size() == 4 && p3 == "cancel" && m == "POST") {
      v1::CancelRunRequest cancel;
      cancel.set_run_id(id);
      return CallCoordinator<v1::CancelRunRequest, v1::Run>(
          inflight_, req, cancel,
          [&async](auto* c, auto* q, auto* r, auto cb) { async.CancelRun(c, q, r, cb); },
          proto_reply("/api/runs/{id}/cancel", 200));
    }
    if (parts.size() == 4 && p3 == "events" && m == "GET") {
      // Opens with the run and every target's row, then replays what the
      // coordinator's log holds of the run and follows it live.
      return get_run([start_stream, reply, id](const grpc::Status& s, const v1::Run& run) {
        if (!s.ok()) return reply("/api/runs/{id}/events", ErrorResponse(s));
        v1::WatchRequest watch;
        watch.set_run_id(id);
        watch.set_after_cursor(0);
        start_stream("/api/runs/{id}/events", watch, StreamFormat::kTaskEvents,
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
      return start_stream("/api/events", watch, StreamFormat::kTaskEvents, {});
    }
    // A new client first gets the unfinished tasks, then every event after
    // the cursor of that listing: nothing falls between the two.
    v1::ListRequest active;
    OnlyUnfinished(active);
    active.set_page_size(1000);
    return CallCoordinator<v1::ListRequest, v1::ListResponse>(
        inflight_, req, active,
        [&async](auto* c, auto* q, auto* r, auto cb) { async.List(c, q, r, cb); },
        [start_stream, reply, watch](const grpc::Status& s, const v1::ListResponse& list) {
          if (!s.ok()) return reply("/api/events", ErrorResponse(s));
          v1::WatchRequest after = watch;
          after.set_after_cursor(list.cursor());
          start_stream("/api/events", after, StreamFormat::kTaskEvents,
                       {absl::StrCat("id: ", list.cursor(),
                                     "\nevent: initial_state\ndata: ", ToJson(list), "\n\n")});
        });
  }
  if (m == "GET" && p0 == "api" && p1 == "audit" && parts.size() == 2) {
    v1::ListAuditRequest audit;
    audit.set_actor(req.Query("actor"));
    audit.set_action(req.Query("action"));
    for (const auto& [param, field] : {std::pair<const char*, const char*>{"after", "after_seq"},
                                       {"limit", "limit"}}) {
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
        proto_reply("/api/agents", 200));
  }
  if (m == "GET" && p0 == "api" && p1 == "v1" && p2 == "tasks" &&
      Segment(parts, 4) == "stream-info" && parts.size() == 5) {
    return get_task(p3, [this, reply](const grpc::Status& s, const v1::Task& t) {
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

  // ---------------------------------------------------------------- monitoring
  if (p0 == "api" && p1 == "monitoring") {
    auto& mon = *monitoring_->async();
    if (m == "GET" && p2 == "metrics" && p3 == "latest" && parts.size() == 4) {
      return CallCoordinator<v1::GetLatestMetricsRequest, v1::MetricsResponse>(
          inflight_, req, {},
          [&mon](auto* c, auto* q, auto* r, auto cb) { mon.GetLatestMetrics(c, q, r, cb); },
          proto_reply("/api/monitoring/metrics/latest", 200));
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
          return reply(route, ErrorResponse(400, "invalid_argument",
                                            absl::StrCat(bound, ": not an RFC 3339 time (", err,
                                                         ")"),
                                            bound));
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
          proto_reply(route, 200));
    }
    if (m == "GET" && p2 == "services" && parts.size() == 3) {
      return CallCoordinator<v1::ListServicesRequest, v1::ListServicesResponse>(
          inflight_, req, {},
          [&mon](auto* c, auto* q, auto* r, auto cb) { mon.ListServices(c, q, r, cb); },
          proto_reply("/api/monitoring/services", 200));
    }
    if (m == "GET" && p2 == "services" && parts.size() >= 4) {  // Names hold a '/'.
      v1::GetServiceRequest get;
      get.set_name(absl::StrJoin(parts.begin() + 3, parts.end(), "/"));
      return CallCoordinator<v1::GetServiceRequest, v1::ServiceHealth>(
          inflight_, req, get,
          [&mon](auto* c, auto* q, auto* r, auto cb) { mon.GetService(c, q, r, cb); },
          proto_reply("/api/monitoring/services/{name}", 200));
    }
    if (m == "GET" && p2 == "alerts" && parts.size() == 3) {
      v1::ListAlertsRequest list;
      list.set_active_only(req.Query("active") == "true");
      return CallCoordinator<v1::ListAlertsRequest, v1::ListAlertsResponse>(
          inflight_, req, list,
          [&mon](auto* c, auto* q, auto* r, auto cb) { mon.ListAlerts(c, q, r, cb); },
          proto_reply("/api/monitoring/alerts", 200));
    }
    if (m == "POST" && p2 == "alerts" && Segment(parts, 4) == "resolve" && parts.size() == 5) {
      v1::ResolveAlertRequest resolve;
      resolve.set_alert_id(p3);
      return CallCoordinator<v1::ResolveAlertRequest, v1::Alert>(
          inflight_, req, resolve,
          [&mon](auto* c, auto* q, auto* r, auto cb) { mon.ResolveAlert(c, q, r, cb); },
          proto_reply("/api/monitoring/alerts/{id}/resolve", 200));
    }
    if (m == "GET" && p2 == "status" && parts.size() == 3) {
      return CallCoordinator<v1::GetStatusRequest, v1::MonitoringStatus>(
          inflight_, req, {},
          [&mon](auto* c, auto* q, auto* r, auto cb) { mon.GetStatus(c, q, r, cb); },
          proto_reply("/api/monitoring/status", 200));
    }
    if (m == "POST" && p2 == "start" && parts.size() == 3) {
      return CallCoordinator<v1::StartMonitoringRequest, v1::MonitoringStatus>(
          inflight_, req, {}, [&mon](auto* c, auto* q, auto* r, auto cb) { mon.Start(c, q, r, cb); },
          proto_reply("/api/monitoring/start", 200));
    }
    if (m == "POST" && p2 == "stop" && parts.size() == 3) {
      return CallCoordinator<v1::StopMonitoringRequest, v1::MonitoringStatus>(
          inflight_, req, {}, [&mon](auto* c, auto* q, auto* r, auto cb) { mon.Stop(c, q, r, cb); },
          proto_reply("/api/monitoring/stop", 200));
    }
  }

  // ---------------------------------------------------------------- nodelink
  auto nodelink_task = [](const v1::Task& t) {
    return absl::StrCat(R"({"task_id":)", JsonString(t.id()), R"(,"agent_id":)",
                        JsonString(t.agent_id().empty() ? t.spec().agent_id() : t.agent_id()),
                        R"(,"status":)", JsonString(NodelinkStatus(t.status())),
                        R"(,"created_at":)", JsonString(Rfc3339(t.created_at())),
                        R"(,"updated_at":)", JsonString(Rfc3339(t.updated_at())), "}");
  };
  if (p0 == "tasks" && (p1 == "shell" || p1 == "docker") && parts.size() == 2 && m == "POST") {
    const std::string route = "/tasks/" + p1;
    if (!needs_json(route)) return;
    google::protobuf::Struct body;
    if (absl::Status s = FromJson(req.body, &body); !s.ok()) {
      return reply(route, ErrorResponse(400, "invalid_argument", s.message(), "body"));
    }
    v1::SubmitRequest submit;
    v1::TaskSpec& spec = *submit.mutable_spec();
    if (absl::Status s = p1 == "shell" ? NodelinkShellSpec(body, spec) : NodelinkDockerSpec(body, spec);
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
    return get_task(p1, [reply, nodelink_task](const grpc::Status& s, const v1::Task& t) {
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
        proto_reply("/agents", 200));
  }
  if (m == "GET" && req.path == "/stream") {
    const std::string ref = req.Query("ref");
    if (ref.empty()) {
      return reply("/stream",
                   ErrorResponse(400, "invalid_argument", "ref: the task id is required", "ref"));
    }
    return get_task(ref, [start_stream, reply, ref](const grpc::Status& s, const v1::Task&) {
      if (!s.ok()) return reply("/stream", ErrorResponse(s));
      v1::WatchRequest watch;
      watch.set_task_id(ref);
      watch.set_after_cursor(0);
      start_stream("/stream", watch, StreamFormat::kNodelink, {});
    });
  }
  reply("unmatched", ErrorResponse(404, "not_found", "no route for " + m + " " + req.path));
}

}  // namespace taskgrid::gateway
