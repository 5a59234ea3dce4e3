// The gateway against a real coordinator and agent on loopback, spoken to by
// an independent HTTP client that parses the SSE wire format itself.
#include "services/gateway/gateway.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "tests/gateway_cluster.h"
#include "tests/http_test_client.h"
#include "tests/websocket_test_client.h"

namespace taskgrid {
namespace {

using ::testing::HasSubstr;
using testing_http::Fetch;
using testing_http::SseClient;
using testing_http::SseEvent;

std::string Numbers(int n) {
  std::string s;
  for (int i = 1; i <= n; ++i) absl::StrAppend(&s, i, "\n");
  return s;
}

class GatewayTest : public GatewayCluster {
 protected:
  void SetUp() override { Start(""); }

  void Start(const std::string& api_keys, absl::Duration stall = absl::Seconds(30),
             std::function<void(gateway::GatewayOptions&)> tune = nullptr) {
    StartCoordinator([&](CoordinatorOptions& o) { o.api_keys = api_keys; });
    StartAgent("gw-agent", 4);
    StartGateway([&](gateway::GatewayOptions& o) {
      o.http.max_body_bytes = 64 << 10;
      o.http.stall_timeout = stall;
      if (tune) tune(o);
    });
  }

  // Creates a task through REST; returns its JSON.
  v1::Task Create(const std::string& command) {
    v1::Task t;
    auto r = Fetch(port_, "POST", "/api/tasks",
                   absl::StrCat(R"({"shell":{"command":)", "\"", absl::CEscape(command), "\"}}"));
    EXPECT_EQ(r.status, 201) << r.body;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(r.body, &t).ok()) << r.body;
    return t;
  }

  v1::Task GetTask(const std::string& id) {
    v1::Task t;
    auto r = Fetch(port_, "GET", "/api/tasks/" + id);
    (void)google::protobuf::util::JsonStringToMessage(r.body, &t);
    return t;
  }

  bool WaitForStatus(const std::string& id, v1::TaskStatus s) {
    return WaitFor([&] { return GetTask(id).status() == s; });
  }

};

TEST_F(GatewayTest, TaskLifecycleOverRest) {
  auto r = Fetch(port_, "GET", "/health");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Fetch(port_, "GET", "/ready").status, 200);

  r = Fetch(port_, "POST", "/api/tasks",
            R"({"type":"report","priority":2,"tags":["nightly"],"context":{"framework":"React"},)"
            R"("shell":{"command":"echo hello"}})");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_THAT(r.body, HasSubstr(R"("id":")"));
  EXPECT_THAT(r.body, HasSubstr(R"("priority":"PRIORITY_HIGH")"));
  v1::Task t;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.body, &t).ok());
  EXPECT_EQ(r.headers["location"], "/api/tasks/" + t.id());
  ASSERT_TRUE(WaitForStatus(t.id(), v1::TASK_STATUS_SUCCEEDED));

  r = Fetch(port_, "GET", "/api/tasks?priority=2,3&type=report&tags=nightly&status=succeeded");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.body, HasSubstr(t.id()));
  r = Fetch(port_, "GET", "/api/tasks?type=other");
  EXPECT_THAT(r.body, Not(HasSubstr(t.id())));
  r = Fetch(port_, "GET", "/api/tasks/stats");
  EXPECT_THAT(r.body, HasSubstr(R"("successRate":1)"));
  EXPECT_THAT(r.body, HasSubstr(R"("total":1)"));
  r = Fetch(port_, "GET", "/api/tasks/" + t.id() + "/output?stream=stdout");
  EXPECT_THAT(r.body, HasSubstr(absl::Base64Escape("hello\n")));

  // Cancelling a final task: 409 on /api, 400 on nodelink's route.
  EXPECT_EQ(Fetch(port_, "POST", "/api/tasks/" + t.id() + "/cancel").status, 409);
  EXPECT_EQ(Fetch(port_, "DELETE", "/tasks/" + t.id()).status, 400);
  EXPECT_EQ(Fetch(port_, "DELETE", "/api/tasks/" + t.id()).status, 200);
  EXPECT_EQ(Fetch(port_, "GET", "/api/tasks/" + t.id()).status, 404);

  v1::Task running = Create("sleep 30");
  ASSERT_TRUE(WaitForStatus(running.id(), v1::TASK_STATUS_RUNNING));
  EXPECT_EQ(Fetch(port_, "GET", "/api/tasks/active").body.find(running.id()) != std::string::npos,
            true);
  r = Fetch(port_, "POST", "/api/tasks/" + running.id() + "/cancel");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.body, HasSubstr("TASK_STATUS_CANCELLED"));
}

TEST_F(GatewayTest, NodelinkRoutesSpeakNodelink) {
  auto r = Fetch(port_, "POST", "/tasks/shell",
                 R"({"agent_id":"gw-agent","cmd":"echo 'Hello World'","timeout":300})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr(R"("agent_id":"gw-agent","status":"pending","created_at":)"));
  auto task_id_of = [](const std::string& body) {
    const size_t at = body.find(R"("task_id":")") + 11;
    return body.substr(at, body.find('"', at) - at);
  };
  const std::string id = task_id_of(r.body);

  // The stream ends after the final message.
  SseClient stream(port_, "/stream?ref=" + id);
  std::vector<SseEvent> events;
  SseEvent e;
  while (stream.Next(e)) events.push_back(e);
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[0].event, "response");
  EXPECT_THAT(events[0].data, HasSubstr(R"("output":"Hello World\n","type":"stdout")"));
  EXPECT_THAT(events.back().data, HasSubstr(R"("is_final":true,"exit_code":0)"));
  EXPECT_THAT(events.back().data, HasSubstr(R"("status":"SUCCESS")"));

  r = Fetch(port_, "GET", "/tasks/" + id);
  EXPECT_THAT(r.body, HasSubstr(R"("status":"completed")"));
  EXPECT_THAT(r.body, HasSubstr(R"("timeout":"5m")"));
  EXPECT_THAT(Fetch(port_, "GET", "/tasks").body, HasSubstr(id));
  r = Fetch(port_, "GET", "/agents/gw-agent/tasks");
  EXPECT_THAT(r.body, HasSubstr(R"({"agent_id":"gw-agent","tasks":[)"));
  EXPECT_THAT(r.body, HasSubstr(id));
  EXPECT_THAT(Fetch(port_, "GET", "/agents").body, HasSubstr("gw-agent"));
  EXPECT_EQ(Fetch(port_, "DELETE", "/tasks/no-such-task").status, 404);
  // A container task is accepted and waits for an agent that runs containers.
  r = Fetch(port_, "POST", "/tasks/docker",
            R"({"operation":"run","image":"busybox","command":["echo","hi"],"timeout":60})");
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string docker_id = task_id_of(r.body);
  r = Fetch(port_, "GET", "/api/tasks/" + docker_id);
  EXPECT_THAT(r.body, HasSubstr(R"("type":"docker")"));
  EXPECT_THAT(r.body, HasSubstr(R"("image":"busybox")"));
  EXPECT_THAT(r.body, HasSubstr("that runs containers (docker=true)"));
  r = Fetch(port_, "POST", "/tasks/docker", R"({"operation":"start"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr(R"("field":"spec.docker.container")"));
  r = Fetch(port_, "POST", "/tasks/docker", R"({"operation":"explode"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr(R"("field":"operation")"));
}

TEST_F(GatewayTest, KeysAreForwardedAndEnforcedByTheCoordinator) {
  Start("reader:read,writer:submit");
  const std::string body = R"({"shell":{"command":"true"}})";
  EXPECT_EQ(Fetch(port_, "POST", "/api/tasks", body).status, 401);
  EXPECT_EQ(Fetch(port_, "POST", "/api/tasks", body, {{"x-api-key", "reader"}}).status, 403);
  EXPECT_EQ(Fetch(port_, "POST", "/api/tasks", body, {{"Authorization", "Bearer writer"}}).status,
            201);
  EXPECT_EQ(Fetch(port_, "GET", "/api/tasks", "", {{"x-api-key", "reader"}}).status, 200);
}

// Joins the stdout carried by task:log events, checking offsets line up.
struct Collected {
  std::string out;
  std::string last_id;
  bool contiguous = true;
  bool final = false;
};

void Collect(SseClient& client, Collected& c, size_t stop_after_bytes) {
  SseEvent e;
  while (!c.final && c.out.size() < stop_after_bytes && client.Next(e)) {
    if (!e.id.empty()) c.last_id = e.id;
    v1::TaskEvent ev;
    if (e.event == "initial_state") continue;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(e.data, &ev).ok()) << e.data;
    if (e.event == "task:log" && ev.output().stream() == v1::OUTPUT_STREAM_STDOUT) {
      if (ev.output().offset() != static_cast<int64_t>(c.out.size())) c.contiguous = false;
      c.out += ev.output().data();
    }
    if (e.event == "resync") c.contiguous = false;
    if (e.event == "task:status" && ev.task().status() >= v1::TASK_STATUS_SUCCEEDED) c.final = true;
  }
}

TEST_F(GatewayTest, SseResumesWithLastEventIdByteExact) {
  v1::Task t = Create("seq 1 750000");  // About 5 MB.
  const std::string expected = Numbers(750000);
  Collected c;
  {
    SseClient first(port_, "/api/tasks/" + t.id() + "/events");
    ASSERT_EQ(first.status(), 200);
    SseEvent initial;
    ASSERT_TRUE(first.Next(initial));
    EXPECT_EQ(initial.event, "initial_state");
    Collect(first, c, expected.size() / 2);
  }  // Disconnects halfway.
  ASSERT_FALSE(c.final);
  ASSERT_FALSE(c.last_id.empty());
  SseClient second(port_, "/api/tasks/" + t.id() + "/events", {{"Last-Event-ID", c.last_id}});
  ASSERT_EQ(second.status(), 200);
  Collect(second, c, SIZE_MAX);
  EXPECT_TRUE(c.final);
  EXPECT_TRUE(c.contiguous);
  EXPECT_EQ(c.out.size(), expected.size());
  EXPECT_TRUE(c.out == expected);
}

TEST_F(GatewayTest, AllEventsStreamOpensWithStateAndResumesExactly) {
  v1::Task running = Create("sleep 30");
  ASSERT_TRUE(WaitForStatus(running.id(), v1::TASK_STATUS_RUNNING));
  std::string last_id;
  {
    SseClient first(port_, "/api/events?types=task:created,task:status");
    SseEvent e;
    ASSERT_TRUE(first.Next(e));
    EXPECT_EQ(e.event, "initial_state");
    EXPECT_THAT(e.data, HasSubstr(running.id()));  // The unfinished task is in the state.
    last_id = e.id;
    Create("true");
    ASSERT_TRUE(first.Next(e));
    EXPECT_EQ(e.event, "task:created");
    last_id = e.id;
  }
  // Events while disconnected, then a resume from the last id seen.
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(Create("true").id());
  SseClient second(port_, "/api/events?types=task:created", {{"Last-Event-ID", last_id}});
  std::vector<std::string> created;
  SseEvent e;
  uint64_t previous = 0;
  ASSERT_TRUE(absl::SimpleAtoi(last_id, &previous));
  while (created.size() < 3 && second.Next(e)) {
    ASSERT_EQ(e.event, "task:created");
    uint64_t cursor = 0;
    ASSERT_TRUE(absl::SimpleAtoi(e.id, &cursor));
    EXPECT_GT(cursor, previous);  // In order, nothing repeated.
    previous = cursor;
    v1::TaskEvent ev;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(e.data, &ev).ok());
    created.push_back(ev.task_id());
  }
  EXPECT_EQ(created, ids);
}

TEST_F(GatewayTest, ClientThatNeverReadsIsCutOffWhileOthersKeepUp) {
  Start("", /*stall=*/absl::Milliseconds(800));
  SseClient stuck(port_, "/api/events");  // Never reads after the headers.
  SseClient healthy(port_, "/api/events");
  ASSERT_EQ(healthy.status(), 200);
  // Plenty of events: output larger than the socket buffers can hide.
  v1::Task t = Create("head -c 20000000 /dev/zero | tr '\\0' x");
  Collected c;
  SseEvent e;
  bool saw_final = false;
  while (!saw_final && healthy.Next(e, absl::Seconds(20))) {
    if (e.event == "task:status") {
      v1::TaskEvent ev;
      ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(e.data, &ev).ok());
      saw_final = ev.task().id() == t.id() && ev.task().status() == v1::TASK_STATUS_SUCCEEDED;
    }
  }
  EXPECT_TRUE(saw_final);
  // The stuck client was cut off; reading now drains its socket to the end.
  EXPECT_TRUE(WaitFor([&] { return gateway_->http().slow_clients() >= 1; }, absl::Seconds(20)));
  SseEvent ignored;
  while (stuck.Next(ignored, absl::Seconds(5))) {
  }
  EXPECT_EQ(gateway_->http().open_streams(), 1u);  // Only the healthy one.
}

TEST_F(GatewayTest, EdgeLimitsRateCorsStreamsAndUrl) {
  Start("", absl::Seconds(30), [](gateway::GatewayOptions& o) {
    o.rate_limit = 1;
    o.rate_burst = 2;
    o.cors_origins = {"https://ops.example"};
    o.max_streams_per_caller = 1;
    o.max_url_bytes = 200;
  });
  auto r = Fetch(port_, "GET", "/api/agents", "", {{"Origin", "https://ops.example"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["access-control-allow-origin"], "https://ops.example");
  r = Fetch(port_, "GET", "/api/agents", "", {{"Origin", "https://evil.example"}});
  EXPECT_EQ(r.status, 403);  // Refused at the edge, before it costs anything.
  EXPECT_EQ(r.headers.count("access-control-allow-origin"), 0u);
  EXPECT_EQ(Fetch(port_, "GET", "/api/tasks?" + std::string(300, 'a')).status, 414);
  EXPECT_EQ(Fetch(port_, "GET", "/api/agents").status, 200);
  r = Fetch(port_, "GET", "/api/agents");
  EXPECT_EQ(r.status, 429);  // The burst of 2 is spent.
  EXPECT_EQ(r.headers["retry-after"], "1");
  EXPECT_EQ(Fetch(port_, "GET", "/health").status, 200);  // Never limited.
  // The coordinator checks no keys, so a key is anyone's to invent: it buys
  // no bucket of its own.
  EXPECT_EQ(Fetch(port_, "GET", "/api/agents", "", {{"x-api-key", "fresh-key"}}).status, 429);

  // One stream per caller, whatever key it claims.
  Start("", absl::Seconds(30), [](gateway::GatewayOptions& o) {
    o.rate_limit = 0;
    o.max_streams_per_caller = 1;
  });
  SseClient first(port_, "/api/events", {{"x-api-key", "k"}});
  EXPECT_EQ(first.status(), 200);
  SseClient second(port_, "/api/events", {{"x-api-key", "another"}});
  EXPECT_EQ(second.status(), 429);
}

TEST_F(GatewayTest, RedisSreWebSocketSendsInitialStateThenUpdates) {
  v1::Task t = Create("echo '::progress 50 halfway'; sleep 0.3; echo done");
  testing_ws::Client ws(port_, "/api/v1/ws/tasks/" + t.id());
  ASSERT_TRUE(ws.ok());
  auto first = ws.Next();
  ASSERT_TRUE(first.has_value());
  EXPECT_THAT(*first, HasSubstr(R"("update_type":"initial_state","thread_id":")" + t.id()));
  ws.Send(R"({"type":"ping"})");
  bool pong = false, progress = false, completed = false;
  std::string output;
  while (!completed) {
    auto m = ws.Next();
    ASSERT_TRUE(m.has_value()) << "stream ended early";
    pong |= *m == R"({"type":"pong"})";
    progress |= absl::StrContains(*m, R"("update_type":"progress","progress":50)");
    if (absl::StrContains(*m, R"("update_type":"output")")) output += *m;
    completed = absl::StrContains(*m, R"("status":"completed")");
  }
  EXPECT_TRUE(pong);
  EXPECT_TRUE(progress);
  EXPECT_THAT(output, HasSubstr(R"(done\n)"));
}

TEST_F(GatewayTest, WebSocketForUnknownTaskClosesWith4004) {
  testing_ws::Client ws(port_, "/api/v1/ws/tasks/no-such-task");
  ASSERT_TRUE(ws.ok());
  EXPECT_FALSE(ws.Next().has_value());
  EXPECT_EQ(ws.close_code(), 4004);
}

TEST_F(GatewayTest, MonitoringWebSocketFiltersByTaskAndType) {
  v1::Task other = Create("true");
  testing_ws::Client ws(port_, "/ws/monitoring?event_types=task:status&task_id=WATCHED");
  ASSERT_TRUE(ws.ok());
  auto first = ws.Next();
  ASSERT_TRUE(first.has_value());
  EXPECT_THAT(*first, HasSubstr(R"("type":"stats_snapshot")"));
  testing_ws::Client all(port_, "/ws/monitoring?event_types=task:status");
  ASSERT_TRUE(all.ok());
  ASSERT_TRUE(all.Next().has_value());  // Its snapshot.
  v1::Task t = Create("true");
  bool saw = false;
  while (!saw) {
    auto m = all.Next();
    ASSERT_TRUE(m.has_value());
    EXPECT_THAT(*m, HasSubstr(R"("type":"task:status")"));
    saw = absl::StrContains(*m, t.id()) && absl::StrContains(*m, "TASK_STATUS_SUCCEEDED");
  }
  // The client filtered on another task id heard nothing of either task.
  EXPECT_FALSE(ws.Next(std::chrono::milliseconds(300)).has_value());
  (void)other;
}

}  // namespace
}  // namespace taskgrid
