// Monitoring end to end on loopback: real agents sample their host, the
// coordinator raises alerts (thresholds lowered so they fire here), and a
// browser-like client sees them over SSE and the REST API, resolves one by
// hand, and sees another resolve by itself when its agent comes back.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/gateway_cluster.h"
#include "tests/http_test_client.h"

namespace taskgrid {
namespace {

using ::testing::HasSubstr;
using testing_http::Fetch;
using testing_http::SseClient;
using testing_http::SseEvent;

class MonitoringTest : public GatewayCluster {
 protected:
  void SetUp() override {
    StartCoordinator([](CoordinatorOptions& co) {
      co.registry.heartbeat_interval = absl::Milliseconds(200);
      co.registry.heartbeat_ttl = absl::Seconds(3);
      // Any agent process is bigger than this: a warning on its first sample.
      co.registry.monitor.process_memory_bytes = 1000;
      co.registry.monitor.agent_offline_after = absl::Milliseconds(500);
      // The host's own load or a nearly full disk must not turn the agent degraded.
      co.registry.monitor.cpu_critical = 100;
      co.registry.monitor.memory_critical = 100;
      co.registry.monitor.disk_critical = 100;
    });
    StartGateway([](gateway::GatewayOptions& go) {
      go.gateway_id = "gw-1";
      go.health_interval = absl::Milliseconds(200);
    });
  }

  void StartAgent() { GatewayCluster::StartAgent("mon-agent"); }

  // The next event named `name` whose data holds `text`.
  static bool NextEvent(SseClient& sse, const std::string& name, const std::string& text,
                        SseEvent& out) {
    const absl::Time deadline = absl::Now() + absl::Seconds(15);
    while (absl::Now() < deadline) {
      if (!sse.Next(out, deadline - absl::Now())) return false;
      if (out.event == name && absl::StrContains(out.data, text)) return true;
    }
    return false;
  }

  // "alert-N" out of an alert event's JSON.
  static std::string AlertId(const std::string& json) {
    const size_t at = json.find(R"("id":")") + 6;
    return json.substr(at, json.find('"', at) - at);
  }
};

TEST_F(MonitoringTest, AlertsReachSseAndRestAndResolveByHandOrByThemselves) {
  SseClient sse(port_, "/api/events?types=alert:created,alert:resolved,system:metrics");
  StartAgent();
  SseEvent e;
  ASSERT_TRUE(NextEvent(sse, "system:metrics", R"("source":"mon-agent")", e));
  EXPECT_THAT(e.data, HasSubstr(R"("memoryTotalBytes")"));
  ASSERT_TRUE(NextEvent(sse, "alert:created", R"("rule":"process_memory")", e));
  const std::string id = AlertId(e.data);
  EXPECT_THAT(e.data, HasSubstr(R"("source":"agent/mon-agent")"));
  EXPECT_THAT(e.data, HasSubstr("ALERT_SEVERITY_WARNING"));

  auto r = Fetch(port_, "GET", "/api/monitoring/alerts?active=true");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.body, HasSubstr(id));
  r = Fetch(port_, "POST", "/api/monitoring/alerts/" + id + "/resolve");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr(R"("resolvedBy":"manual")"));
  ASSERT_TRUE(NextEvent(sse, "alert:resolved", id, e));
  EXPECT_EQ(Fetch(port_, "POST", "/api/monitoring/alerts/" + id + "/resolve").status, 409);
  EXPECT_EQ(Fetch(port_, "POST", "/api/monitoring/alerts/alert-999/resolve").status, 404);
  // Two more samples with the condition still true: no new alert.
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(NextEvent(sse, "system:metrics", "mon-agent", e));
  EXPECT_THAT(Fetch(port_, "GET", "/api/monitoring/alerts?active=true").body,
              ::testing::Not(HasSubstr("process_memory")))
      << "resolved by hand: quiet while the condition holds";

  // The agent goes away: offline past its delay, then back: resolved by itself.
  agent_.reset();
  ASSERT_TRUE(NextEvent(sse, "alert:created", R"("rule":"agent_offline")", e));
  const std::string offline = AlertId(e.data);
  StartAgent();
  ASSERT_TRUE(NextEvent(sse, "alert:resolved", offline, e));
  EXPECT_THAT(e.data, HasSubstr(R"("resolvedBy":"auto")"));
}

TEST_F(MonitoringTest, ServicesHistoryStatusAndStartStopOverRest) {
  StartAgent();
  ASSERT_TRUE(WaitFor([&] {
    const auto r = Fetch(port_, "GET", "/api/monitoring/services");
    return absl::StrContains(r.body, "gateway/gw-1") && absl::StrContains(r.body, "agent/mon-agent");
  }));
  auto r = Fetch(port_, "GET", "/api/monitoring/services/agent/mon-agent");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.body, HasSubstr("HEALTH_STATUS_HEALTHY"));
  r = Fetch(port_, "GET", "/api/monitoring/services/coordinator");
  EXPECT_THAT(r.body, HasSubstr(R"("requests":)"));
  EXPECT_EQ(Fetch(port_, "GET", "/api/monitoring/services/agent/nobody").status, 404);

  ASSERT_TRUE(WaitFor([&] {
    return absl::StrContains(Fetch(port_, "GET", "/api/monitoring/metrics/latest").body,
                             R"("source":"mon-agent")");
  }));
  r = Fetch(port_, "GET", "/api/monitoring/metrics/history?agent=mon-agent&since=2000-01-01T00:00:00Z");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.body, HasSubstr(R"("cpuPercent")"));
  r = Fetch(port_, "GET", "/api/monitoring/metrics/history?agent=mon-agent&until=2000-01-01T00:00:00Z");
  EXPECT_EQ(r.body, R"({"metrics":[]})");
  r = Fetch(port_, "GET", "/api/monitoring/metrics/history");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr(R"("field":"agent")"));
  r = Fetch(port_, "GET", "/api/monitoring/metrics/history?agent=mon-agent&since=yesterday");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Fetch(port_, "GET", "/api/monitoring/metrics/history?agent=nobody").status, 404);

  r = Fetch(port_, "POST", "/api/monitoring/stop");
  EXPECT_THAT(r.body, HasSubstr(R"("running":false)"));
  EXPECT_THAT(Fetch(port_, "GET", "/api/monitoring/status").body, HasSubstr(R"("running":false)"));
  r = Fetch(port_, "POST", "/api/monitoring/start");
  EXPECT_THAT(r.body, HasSubstr(R"("running":true)"));
  EXPECT_THAT(r.body, HasSubstr(R"("cpu.warning":75)"));
}

}  // namespace
}  // namespace taskgrid
