// Alert rules and service health with a fake clock: fire once, suppress
// duplicates, change severity, hold within the hysteresis band, resolve by
// themselves and by hand; time-window rules; history by range.
#include "services/coordinator/monitor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "services/common/proto_time.h"
#include "services/common/testing/fake_clock.h"

namespace taskgrid {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// "created:cpu:warning", "resolved:cpu:critical:auto", "health:agent/a1:down".
std::vector<std::string> Describe(const std::vector<v1::TaskEvent>& events) {
  std::vector<std::string> out;
  for (const v1::TaskEvent& e : events) {
    auto severity = [](v1::AlertSeverity s) {
      return s == v1::ALERT_SEVERITY_CRITICAL ? "critical" : "warning";
    };
    switch (e.type()) {
      case v1::EVENT_TYPE_ALERT_CREATED:
        out.push_back(absl::StrCat("created:", e.alert().rule(), ":", severity(e.alert().severity())));
        break;
      case v1::EVENT_TYPE_ALERT_RESOLVED:
        out.push_back(absl::StrCat("resolved:", e.alert().rule(), ":",
                                   severity(e.alert().severity()), ":", e.alert().resolved_by()));
        break;
      case v1::EVENT_TYPE_SERVICE_HEALTH:
        out.push_back(absl::StrCat(
            "health:", e.health().name(), ":",
            absl::AsciiStrToLower(v1::HealthStatus_Name(e.health().status()).substr(14))));
        break;
      default:
        break;  // system:metrics on every sample.
    }
  }
  return out;
}

class MonitorTest : public ::testing::Test {
 protected:
  std::vector<std::string> Cpu(double percent) {
    v1::HostMetrics m;
    m.set_cpu_percent(percent);
    m.set_memory_percent(10);
    m.set_process_rss_bytes(10 << 20);
    return Describe(monitor_.OnHostMetrics("a1", m));
  }

  FakeClock clock_;
  MonitorOptions options_;
  Monitor monitor_{clock_, options_};
};

TEST_F(MonitorTest, FiresOnceSuppressesDuplicatesAndChangesSeverity) {
  EXPECT_THAT(Cpu(50), ElementsAre("health:agent/a1:healthy")) << "first seen";
  EXPECT_THAT(Cpu(80), ElementsAre("created:cpu:warning"));
  EXPECT_THAT(Cpu(82), IsEmpty()) << "a duplicate while active";
  EXPECT_THAT(Cpu(95), ElementsAre("resolved:cpu:warning:auto", "created:cpu:critical",
                                   "health:agent/a1:degraded"));
  EXPECT_THAT(Cpu(99), IsEmpty());
  const auto active = monitor_.Alerts(true);
  ASSERT_EQ(active.size(), 1u);
  EXPECT_EQ(active[0].source(), "agent/a1");
  EXPECT_EQ(active[0].threshold(), 90);
  EXPECT_THAT(active[0].message(), HasSubstr("CPU at 95.0% on agent a1 (critical above 90%)"));
  EXPECT_EQ(monitor_.Alerts(false).size(), 2u);
}

TEST_F(MonitorTest, HysteresisHoldsUntilTheValueIsClearlyBelow) {
  Cpu(95);
  EXPECT_THAT(Cpu(88), IsEmpty()) << "within 5 points of 90: held";
  EXPECT_THAT(Cpu(86), IsEmpty());
  EXPECT_THAT(Cpu(84), ElementsAre("resolved:cpu:critical:auto", "created:cpu:warning",
                                   "health:agent/a1:healthy"));
  EXPECT_THAT(Cpu(74), IsEmpty()) << "within 5 points of 75: held";
  EXPECT_THAT(Cpu(76), IsEmpty()) << "back above: still the same alert, no flap";
  EXPECT_THAT(Cpu(69), ElementsAre("resolved:cpu:warning:auto"));
  EXPECT_THAT(monitor_.Alerts(true), IsEmpty());
}

TEST_F(MonitorTest, ResolvedByHandStaysQuietUntilTheConditionClears) {
  Cpu(80);
  const std::string id = monitor_.Alerts(true).at(0).id();
  auto resolved = monitor_.Resolve(id, "manual");
  ASSERT_TRUE(resolved.ok());
  EXPECT_THAT(Describe(*resolved), ElementsAre("resolved:cpu:warning:manual"));
  EXPECT_EQ(monitor_.Resolve(id, "manual").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(monitor_.Resolve("alert-404", "manual").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Cpu(85), IsEmpty()) << "acknowledged: no new alert while it stays high";
  EXPECT_THAT(Cpu(40), IsEmpty());
  EXPECT_THAT(Cpu(80), ElementsAre("created:cpu:warning")) << "a new episode";
}

TEST_F(MonitorTest, ProcessMemoryAndMemoryRules) {
  v1::HostMetrics m;
  m.set_memory_percent(91);
  m.set_process_rss_bytes(600 << 20);
  EXPECT_THAT(Describe(monitor_.OnHostMetrics("a1", m)),
              ElementsAre("created:memory:critical", "created:process_memory:warning",
                          "health:agent/a1:degraded"));
}

TEST_F(MonitorTest, FailureRateOverTheWindow) {
  for (int i = 0; i < 9; ++i) {
    monitor_.OnTaskFinished("a1", i < 6 ? v1::TASK_STATUS_FAILED : v1::TASK_STATUS_SUCCEEDED,
                            absl::Seconds(1));
  }
  EXPECT_THAT(Describe(monitor_.Evaluate(0)), IsEmpty()) << "fewer than 10 tasks: no verdict";
  monitor_.OnTaskFinished("a1", v1::TASK_STATUS_LOST, absl::Seconds(1));
  EXPECT_THAT(Describe(monitor_.Evaluate(0)), ElementsAre("created:failure_rate:warning"));
  EXPECT_THAT(monitor_.Alerts(true).at(0).message(), HasSubstr("7 of the 10 tasks"));
  clock_.Advance(absl::Minutes(6));  // They leave the window.
  EXPECT_THAT(Describe(monitor_.Evaluate(0)), ElementsAre("resolved:failure_rate:warning:auto"));
  const auto services = monitor_.Services();
  const auto agent = std::find_if(services.begin(), services.end(),
                                  [](const auto& s) { return s.name() == "agent/a1"; });
  ASSERT_NE(agent, services.end());
  EXPECT_EQ(agent->requests(), 10);
  EXPECT_EQ(agent->errors(), 7);
  EXPECT_DOUBLE_EQ(agent->mean_response_seconds(), 1);
}

TEST_F(MonitorTest, QueueDepthWithItsOwnMargin) {
  EXPECT_THAT(Describe(monitor_.Evaluate(1500)), ElementsAre("created:queue_depth:warning"));
  EXPECT_THAT(Describe(monitor_.Evaluate(950)), IsEmpty()) << "within 10% of 1000: held";
  EXPECT_THAT(Describe(monitor_.Evaluate(850)), ElementsAre("resolved:queue_depth:warning:auto"));
}

TEST_F(MonitorTest, AgentOfflineAfterItsDelayHealthFollowsTheLink) {
  EXPECT_THAT(Describe(monitor_.OnAgentConnected("a1")), ElementsAre("health:agent/a1:healthy"));
  EXPECT_THAT(Describe(monitor_.OnAgentDisconnected("a1")), ElementsAre("health:agent/a1:down"));
  clock_.Advance(absl::Seconds(10));
  EXPECT_THAT(Describe(monitor_.Evaluate(0)), IsEmpty()) << "a short blip is no alert";
  clock_.Advance(absl::Seconds(25));
  EXPECT_THAT(Describe(monitor_.Evaluate(0)), ElementsAre("created:agent_offline:warning"));
  EXPECT_THAT(Describe(monitor_.Evaluate(0)), IsEmpty());
  EXPECT_THAT(Describe(monitor_.OnAgentConnected("a1")),
              ElementsAre("health:agent/a1:healthy", "resolved:agent_offline:warning:auto"));
  // Connected, but silent for three intervals: degraded.
  clock_.Advance(absl::Seconds(16));
  EXPECT_THAT(Describe(monitor_.Evaluate(0)), ElementsAre("health:agent/a1:degraded"));
  EXPECT_THAT(Cpu(10), ElementsAre("health:agent/a1:healthy"));
}

TEST_F(MonitorTest, GatewaysReportAndGoDownWhenSilent) {
  v1::ServiceHealth report;
  report.set_name("gateway/g1");
  report.set_kind("gateway");
  report.set_requests(42);
  EXPECT_THAT(Describe(monitor_.OnHealthReport(report)), ElementsAre("health:gateway/g1:healthy"));
  EXPECT_THAT(Describe(monitor_.OnHealthReport(report)), IsEmpty()) << "no change, no event";
  clock_.Advance(absl::Seconds(31));
  EXPECT_THAT(Describe(monitor_.Evaluate(0)), ElementsAre("health:gateway/g1:down"));
  const auto services = monitor_.Services();
  ASSERT_EQ(services.size(), 2u);  // The coordinator and the gateway.
  EXPECT_EQ(services[0].name(), "coordinator");
  EXPECT_EQ(services[0].status(), v1::HEALTH_STATUS_HEALTHY);
  EXPECT_EQ(services[1].requests(), 42);
}

TEST_F(MonitorTest, HistoryKeepsTheLastSamplesAndAnswersRanges) {
  MonitorOptions small;
  small.history_size = 3;
  Monitor m(clock_, small);
  const absl::Time t0 = clock_.Now();
  for (int i = 0; i < 5; ++i) {
    v1::HostMetrics s;
    s.set_cpu_percent(i);
    m.OnHostMetrics("a1", s);
    clock_.Advance(absl::Seconds(5));
  }
  auto all = m.History("a1", absl::InfinitePast(), absl::InfiniteFuture());
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].cpu_percent(), 2);
  EXPECT_EQ((*all)[2].source(), "a1");
  auto range = m.History("a1", t0 + absl::Seconds(15), t0 + absl::Seconds(20));
  ASSERT_EQ(range->size(), 1u);
  EXPECT_EQ((*range)[0].cpu_percent(), 3);
  EXPECT_EQ(m.History("nobody", absl::InfinitePast(), absl::InfiniteFuture()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(m.Latest().at(0).cpu_percent(), 4);
}

TEST_F(MonitorTest, StoppedKeepsSamplesButPublishesAndEvaluatesNothing) {
  monitor_.SetRunning(false);
  v1::HostMetrics m;
  m.set_cpu_percent(99);
  EXPECT_THAT(monitor_.OnHostMetrics("a1", m), IsEmpty());
  EXPECT_THAT(monitor_.Evaluate(5000), IsEmpty());
  EXPECT_EQ(monitor_.Latest().size(), 1u);
  EXPECT_FALSE(monitor_.Status().running());
  monitor_.SetRunning(true);
  EXPECT_THAT(Cpu(99), ElementsAre("created:cpu:critical", "health:agent/a1:degraded"));
}

TEST_F(MonitorTest, ForgottenAgentsTakeTheirAlertsAndResolvedOnesAreBounded) {
  Cpu(95);
  monitor_.OnAgentConnected("a1");
  EXPECT_THAT(Describe(monitor_.ForgetAgent("a1")), ElementsAre("resolved:cpu:critical:agent removed"));
  EXPECT_EQ(monitor_.History("a1", absl::InfinitePast(), absl::InfiniteFuture()).status().code(),
            absl::StatusCode::kNotFound);
  for (int i = 0; i < 1200; ++i) {  // Fire and clear, over and over.
    Cpu(80);
    Cpu(10);
  }
  EXPECT_EQ(monitor_.Alerts(false).size(), 1000u) << "the newest 1000 resolved alerts are kept";
  EXPECT_EQ(monitor_.Alerts(false).front().id(), "alert-1201");
}

TEST(MonitorOptionsTest, ValidateNamesTheFlag) {
  MonitorOptions o;
  o.cpu_warning = 95;
  EXPECT_THAT(std::string(o.Validate().message()), HasSubstr("alert_cpu_warning"));
}

}  // namespace
}  // namespace taskgrid
