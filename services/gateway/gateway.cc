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
#include "services/gateway/gateway_routes.h"
#include "services/gateway/json.h"
#include "services/gateway/web_assets.h"

namespace taskgrid::gateway {
namespace {

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
  h.set_name("gateway/" + (options_.gateway_id.empty() ? absl::StrCat(HostName(), ":", http_port())
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
      spdlog::debug("health_report_failed code={} message=\"{}\"", static_cast<int>(s.error_code()),
                    s.error_message());
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

void Gateway::Handle(HttpRequest request, std::shared_ptr<Responder> responder) {
  const absl::Time start = absl::Now();
  auto x = std::make_shared<Exchange>();
  x->req = std::move(request);
  const HttpRequest& req = x->req;
  x->responder = responder;
  x->cors = edge_.CorsHeaders(req);
  x->reply = [this, responder, start, cors = x->cors](const std::string& route, HttpResponse r) {
    const absl::Duration took = absl::Now() - start;
    metrics_.Observe(route, r.status, absl::ToDoubleSeconds(took));
    ++requests_;
    if (r.status >= 500) ++server_errors_;
    busy_micros_ += absl::ToInt64Microseconds(took);
    r.headers.insert(r.headers.end(), cors.begin(), cors.end());
    responder->Reply(std::move(r));
  };
  const Reply& reply = x->reply;
  const Headers& cors = x->cors;
  x->key = ApiKeyOf(req);
  x->caller = CallerOf(req, x->key);

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
    if (const absl::Duration wait = limiter_.Take(x->caller); wait > absl::ZeroDuration()) {
      HttpResponse r = ErrorResponse(429, "resource_exhausted",
                                     "rate limit exceeded; retry after Retry-After seconds");
      r.headers.emplace_back(
          "Retry-After", std::to_string(absl::ToInt64Seconds(absl::Ceil(wait, absl::Seconds(1)))));
      return reply("rate_limited", std::move(r));
    }
  }
  x->parts = absl::StrSplit(req.path, '/', absl::SkipEmpty());
  const std::vector<std::string>& parts = x->parts;
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
  x->p0 = Segment(parts, 0);
  x->p1 = Segment(parts, 1);
  x->p2 = Segment(parts, 2);
  x->p3 = Segment(parts, 3);
  if (req.websocket) return ServeWebSocket(x);
  const std::string& m = req.method;
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

  if (x->p0 == "api" && x->p1 == "monitoring") return ServeMonitoring(x);
  if (x->p0 == "api") return ServeApi(x);
  ServeNodelink(x);
}

void Gateway::GetTask(const HttpRequest& req, const std::string& id,
                      std::function<void(const grpc::Status&, const v1::Task&)> done) {
  v1::GetRequest get;
  get.set_task_id(id);
  auto& async = *stub_->async();
  CallCoordinator<v1::GetRequest, v1::Task>(
      inflight_, req, get, [&async](auto* c, auto* q, auto* r, auto cb) { async.Get(c, q, r, cb); },
      std::move(done));
}

void Gateway::StartStream(const ExchangePtr& x, const std::string& route, v1::WatchRequest watch,
                          StreamFormat format, std::vector<std::string> initial) {
  const HttpRequest& req = x->req;
  const Reply& reply = x->reply;
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
  auto close_stream = OpenStream(x->caller, watch.task_id());
  if (!close_stream) {
    reply(route, ErrorResponse(429, "resource_exhausted", "too many open streams for this caller"));
    return;
  }
  metrics_.Observe(route, 200, 0);
  auto writer = x->responder->StartEventStream(x->cors);
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
  TrackStream(EventStream::Start(*stub_, watch, x->key, std::move(writer), format,
                                 std::move(initial), metrics_,
                                 CountStream(std::move(close_stream))));
}

}  // namespace taskgrid::gateway
