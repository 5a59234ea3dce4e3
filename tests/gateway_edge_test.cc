// The gateway's edge as a hostile web page, client or peer meets it, through
// the real gateway, coordinator and agent on loopback: DNS rebinding (a
// foreign Host), cross-site requests and WebSocket hijacking (a foreign
// Origin), bodies nested to freeze the parser, oversized and malformed
// WebSocket frames, malformed HTTP, keys invented to dodge limits, and a
// network-facing gateway in front of a coordinator that checks no keys.
#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "services/common/testing/test_certs.h"
#include "tests/gateway_cluster.h"
#include "tests/http_test_client.h"
#include "tests/websocket_test_client.h"

namespace taskgrid {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing_http::Fetch;
using testing_http::RawStatus;
using testing_http::SseClient;

// The status a WebSocket handshake gets (101 when accepted).
int HandshakeStatus(int port, const std::string& path, const std::string& host,
                    const std::string& origin = "") {
  return RawStatus(port, absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: ", host,
                                      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                      "Sec-WebSocket-Version: 13\r\n",
                                      origin.empty() ? "" : "Origin: " + origin + "\r\n", "\r\n"));
}

class GatewayEdgeTest : public GatewayCluster {
 protected:
  void SetUp() override { StartKeyed(""); }

  // A coordinator with `api_keys` (none when empty), its agent, a gateway.
  void StartKeyed(const std::string& api_keys) {
    StartCoordinator([&](CoordinatorOptions& o) { o.api_keys = api_keys; });
    StartAgent("edge-agent");
    StartGateway();
  }

  int TaskCount() {
    auto r = Fetch(port_, "GET", "/api/tasks");
    v1::ListResponse list;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(r.body, &list).ok()) << r.body;
    return list.tasks_size();
  }

  std::string Own() const { return absl::StrCat("127.0.0.1:", port_); }
};

constexpr char kSubmit[] = R"({"shell":{"command":"echo REBOUND"}})";

TEST_F(GatewayEdgeTest, ARebindingHostIsRefusedForRestSseAndWebSocket) {
  const std::map<std::string, std::string> rebound = {{"Host", "evil.example:8080"},
                                                      {"Origin", "http://evil.example:8080"}};
  auto r = Fetch(port_, "POST", "/api/tasks", kSubmit, rebound);
  EXPECT_EQ(r.status, 421);
  EXPECT_THAT(r.body, HasSubstr(R"("field":"Host")"));
  EXPECT_THAT(r.body, HasSubstr("evil.example"));
  EXPECT_EQ(Fetch(port_, "GET", "/api/tasks", "", {{"Host", "evil.example"}}).status, 421);
  EXPECT_EQ(Fetch(port_, "GET", "/", "", {{"Host", "evil.example"}}).status, 421);
  SseClient sse(port_, "/api/events", {{"Host", "evil.example:8080"}});
  EXPECT_EQ(sse.status(), 421);
  EXPECT_EQ(HandshakeStatus(port_, "/ws/monitoring", "evil.example:8080"), 421);
  EXPECT_EQ(HandshakeStatus(port_, "/ws/monitoring", Own()), 101);
  EXPECT_EQ(TaskCount(), 0);  // Nothing was created.

  // The names a local gateway has: addresses, localhost; no Host at all (an
  // HTTP/1.0 health check) comes from no web page.
  for (const std::string& host : {Own(), std::string("localhost:8080"), std::string("[::1]:8080"),
                                  std::string("10.1.2.3"), std::string("LOCALHOST.")}) {
    EXPECT_EQ(Fetch(port_, "GET", "/api/agents", "", {{"Host", host}}).status, 200) << host;
  }
  EXPECT_EQ(RawStatus(port_, "GET /health HTTP/1.0\r\n\r\n"), 200);
  // A name the operator gives is accepted, for every route and stream.
  StartGateway([](gateway::GatewayOptions& o) { o.allowed_hosts = {"tg.example.com"}; });
  EXPECT_EQ(Fetch(port_, "POST", "/api/tasks", kSubmit, {{"Host", "tg.example.com"}}).status, 201);
  EXPECT_EQ(SseClient(port_, "/api/events", {{"Host", "TG.example.com:443"}}).status(), 200);
  EXPECT_TRUE(testing_ws::Client(port_, "/ws/monitoring", "tg.example.com").ok());
  EXPECT_EQ(Fetch(port_, "GET", "/api/agents", "", {{"Host", "evil.example"}}).status, 421);
}

TEST_F(GatewayEdgeTest, AForeignOriginCannotOpenAStreamOrChangeAnything) {
  // WebSocket hijacking: browsers apply no CORS to WebSockets.
  EXPECT_EQ(HandshakeStatus(port_, "/ws/monitoring", Own(), "http://evil.example"), 403);
  EXPECT_EQ(HandshakeStatus(port_, "/api/v1/ws/tasks/x", Own(), "http://evil.example"), 403);
  EXPECT_FALSE(testing_ws::Client(port_, "/ws/monitoring", Own(), "http://evil.example").ok());
  SseClient sse(port_, "/api/events", {{"Host", Own()}, {"Origin", "http://evil.example"}});
  EXPECT_EQ(sse.status(), 403);
  // The dashboard's own origin opens both.
  testing_ws::Client own(port_, "/ws/monitoring", Own(), "http://" + Own());
  ASSERT_TRUE(own.ok());
  EXPECT_THAT(own.Next().value_or(""), HasSubstr("stats_snapshot"));
  EXPECT_EQ(SseClient(port_, "/api/events", {{"Host", Own()}, {"Origin", "http://" + Own()}})
                .status(),
            200);

  // A body-less cross-site POST needs no preflight: it must not cancel.
  auto created = Fetch(port_, "POST", "/api/tasks", R"({"shell":{"command":"sleep 30"}})");
  ASSERT_EQ(created.status, 201) << created.body;
  v1::Task t;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(created.body, &t).ok());
  auto r = Fetch(port_, "POST", "/api/tasks/" + t.id() + "/cancel", "",
                 {{"Host", Own()}, {"Origin", "http://evil.example"}});
  EXPECT_EQ(r.status, 403);
  EXPECT_THAT(r.body, HasSubstr(R"("field":"Origin")"));
  EXPECT_EQ(Fetch(port_, "POST", "/api/monitoring/stop", "",
                  {{"Host", Own()}, {"Origin", "null"}})
                .status,
            403);
  r = Fetch(port_, "GET", "/api/tasks/" + t.id());
  EXPECT_THAT(r.body, Not(HasSubstr("CANCELLED")));
  r = Fetch(port_, "POST", "/api/tasks/" + t.id() + "/cancel", "",
            {{"Host", Own()}, {"Origin", "http://" + Own()}});
  EXPECT_EQ(r.status, 200) << r.body;  // The dashboard cancels.

  // An origin the operator lists may call, and is told so (CORS).
  StartGateway([](gateway::GatewayOptions& o) { o.cors_origins = {"https://ops.example"}; });
  r = Fetch(port_, "GET", "/api/agents", "", {{"Origin", "https://ops.example"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["access-control-allow-origin"], "https://ops.example");
  EXPECT_TRUE(testing_ws::Client(port_, "/ws/monitoring", Own(), "https://ops.example").ok());
}

TEST_F(GatewayEdgeTest, DeeplyNestedJsonIsRefusedUnparsedWhileHealthAnswers) {
  StartGateway([](gateway::GatewayOptions& o) { o.http.max_body_bytes = 2 << 20; });
  const int depth = 500'000;  // About 1 MiB.
  const std::string body = absl::StrCat(R"({"shell":{"command":"true"},"context":{"a":)",
                                        std::string(depth, '['), std::string(depth, ']'), "}}");
  std::atomic<int> refused{0};
  std::atomic<bool> done{false};
  std::thread attacker([&] {
    for (int i = 0; i < 5; ++i) {
      auto r = Fetch(port_, "POST", "/api/tasks", body);
      if (r.status == 400 && absl::StrContains(r.body, "nested deeper than 32 levels")) ++refused;
    }
    done = true;
  });
  int healthy = 0;
  while (!done) {
    healthy += Fetch(port_, "GET", "/health").status == 200;
  }
  attacker.join();
  EXPECT_EQ(refused, 5);
  EXPECT_GE(healthy, 1);
  EXPECT_EQ(Fetch(port_, "GET", "/health").status, 200);
  EXPECT_EQ(TaskCount(), 0);
  // 32 levels in all are fine (and within protobuf's own recursion limit).
  const std::string deep = absl::StrCat(R"({"shell":{"command":"true"},"context":{"a":)",
                                        std::string(30, '['), std::string(30, ']'), "}}");
  EXPECT_EQ(Fetch(port_, "POST", "/api/tasks", deep).status, 201);
}

// A client frame: FIN and `opcode` in the first byte (plus `extra` bits),
// masked with a zero key unless `masked` is false.
std::string Frame(uint8_t first, const std::string& payload, bool masked = true) {
  std::string f;
  f.push_back(static_cast<char>(first));
  f.push_back(static_cast<char>((masked ? 0x80 : 0) | payload.size()));
  if (masked) f.append(4, '\0');
  return f + payload;
}

TEST_F(GatewayEdgeTest, WebSocketMessagesAreBoundedAndProtocolViolationsFailTheConnection) {
  {
    testing_ws::Client ws(port_, "/ws/monitoring");
    ASSERT_TRUE(ws.ok());
    ASSERT_TRUE(ws.Next().has_value());  // The snapshot.
    // The header of a 1 MiB message, and none of it: the refusal comes from
    // the header alone, before a byte of the message is buffered.
    const uint64_t size = 1 << 20;
    std::string header = "\x81\xff";  // FIN, text; masked, 64-bit length.
    for (int shift = 56; shift >= 0; shift -= 8) {
      header.push_back(static_cast<char>((size >> shift) & 0xff));
    }
    ws.SendRaw(header + std::string(4, '\0'));
    while (ws.Next(std::chrono::seconds(5))) {
    }
    EXPECT_EQ(ws.close_code(), 1009);
  }
  const std::vector<std::pair<std::string, std::string>> violations = {
      {"unmasked client frame", Frame(0x81, "hi", false)},
      {"reserved opcode", Frame(0x83, "")},
      {"RSV1 without an extension", Frame(0xC1, "hi")},
      {"fragmented ping", Frame(0x09, "")},
      {"stray continuation", Frame(0x80, "hi")},
      {"close code 999", Frame(0x88, std::string("\x03\xe7", 2))},
  };
  for (const auto& [what, frame] : violations) {
    testing_ws::Client ws(port_, "/ws/monitoring");
    ASSERT_TRUE(ws.ok());
    ASSERT_TRUE(ws.Next().has_value());
    ws.SendRaw(frame);
    while (ws.Next(std::chrono::seconds(5))) {
    }
    EXPECT_EQ(ws.close_code(), 1002) << what;
  }
}

TEST_F(GatewayEdgeTest, MalformedHttpIsAnsweredBeforeTheConnectionCloses) {
  EXPECT_EQ(RawStatus(port_, "GET /health HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n"), 400);
  EXPECT_EQ(RawStatus(port_,
                      "POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
                      "Content-Length: 7\r\n\r\nhello"),
            400);
  EXPECT_EQ(RawStatus(port_, "POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             "Content-Length: -1\r\n\r\n"),
            400);
  EXPECT_EQ(RawStatus(port_, "G E T / HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(Fetch(port_, "GET", "/health").status, 200);
}

TEST_F(GatewayEdgeTest, QueryParametersAreStrictOnTheApiOnly) {
  auto r = Fetch(port_, "GET", "/api/agents?verbose=1");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("verbose: unknown query parameter (this route takes none)"));
  EXPECT_EQ(Fetch(port_, "GET", "/api/v1/ws/tasks/x?event_types=log").status, 400);
  // A cache buster on a static file, a health check's or a nodelink client's
  // own parameters are nobody's typo.
  EXPECT_EQ(Fetch(port_, "GET", "/app.js?v=2").status, 200);
  EXPECT_EQ(Fetch(port_, "GET", "/health?probe=lb").status, 200);
  EXPECT_EQ(Fetch(port_, "GET", "/tasks?client=nodelink").status, 200);
}

TEST_F(GatewayEdgeTest, InventedKeysLiftNoLimitOfAKeylessGateway) {
  StartGateway([](gateway::GatewayOptions& o) {
    o.rate_limit = 1;
    o.rate_burst = 5;
    o.max_streams_per_caller = 2;
  });
  int answered = 0;
  for (int i = 0; i < 30; ++i) {
    answered += Fetch(port_, "GET", "/api/agents", "", {{"x-api-key", absl::StrCat("key-", i)}})
                    .status == 200;
  }
  EXPECT_LE(answered, 7);  // The burst, and what refilled meanwhile: not 30.

  StartGateway([](gateway::GatewayOptions& o) {
    o.rate_limit = 0;
    o.max_streams_per_caller = 2;
  });
  SseClient a(port_, "/api/events", {{"x-api-key", "a"}});
  EXPECT_EQ(a.status(), 200);
  SseClient b(port_, "/api/events", {{"x-api-key", "b"}});
  EXPECT_EQ(b.status(), 200);
  SseClient c(port_, "/api/events", {{"x-api-key", "c"}});
  EXPECT_EQ(c.status(), 429);

  // With keys at the coordinator each key is a caller of its own.
  StartKeyed("k1:read,k2:read");
  StartGateway([](gateway::GatewayOptions& o) {
    o.rate_limit = 1;
    o.rate_burst = 2;
  });
  ASSERT_TRUE(WaitFor([&] {  // Learned from the coordinator as the gateway starts.
    return Fetch(port_, "GET", "/api/agents", "", {{"x-api-key", "k1"}}).status == 429;
  }));
  EXPECT_EQ(Fetch(port_, "GET", "/api/agents", "", {{"x-api-key", "k2"}}).status, 200);
}

TEST_F(GatewayEdgeTest, OffLoopbackOnlyInFrontOfACoordinatorThatChecksKeys) {
  auto certs = TestCerts::Make();
  ASSERT_TRUE(certs.ok()) << certs.status();
  gateway::GatewayOptions go = GatewayOptions();
  go.http_address = "0.0.0.0:0";
  go.http.tls.cert_file = (*certs)->server().cert;
  go.http.tls.key_file = (*certs)->server().key;
  auto refused = gateway::Gateway::Start(go);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition,
                                HasSubstr("checks no API keys")));
  go.insecure = true;  // Said out loud, it starts.
  EXPECT_TRUE(gateway::Gateway::Start(go).ok());
  go.insecure = false;
  StartKeyed("k1:admin");
  go.coordinator_address = address_;
  auto served = gateway::Gateway::Start(go);
  EXPECT_TRUE(served.ok()) << served.status();
}

}  // namespace
}  // namespace taskgrid
