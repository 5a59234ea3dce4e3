// The fixture the gateway's tests share: a real coordinator, one real agent
// and a real gateway in this process, on loopback ports picked at random,
// each started with options a test may tune, restarted as a test needs.
#ifndef TASKGRID_TESTS_GATEWAY_CLUSTER_H_
#define TASKGRID_TESTS_GATEWAY_CLUSTER_H_

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "services/agent/agent.h"
#include "services/agent/posix_process_runner.h"
#include "services/common/testing/test_util.h"
#include "services/coordinator/coordinator.h"
#include "services/gateway/gateway.h"

namespace taskgrid {

class GatewayCluster : public ::testing::Test {
 protected:
  void TearDown() override { StopAll(); }

  // Stops whatever runs, then starts a coordinator (memory store, no
  // metrics) tuned by `tune`.
  void StartCoordinator(const std::function<void(CoordinatorOptions&)>& tune = nullptr) {
    StopAll();
    CoordinatorOptions co;
    co.grpc_address = "127.0.0.1:0";
    co.metrics_address = "";
    if (tune) tune(co);
    auto c = Coordinator::Start(co);
    ASSERT_TRUE(c.ok()) << c.status();
    coordinator_ = std::move(*c);
    address_ = absl::StrCat("127.0.0.1:", coordinator_->grpc_port());
  }

  // Starts (or replaces) the agent `id` and waits for its welcome.
  void StartAgent(const std::string& id, uint32_t slots = 2) {
    agent_.reset();
    AgentOptions ao;
    ao.coordinator_address = address_;
    ao.agent_id = id;
    ao.slots = slots;
    agent_ = std::make_unique<Agent>(ao, runner_, nullptr);
    agent_->Start();
    ASSERT_TRUE(WaitFor([&] { return agent_->connected(); }));
  }

  // Starts (or replaces) the gateway in front of the coordinator, on a
  // loopback port, without metrics or health reports unless `tune` says.
  void StartGateway(const std::function<void(gateway::GatewayOptions&)>& tune = nullptr) {
    gateway_.reset();
    gateway::GatewayOptions go = GatewayOptions();
    if (tune) tune(go);
    auto g = gateway::Gateway::Start(go);
    ASSERT_TRUE(g.ok()) << g.status();
    gateway_ = std::move(*g);
    port_ = gateway_->http_port();
  }

  gateway::GatewayOptions GatewayOptions() const {
    gateway::GatewayOptions go;
    go.http_address = "127.0.0.1:0";
    go.metrics_address = "";
    go.coordinator_address = address_;
    go.health_interval = absl::ZeroDuration();
    return go;
  }

  void StopAll() {
    gateway_.reset();
    agent_.reset();
    coordinator_.reset();
  }

  PosixProcessRunner runner_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<Agent> agent_;
  std::unique_ptr<gateway::Gateway> gateway_;
  std::string address_;  // The coordinator's.
  int port_ = 0;         // The gateway's.
};

}  // namespace taskgrid

#endif  // TASKGRID_TESTS_GATEWAY_CLUSTER_H_
