// The coordinator process as an object: the store (loaded and replayed into
// the registry first), registry, event log, gRPC server (TaskService,
// AgentService, health, reflection), the 100 ms timer and the metrics
// endpoint, wired from one Options struct. main() and the integration tests
// both start it this way.
#ifndef TASKGRID_SERVICES_COORDINATOR_COORDINATOR_H_
#define TASKGRID_SERVICES_COORDINATOR_COORDINATOR_H_

#include <grpcpp/grpcpp.h>
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "services/common/auth.h"
#include "services/coordinator/access_control.h"
#include "services/common/clock.h"
#include "services/common/metrics_server.h"
#include "services/common/tls.h"
#include "services/coordinator/agent_stream.h"
#include "services/coordinator/coordinator_metrics.h"
#include "services/coordinator/event_log.h"
#include "services/coordinator/monitoring_service.h"
#include "services/coordinator/store/task_store.h"
#include "services/coordinator/task_registry.h"
#include "services/coordinator/task_service.h"

namespace taskgrid {

struct CoordinatorOptions {
  // gRPC address for clients and agents; port 0 picks a free port.
  std::string grpc_address = "127.0.0.1:7000";
  // Prometheus /metrics address; empty disables it.
  std::string metrics_address = "127.0.0.1:9100";
  // Client keys in the clear, "KEY:SCOPE,..." (for development), and a
  // keys file of hashed keys with scopes and policies (`taskgrid keys
  // create`). With neither, clients are not authenticated.
  std::string api_keys;
  std::string keys_file;
  // Tokens agents must present, in the clear ("SECRET[@AGENT_ID],...", for
  // development), and a file of hashed tokens bound to agent ids and labels
  // (AgentTokens::LoadFile). With neither, any agent may connect.
  std::string agent_tokens;
  std::string agent_tokens_file;
  // Allow a non-loopback address without keys and tokens.
  bool insecure = false;
  // TLS for the gRPC address (plaintext when tls.cert_file is empty); with
  // tls.client_ca_file, agents must present a client certificate naming
  // their agent id.
  ServerTlsOptions tls;
  // Where tasks are journaled: memory, sqlite:PATH, postgres://... (see
  // OpenTaskStore).
  std::string store = "memory";
  // PostgreSQL: how long a silent leader keeps its lease before a standby
  // takes over.
  absl::Duration lease_ttl = absl::Seconds(5);
  // Called once if another coordinator took the store's lease over: this one
  // can no longer write and should exit (a restart makes it a standby).
  std::function<void(const absl::Status&)> on_leadership_lost;
  // How often timeouts and the heartbeat TTL are checked; zero disables the
  // timer (tests call registry().Tick() themselves).
  absl::Duration tick_interval = absl::Milliseconds(100);
  RegistryOptions registry;
  EventLog::Options events;

  // kInvalidArgument for a bad value; kFailedPrecondition for an unsafe
  // address without credentials.
  absl::Status Validate() const;
};

// Owns every part of a running coordinator. Thread-safe. Shutdown() (or the
// destructor) stops accepting calls, ends streams and joins the timer.
class Coordinator {
 public:
  // With a shared store, blocks as a standby until this coordinator holds
  // the lease (or `stopping` returns true: kCancelled); only then does it
  // load the store and listen for clients and agents.
  static absl::StatusOr<std::unique_ptr<Coordinator>> Start(
      const CoordinatorOptions& options, const Clock& clock = Clock::Real(),
      const std::function<bool()>& stopping = nullptr);
  ~Coordinator();

  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_ ? metrics_->port() : 0; }
  TaskRegistry& registry() { return *registry_; }
  // Reads the keys file and the agent tokens file again (SIGHUP); keeps the
  // old ones on an error. Agents whose token is gone are disconnected.
  absl::Status ReloadKeys();
  void Shutdown();

 private:
  explicit Coordinator(const CoordinatorOptions& options);

  const CoordinatorOptions options_;
  std::shared_ptr<prometheus::Registry> prometheus_;
  CoordinatorMetrics metrics_set_;
  EventLog events_;
  // Declared after events_: its commit thread publishes into it until joined.
  std::unique_ptr<TaskStore> store_;
  std::unique_ptr<TaskRegistry> registry_;
  std::unique_ptr<AccessControl> access_;
  std::unique_ptr<TaskServiceImpl> task_service_;
  std::unique_ptr<AgentServiceImpl> agent_service_;
  std::unique_ptr<MonitoringServiceImpl> monitoring_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsServer> metrics_;
  int grpc_port_ = 0;
  absl::Notification stop_;
  std::thread ticker_;
  bool shut_down_ = false;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_COORDINATOR_H_
