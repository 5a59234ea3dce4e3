#include "services/gateway/json.h"

#include <google/protobuf/util/json_util.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "services/common/proto_time.h"

namespace taskgrid::gateway {

std::string ToJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

std::string EventToJson(const v1::TaskEvent& event) {
  if (event.output().data().empty()) return ToJson(event);
  v1::TaskEvent light = event;
  std::string data;
  light.mutable_output()->mutable_data()->swap(data);
  std::string json = ToJson(light);
  const std::string empty = R"("data":"")";
  const size_t output = json.find(R"("output":{)");
  const size_t at = output == std::string::npos ? output : json.find(empty, output);
  if (at == std::string::npos) return ToJson(event);  // Unexpected layout: the slow way.
  return absl::StrCat(json.substr(0, at), R"("data":")", absl::Base64Escape(data), R"(")",
                      json.substr(at + empty.size()));
}

absl::Status CheckJsonNesting(absl::string_view json, int max_depth) {
  int depth = 0;
  char quote = 0;  // The one that opened the string we are in, if any.
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (quote != 0) {
      if (c == '\\') {
        ++i;
      } else if (c == quote) {
        quote = 0;
      }
    } else if (c == '"' || c == '\'') {  // protobuf's parser takes 'strings' too.
      quote = c;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) {
        return absl::InvalidArgumentError(
            absl::StrCat("body: nested deeper than ", max_depth, " levels"));
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return absl::OkStatus();
}

absl::Status FromJson(const std::string& json, google::protobuf::Message* message) {
  // Checked before the parser sees it: protobuf's time on nested arrays
  // grows much faster than their size.
  if (absl::Status s = CheckJsonNesting(json, kMaxJsonDepth); !s.ok()) return s;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto s = google::protobuf::util::JsonStringToMessage(json, message, options);
  if (s.ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(std::string(s.message()));
}

std::string JsonString(absl::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out += "\"";
  return out;
}

HttpResponse JsonResponse(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

HttpResponse ErrorResponse(int status, absl::string_view code, absl::string_view message,
                           absl::string_view field) {
  std::string f(field);
  if (f.empty()) {
    // Coordinator messages read "field.path: reason".
    const size_t colon = message.find(": ");
    const absl::string_view head = message.substr(0, colon);
    if (colon != absl::string_view::npos && head.find(' ') == absl::string_view::npos) {
      f = std::string(head);
    }
  }
  return JsonResponse(status,
                      absl::StrCat(R"({"error":{"code":)", JsonString(code), R"(,"message":)",
                                   JsonString(message), R"(,"field":)", JsonString(f), "}}"));
}

HttpResponse ErrorResponse(const grpc::Status& status) {
  int http = 500;
  switch (status.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      http = 400;
      break;
    case grpc::StatusCode::UNAUTHENTICATED:
      http = 401;
      break;
    case grpc::StatusCode::PERMISSION_DENIED:
      http = 403;
      break;
    case grpc::StatusCode::NOT_FOUND:
      http = 404;
      break;
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ABORTED:
      http = 409;
      break;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      http = 429;
      break;
    case grpc::StatusCode::UNIMPLEMENTED:
      http = 501;
      break;
    case grpc::StatusCode::UNAVAILABLE:
      http = 503;
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      http = 504;
      break;
    default:
      break;
  }
  static const char* const kCodes[] = {"ok",
                                       "cancelled",
                                       "unknown",
                                       "invalid_argument",
                                       "deadline_exceeded",
                                       "not_found",
                                       "already_exists",
                                       "permission_denied",
                                       "resource_exhausted",
                                       "failed_precondition",
                                       "aborted",
                                       "out_of_range",
                                       "unimplemented",
                                       "internal",
                                       "unavailable",
                                       "data_loss",
                                       "unauthenticated"};
  const int code = static_cast<int>(status.error_code());
  const std::string message = status.error_code() == grpc::StatusCode::UNAVAILABLE
                                  ? "coordinator unavailable: " + status.error_message()
                                  : status.error_message();
  HttpResponse r = ErrorResponse(http, code >= 0 && code <= 16 ? kCodes[code] : "unknown", message);
  if (http == 503) r.headers.emplace_back("Retry-After", "1");
  return r;
}

std::string NodelinkStatus(v1::TaskStatus status) {
  switch (status) {
    case v1::TASK_STATUS_DISPATCHED:
      return "sent";
    case v1::TASK_STATUS_RUNNING:
      return "in_progress";
    case v1::TASK_STATUS_SUCCEEDED:
      return "completed";
    case v1::TASK_STATUS_FAILED:
    case v1::TASK_STATUS_LOST:
      return "failed";
    case v1::TASK_STATUS_TIMED_OUT:
      return "timeout";
    case v1::TASK_STATUS_CANCELLED:
      return "cancelled";
    default:
      return "pending";
  }
}

std::string Rfc3339(const google::protobuf::Timestamp& t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", FromProto(t), absl::UTCTimeZone());
}

namespace {

absl::Status WrongField(const std::string& key, absl::string_view expected) {
  return absl::InvalidArgumentError(
      absl::StrCat(key, ": unknown field or wrong type (", expected, ")"));
}

// agent_id and timeout, common to both nodelink bodies; false when `key` is
// neither.
bool CommonField(const std::string& key, const google::protobuf::Value& value,
                 v1::TaskSpec& spec) {
  if (key == "agent_id" && value.has_string_value()) {
    spec.set_agent_id(value.string_value());
  } else if (key == "timeout" && value.has_number_value() && value.number_value() > 0) {
    spec.mutable_timeout()->set_seconds(static_cast<int64_t>(value.number_value()));
  } else {
    return false;
  }
  return true;
}

}  // namespace

absl::Status NodelinkShellSpec(const google::protobuf::Struct& body, v1::TaskSpec& spec) {
  for (const auto& [key, value] : body.fields()) {
    if (CommonField(key, value, spec)) continue;
    if (key == "cmd" && value.has_string_value()) {
      spec.mutable_shell()->set_command(value.string_value());
    } else {
      return WrongField(key, "agent_id and cmd are strings, timeout is seconds > 0");
    }
  }
  if (!spec.has_shell()) return absl::InvalidArgumentError("cmd: is required");
  spec.set_type("shell");
  return absl::OkStatus();
}

absl::Status NodelinkDockerSpec(const google::protobuf::Struct& body, v1::TaskSpec& spec) {
  v1::DockerSpec& d = *spec.mutable_docker();
  constexpr absl::string_view kTypes =
      "agent_id, operation, image and id are strings, timeout is seconds > 0, command is an "
      "array of strings, env an object of strings";
  for (const auto& [key, value] : body.fields()) {
    if (CommonField(key, value, spec)) continue;
    if (key == "operation" && value.has_string_value()) {
      v1::DockerSpec::Operation op;
      if (!v1::DockerSpec::Operation_Parse(
              absl::StrCat("DOCKER_OPERATION_", absl::AsciiStrToUpper(value.string_value())),
              &op)) {
        return absl::InvalidArgumentError(
            absl::StrCat("operation: \"", value.string_value(),
                         "\" is not run, start, stop, logs, inspect, remove, list or pull"));
      }
      d.set_operation(op);
    } else if (key == "image" && value.has_string_value()) {
      d.set_image(value.string_value());
    } else if (key == "id" && value.has_string_value()) {
      d.set_container(value.string_value());
    } else if (key == "command" && value.has_list_value()) {
      for (const auto& arg : value.list_value().values()) {
        if (!arg.has_string_value()) return WrongField(key, kTypes);
        d.add_command(arg.string_value());
      }
    } else if (key == "env" && value.has_struct_value()) {
      for (const auto& [k, v] : value.struct_value().fields()) {
        if (!v.has_string_value()) return WrongField(key, kTypes);
        (*d.mutable_env())[k] = v.string_value();
      }
    } else {
      return WrongField(key, kTypes);
    }
  }
  spec.set_type("docker");
  return absl::OkStatus();
}

}  // namespace taskgrid::gateway
