// JSON for the gateway: the proto3 JSON mapping of taskgrid.v1 messages (one
// model underneath), error bodies, and the few hand-shaped compatibility
// bodies nodelink clients expect.
#ifndef TASKGRID_SERVICES_GATEWAY_JSON_H_
#define TASKGRID_SERVICES_GATEWAY_JSON_H_

#include <google/protobuf/message.h>
#include <google/protobuf/struct.pb.h>
#include <grpcpp/support/status.h>

#include <string>

#include "absl/status/status.h"
#include "services/gateway/http_server.h"
#include "taskgrid/v1/task.pb.h"

namespace taskgrid::gateway {

// camelCase names, enums by name, zero values included.
std::string ToJson(const google::protobuf::Message& message);

// ToJson for events, faster for output: the same bytes as ToJson(event), with
// the output data base64-encoded directly instead of through the generic
// printer (which serializes and re-parses the message).
std::string EventToJson(const v1::TaskEvent& event);

// Deepest nesting of arrays and objects a JSON body or message may have.
inline constexpr int kMaxJsonDepth = 32;
// kInvalidArgument ("body: nested deeper than N levels") when arrays and
// objects in `json` nest deeper than `max_depth`. One pass, no allocation.
absl::Status CheckJsonNesting(absl::string_view json, int max_depth);

// Parses strictly: unknown fields and wrong types are kInvalidArgument with
// the parser's reason; nesting past kMaxJsonDepth is refused unparsed.
absl::Status FromJson(const std::string& json, google::protobuf::Message* message);

// `s` as a JSON string literal, quotes included.
std::string JsonString(absl::string_view s);

// {"error": {"code", "message", "field"}} with `status`. `field` is taken
// from a "field: reason" message when not given.
HttpResponse ErrorResponse(int status, absl::string_view code, absl::string_view message,
                           absl::string_view field = "");
// The HTTP equivalent of a coordinator status (400, 401, 403, 404, 409, 429,
// 503, ...).
HttpResponse ErrorResponse(const grpc::Status& status);
HttpResponse JsonResponse(int status, std::string body);

// nodelink's status words: pending, sent, in_progress, completed, failed,
// timeout, cancelled.
std::string NodelinkStatus(v1::TaskStatus status);
// nodelink's POST /tasks/shell body {agent_id, cmd, timeout (seconds)} into
// `spec`. kInvalidArgument "field: reason" for an unknown field, a wrong
// type or a missing cmd.
absl::Status NodelinkShellSpec(const google::protobuf::Struct& body, v1::TaskSpec& spec);
// nodelink's POST /tasks/docker body {agent_id, operation (run, start, stop,
// logs, inspect, remove, list, pull), image, id (the container), timeout},
// plus command (array of strings) and env (object), into `spec`.
absl::Status NodelinkDockerSpec(const google::protobuf::Struct& body, v1::TaskSpec& spec);

// RFC 3339 UTC ("2025-07-28T10:00:00.123Z").
std::string Rfc3339(const google::protobuf::Timestamp& t);

}  // namespace taskgrid::gateway

#endif  // TASKGRID_SERVICES_GATEWAY_JSON_H_
