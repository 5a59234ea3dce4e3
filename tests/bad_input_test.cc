// Bad input over both public APIs, as a table: each case names the call, the
// status it must get, and words its message must contain (the field and the
// reason). After all of them, both services still serve and no task was
// created by a refused request.
#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "taskgrid/v1/task_service.grpc.pb.h"
#include "tests/gateway_cluster.h"
#include "tests/http_test_client.h"

namespace taskgrid {
namespace {

using ::testing::HasSubstr;
using testing_http::Fetch;

struct GrpcCase {
  std::string name;
  std::function<grpc::Status(v1::TaskService::Stub&, grpc::ClientContext&)> call;
  grpc::StatusCode code;
  std::string message;  // A substring of the error message.
};

struct RestCase {
  std::string method;
  std::string target;
  std::string body;
  int status;
  std::string message;  // A substring of the response body.
  std::map<std::string, std::string> headers = {};
};

// A Submit of `spec` given as JSON-ish setup on a default shell spec.
std::function<grpc::Status(v1::TaskService::Stub&, grpc::ClientContext&)> SubmitWith(
    std::function<void(v1::SubmitRequest&)> edit) {
  return [edit](v1::TaskService::Stub& stub, grpc::ClientContext& ctx) {
    v1::SubmitRequest req;
    req.mutable_spec()->mutable_shell()->set_command("true");
    edit(req);
    v1::SubmitResponse resp;
    return stub.Submit(&ctx, req, &resp);
  };
}

class BadInputTest : public GatewayCluster {
 protected:
  void SetUp() override {
    StartCoordinator();
    channel_ = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
    stub_ = v1::TaskService::NewStub(channel_);
    StartAgent("bad-input-agent");
    StartGateway([](gateway::GatewayOptions& o) { o.http.max_body_bytes = 64 << 10; });
  }

  // Sends `payload` as the request of `method`, whatever it holds.
  grpc::Status RawCall(grpc::ClientContext& ctx, const std::string& method,
                       const std::string& payload) {
    grpc::GenericStub generic(channel_);
    grpc::Slice slice(payload);
    grpc::ByteBuffer request(&slice, 1), response;
    absl::Notification done;
    grpc::Status status;
    generic.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response,
                      [&](grpc::Status s) {
                        status = std::move(s);
                        done.Notify();
                      });
    done.WaitForNotification();
    return status;
  }

  int64_t TaskCount() {
    grpc::ClientContext ctx;
    v1::ListResponse resp;
    v1::ListRequest req;
    req.set_page_size(1);
    EXPECT_TRUE(stub_->List(&ctx, req, &resp).ok());
    return resp.total();
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::TaskService::Stub> stub_;
};

TEST_F(BadInputTest, GrpcCallsGetTheRightCodeAndNameTheField) {
  using grpc::StatusCode;
  const std::vector<GrpcCase> cases = {
      {"no spec", SubmitWith([](auto& r) { r.clear_spec(); }), StatusCode::INVALID_ARGUMENT,
       "spec.shell: is required"},
      {"blank command", SubmitWith([](auto& r) { r.mutable_spec()->mutable_shell()->set_command("  "); }),
       StatusCode::INVALID_ARGUMENT, "spec.shell.command: is empty"},
      {"NUL in command",
       SubmitWith([](auto& r) {
         r.mutable_spec()->mutable_shell()->set_command(std::string("echo \0x", 7));
       }),
       StatusCode::INVALID_ARGUMENT, "spec.shell.command: contains a NUL byte"},
      {"argv and command",
       SubmitWith([](auto& r) { r.mutable_spec()->mutable_shell()->add_argv("true"); }),
       StatusCode::INVALID_ARGUMENT, "spec.shell: set either argv or command"},
      {"empty argv[0]",
       SubmitWith([](auto& r) {
         r.mutable_spec()->mutable_shell()->clear_command();
         r.mutable_spec()->mutable_shell()->add_argv("");
       }),
       StatusCode::INVALID_ARGUMENT, "spec.shell.argv"},
      {"bad env name",
       SubmitWith([](auto& r) { (*r.mutable_spec()->mutable_shell()->mutable_env())["A=B"] = "1"; }),
       StatusCode::INVALID_ARGUMENT, "spec.shell.env: invalid variable name"},
      {"negative timeout",
       SubmitWith([](auto& r) { r.mutable_spec()->mutable_timeout()->set_seconds(-1); }),
       StatusCode::INVALID_ARGUMENT, "spec.timeout"},
      {"huge stdin",
       SubmitWith([](auto& r) {
         r.mutable_spec()->mutable_shell()->set_stdin(std::string(2 << 20, 'x'));
       }),
       StatusCode::INVALID_ARGUMENT, "spec.shell.stdin: larger than"},
      {"too many tags",
       SubmitWith([](auto& r) {
         for (int i = 0; i < 100; ++i) r.mutable_spec()->add_tags(absl::StrCat("t", i));
       }),
       StatusCode::INVALID_ARGUMENT, "spec.tags"},
      {"short secret",
       SubmitWith([](auto& r) { (*r.mutable_spec()->mutable_secret_env())["TOKEN"] = "abc"; }),
       StatusCode::INVALID_ARGUMENT, "spec.secret_env: the value of TOKEN must be 4 to 4096 bytes"},
      {"negative output limit",
       SubmitWith([](auto& r) { r.mutable_spec()->set_max_output_bytes(-1); }),
       StatusCode::INVALID_ARGUMENT, "spec.max_output_bytes"},
      {"empty selector key",
       SubmitWith([](auto& r) { (*r.mutable_spec()->mutable_selector())[""] = "web"; }),
       StatusCode::INVALID_ARGUMENT, "spec.selector"},
      {"unknown agent", SubmitWith([](auto& r) { r.mutable_spec()->set_agent_id("ghost"); }),
       StatusCode::NOT_FOUND, "ghost"},
      {"retry attempts", SubmitWith([](auto& r) {
         r.mutable_spec()->mutable_retry()->set_max_attempts(1000000);
       }),
       StatusCode::INVALID_ARGUMENT, "spec.retry.max_attempts"},
      {"id with spaces", SubmitWith([](auto& r) { r.set_idempotency_key("a b"); }),
       StatusCode::INVALID_ARGUMENT, "idempotency_key"},
      {"Get unknown",
       [](v1::TaskService::Stub& s, grpc::ClientContext& c) {
         v1::GetRequest req;
         req.set_task_id("nope");
         v1::Task t;
         return s.Get(&c, req, &t);
       },
       StatusCode::NOT_FOUND, "nope"},
      {"Get without id",
       [](v1::TaskService::Stub& s, grpc::ClientContext& c) {
         v1::Task t;
         return s.Get(&c, v1::GetRequest(), &t);
       },
       StatusCode::INVALID_ARGUMENT, "task_id"},
      {"List bad page token",
       [](v1::TaskService::Stub& s, grpc::ClientContext& c) {
         v1::ListRequest req;
         req.set_page_token("%%%");
         v1::ListResponse resp;
         return s.List(&c, req, &resp);
       },
       StatusCode::INVALID_ARGUMENT, "page_token"},
      {"GetOutput negative offset",
       [](v1::TaskService::Stub& s, grpc::ClientContext& c) {
         v1::GetOutputRequest req;
         req.set_task_id("nope");
         req.set_stream(v1::OUTPUT_STREAM_STDOUT);
         req.set_offset(-5);
         v1::GetOutputResponse resp;
         return s.GetOutput(&c, req, &resp);
       },
       StatusCode::INVALID_ARGUMENT, "offset"},
      {"Cancel unknown",
       [](v1::TaskService::Stub& s, grpc::ClientContext& c) {
         v1::CancelRequest req;
         req.set_task_id("nope");
         v1::Task t;
         return s.Cancel(&c, req, &t);
       },
       StatusCode::NOT_FOUND, "nope"},
      {"SubmitBatch too large",
       [](v1::TaskService::Stub& s, grpc::ClientContext& c) {
         v1::SubmitBatchRequest req;
         for (int i = 0; i < 1001; ++i) {
           req.add_requests()->mutable_spec()->mutable_shell()->set_command("true");
         }
         v1::SubmitBatchResponse resp;
         return s.SubmitBatch(&c, req, &resp);
       },
       StatusCode::INVALID_ARGUMENT, "requests"},
      {"agent_id and selector",
       SubmitWith([](auto& r) {
         r.mutable_spec()->set_agent_id("bad-input-agent");
         (*r.mutable_spec()->mutable_selector())["role"] = "web";
       }),
       StatusCode::INVALID_ARGUMENT, "spec.agent_id and spec.selector are mutually exclusive"},
      {"List unknown status",
       [](v1::TaskService::Stub& s, grpc::ClientContext& c) {
         v1::ListRequest req;
         req.add_status(static_cast<v1::TaskStatus>(77));
         v1::ListResponse resp;
         return s.List(&c, req, &resp);
       },
       StatusCode::INVALID_ARGUMENT, "status: unknown value 77"},
      {"List unknown priority",
       [](v1::TaskService::Stub& s, grpc::ClientContext& c) {
         v1::ListRequest req;
         req.add_priority(static_cast<v1::Priority>(9));
         v1::ListResponse resp;
         return s.List(&c, req, &resp);
       },
       StatusCode::INVALID_ARGUMENT, "priority: unknown value 9"},
      {"Watch unknown type",
       [](v1::TaskService::Stub& s, grpc::ClientContext& c) {
         v1::WatchRequest req;
         req.add_types(static_cast<v1::EventType>(999));
         auto reader = s.Watch(&c, req);
         v1::WatchResponse resp;
         while (reader->Read(&resp)) {
         }
         return reader->Finish();
       },
       StatusCode::INVALID_ARGUMENT, "types: unknown value 999"},
      {"random bytes as a Submit",
       [this](v1::TaskService::Stub&, grpc::ClientContext& c) {
         return RawCall(c, "/taskgrid.v1.TaskService/Submit", std::string("\xff\xff\xff\x07", 4));
       },
       StatusCode::INVALID_ARGUMENT, "not a valid taskgrid.v1.SubmitRequest"},
  };
  for (const GrpcCase& c : cases) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    const grpc::Status s = c.call(*stub_, ctx);
    EXPECT_EQ(s.error_code(), c.code) << c.name << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.message)) << c.name;
  }
  EXPECT_EQ(TaskCount(), 0) << "a refused request created a task";

  // A batch answers each request on its own: the good one is created.
  v1::SubmitBatchRequest batch;
  batch.add_requests()->mutable_spec()->mutable_shell()->set_command("true");
  batch.add_requests()->mutable_spec()->mutable_shell()->set_command("");
  v1::SubmitBatchResponse results;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->SubmitBatch(&ctx, batch, &results).ok());
  ASSERT_EQ(results.results_size(), 2);
  EXPECT_EQ(results.results(0).code(), 0);
  EXPECT_EQ(results.results(1).code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(results.results(1).message(), HasSubstr("spec.shell.command: is empty"));
  EXPECT_EQ(TaskCount(), 1) << "still serving";
}

TEST_F(BadInputTest, RestCallsGetTheRightStatusAndNameTheField) {
  const std::vector<RestCase> cases = {
      {"POST", "/api/tasks", "{not json", 400, R"("code":"invalid_argument")"},
      {"POST", "/api/tasks", R"({"shell":{"command":"true"},"colour":"red"})", 400, "colour"},
      {"POST", "/api/tasks", R"({"shell":{"command":42}})", 400, "command"},
      {"POST", "/api/tasks", R"({"shell":{"command":"  "}})", 400,
       R"("field":"spec.shell.command")"},
      {"POST", "/api/tasks", R"({"shell":{"command":"true"},"timeout":"soon"})", 400, "timeout"},
      {"POST", "/api/tasks", R"({"shell":{"command":"true"},"priority":"PRIORITY_URGENT"})", 400,
       "priority"},
      {"POST", "/api/tasks", R"([1,2,3])", 400, "invalid_argument"},
      {"POST", "/api/tasks", "", 400, "invalid_argument", {{"Content-Type", "application/json"}}},
      {"POST", "/api/tasks", "", 415, "application/json"},
      {"POST", "/api/tasks", R"({"shell":{"command":"true"},"agentId":"ghost"})", 404, "ghost"},
      {"POST", "/api/tasks", "x=1", 415, "application/json", {{"Content-Type", "text/plain"}}},
      {"POST", "/api/tasks", std::string(100 << 10, ' '), 413, ""},
      {"GET", "/api/tasks?pageToken=%%%", "", 400, "page"},
      {"GET", "/api/tasks?priority=9", "", 400, "priority"},
      {"GET", "/api/tasks?status=sleeping", "", 400, "status"},
      {"GET", "/api/tasks?pageSize=-3", "", 400, "page_size: must be 0 to 1000"},
      {"GET", "/api/tasks/nope", "", 404, "nope"},
      {"GET", "/api/tasks/nope/output?stream=stdin", "", 400, "stream"},
      {"GET", "/api/tasks/nope/output?offset=ten", "", 400, "offset"},
      {"GET", "/api/events?types=weather", "", 400, "types"},
      {"GET", "/api/events", "", 400, "Last-Event-ID", {{"Last-Event-ID", "yesterday"}}},
      {"POST", "/api/tasks/nope/cancel", "", 404, "nope"},
      {"DELETE", "/api/tasks/nope", "", 404, "nope"},
      {"PATCH", "/api/tasks/x/status", "{}", 405, ""},
      {"GET", "/nope", "", 404, ""},
      {"GET", "/api/tasks?" + std::string(9000, 'a'), "", 414, ""},
      {"POST", "/tasks/shell", R"({"agent_id":"bad-input-agent"})", 400, "cmd"},
      {"POST", "/tasks/shell", R"({"cmd":"true","timeout":"soon"})", 400, "timeout"},
      {"POST", "/api/tasks", R"({"docker":{"command":["true"]}})", 400,
       R"("field":"spec.docker.image")"},
      {"POST", "/api/tasks", R"({"docker":{"image":"b","memoryBytes":"1000"}})", 400,
       "spec.docker.memory_bytes: must be 0 (no limit) or at least 6291456"},
      {"POST", "/api/tasks", R"({"docker":{"image":"b","cpus":-1}})", 400, "spec.docker.cpus"},
      {"POST", "/api/tasks", R"({"docker":{"image":"b","mounts":[{"source":"rel","target":"/x"}]}})",
       400, "spec.docker.mounts: source and target must be absolute paths"},
      {"POST", "/api/tasks", R"({"docker":{"image":"b","name":"-bad name"}})", 400,
       "spec.docker.name"},
      {"POST", "/api/tasks", R"({"docker":{"operation":"DOCKER_OPERATION_STOP","image":"b"}})", 400,
       "spec.docker.container: is required for stop"},
      {"POST", "/api/tasks",
       R"({"docker":{"operation":"DOCKER_OPERATION_LOGS","container":"c","keep":true}})", 400,
       "apply to run, not to logs"},
      {"POST", "/api/tasks", R"({"shell":{"command":"true"},"docker":{"image":"b"}})", 400,
       "docker"},
      {"POST", "/tasks/docker", R"({"operation":"rm"})", 400, "operation"},
      {"POST", "/tasks/docker", R"({"image":"b","command":"echo hi"})", 400, "command"},
      {"POST", "/api/runs", "{}", 400, R"("field":"spec.task")"},
      {"POST", "/api/runs", R"({"task":{"shell":{"command":" "}}})", 400,
       "spec.task.shell.command: is empty"},
      {"POST", "/api/runs", R"({"task":{"shell":{"command":"true"},"agentId":"bad-input-agent"}})",
       400, "spec.task.agent_id: must be empty"},
      {"POST", "/api/runs", R"({"task":{"shell":{"command":"true"}},"maxConcurrency":"lots"})", 400,
       R"("field":"spec.max_concurrency")"},
      {"POST", "/api/runs", R"({"task":{"shell":{"command":"true"}},"maxErrors":"0"})", 400,
       "spec.max_errors"},
      {"POST", "/api/runs", R"({"task":{"shell":{"command":"true"},"selector":{"role":"x"}}})", 409,
       "spec.task.selector: no agent matches role=x"},
      {"POST", "/api/runs", R"({"task":{"shell":{"command":"true"}},"offlineTimeout":"-1s"})", 400,
       "spec.offline_timeout"},
      {"GET", "/api/runs/nope", "", 404, "run_id: no run nope"},
      {"POST", "/api/runs/nope/cancel", "", 404, "run_id: no run nope"},
      {"GET", "/api/runs?pageSize=lots", "", 400, "pageSize"},
      {"GET", "/api/runs?pageSize=5000", "", 400, "page_size: must be 0 to 1000"},
      {"GET", "/api/tasks?stauts=running", "", 400, R"("field":"stauts")"},
      {"GET", "/api/tasks?page_size=100000", "", 400, "page_size: unknown query parameter"},
      {"GET", "/api/tasks/nope?verbose=1", "", 400, "(this route takes none)"},
      {"GET", "/api/events?after=yesterday", "", 400, "after: not a cursor"},
      {"POST", "/api/tasks", R"({"shell":{"command":"true"},"agentId":"bad-input-agent","selector":{"a":"b"}})",
       400, "mutually exclusive"},
      {"POST", "/api/tasks", R"({"shell":{"command":"true"},"context":{"a":)" + std::string(40, '[') +
           std::string(40, ']') + "}}",
       400, "nested deeper than 32 levels"},
  };
  for (const RestCase& c : cases) {
    const auto r = Fetch(port_, c.method, c.target, c.body, c.headers);
    const std::string name = c.method + " " + c.target.substr(0, 80);
    EXPECT_EQ(r.status, c.status) << name << ": " << r.body;
    EXPECT_THAT(r.body, HasSubstr(c.message)) << name;
  }
  EXPECT_EQ(TaskCount(), 0) << "a refused request created a task";
  EXPECT_EQ(Fetch(port_, "GET", "/health").status, 200) << "still serving";
  EXPECT_EQ(Fetch(port_, "POST", "/api/tasks", R"({"shell":{"command":"true"}})").status, 201);
}

}  // namespace
}  // namespace taskgrid
