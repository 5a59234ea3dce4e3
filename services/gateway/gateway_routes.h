// What the gateway's routes share, private to gateway*.cc: one request on
// its way through them (Exchange), and how a route calls the coordinator
// and answers.
#ifndef TASKGRID_SERVICES_GATEWAY_GATEWAY_ROUTES_H_
#define TASKGRID_SERVICES_GATEWAY_GATEWAY_ROUTES_H_

#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/gateway/gateway.h"
#include "services/gateway/http_server.h"
#include "services/gateway/json.h"
#include "taskgrid/v1/task_service.pb.h"

namespace taskgrid::gateway {

using Reply = std::function<void(const std::string& route, HttpResponse response)>;

// One request on its way through the routes.
struct Exchange {
  HttpRequest req;
  std::shared_ptr<Responder> responder;
  std::string key;                 // The caller's API key, forwarded to the coordinator.
  std::string caller;              // Who rate and stream limits count the request against.
  Headers cors;                    // Added to every answer.
  std::vector<std::string> parts;  // The path's segments,
  std::string p0, p1, p2, p3;      // and the first four ("" where absent).
  // Every answer goes through here, so metrics see the route pattern.
  Reply reply;
};
inline constexpr absl::Duration kCallTimeout = absl::Seconds(10);

// The caller's key, forwarded so the coordinator decides what it may do.
inline std::string ApiKeyOf(const HttpRequest& req) {
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

inline std::vector<std::string> SplitList(const std::string& s) {
  return absl::StrSplit(s, ',', absl::SkipWhitespace());
}

// Adds the event names in `value` ("task:status,agent:connected") to
// `watch`; kInvalidArgument naming `param` for an unknown one.
inline absl::Status AddEventTypes(const std::string& param, const std::string& value,
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
inline void OnlyUnfinished(v1::ListRequest& list) {
  for (auto s : {v1::TASK_STATUS_PENDING, v1::TASK_STATUS_QUEUED, v1::TASK_STATUS_DISPATCHED,
                 v1::TASK_STATUS_RUNNING}) {
    list.add_status(s);
  }
}

inline std::string Segment(const std::vector<std::string>& parts, size_t i) {
  return i < parts.size() ? parts[i] : "";
}

// A coordinator call's callback: its response as JSON with `ok_status`, or
// its error.
inline auto ProtoReply(Reply reply, std::string route, int ok_status) {
  return [reply = std::move(reply), route = std::move(route), ok_status](
             const grpc::Status& s, const google::protobuf::Message& resp) {
    reply(route, s.ok() ? JsonResponse(ok_status, ToJson(resp)) : ErrorResponse(s));
  };
}

// False, after answering 415, unless the body is declared JSON.
inline bool NeedsJson(const Exchange& x, const std::string& route) {
  const std::string type = x.req.Header("content-type");
  if (!absl::StartsWith(absl::AsciiStrToLower(type), "application/json")) {
    x.reply(route, ErrorResponse(415, "unsupported_media_type",
                                 "send the body as Content-Type: application/json"));
    return false;
  }
  return true;
}

inline void NotFound(const Exchange& x) {
  x.reply("unmatched",
          ErrorResponse(404, "not_found", "no route for " + x.req.method + " " + x.req.path));
}

}  // namespace taskgrid::gateway

#endif  // TASKGRID_SERVICES_GATEWAY_GATEWAY_ROUTES_H_
