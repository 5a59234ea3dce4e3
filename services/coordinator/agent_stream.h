// The coordinator's end of AgentService.Connect: one callback reactor per
// agent stream. It authenticates the Hello, hands every report to the
// registry, and writes the registry's messages through a single outbox.
#ifndef TASKGRID_SERVICES_COORDINATOR_AGENT_STREAM_H_
#define TASKGRID_SERVICES_COORDINATOR_AGENT_STREAM_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "services/common/agent_tokens.h"
#include "services/common/batch_outbox.h"
#include "services/coordinator/task_registry.h"
#include "taskgrid/v1/agent.grpc.pb.h"

namespace taskgrid {

class AgentServiceImpl;

// One agent's stream. Thread-safe: Send and Close may come from any thread.
// Owns itself (self_) until gRPC calls OnDone; the registry holds copies.
class AgentStream final : public grpc::ServerBidiReactor<v1::AgentBatch, v1::CoordinatorBatch>,
                          public AgentLink {
 public:
  // Creates the reactor for one call and starts reading. `peer` is where it
  // came from, for the audit log. With `cert_names` (mutual TLS), the
  // hello's agent id must be one of them: an empty list (no client
  // certificate) or another id ends the stream with kPermissionDenied.
  // `service` (which outlives it) says which agent tokens are in force.
  static AgentStream* Create(TaskRegistry& registry, const AgentServiceImpl& service,
                             std::string peer, std::optional<std::vector<std::string>> cert_names);

  void Send(v1::CoordinatorMessage message) override ABSL_LOCKS_EXCLUDED(mu_);
  void Close(const absl::Status& status) override ABSL_LOCKS_EXCLUDED(mu_);

 private:
  AgentStream(TaskRegistry& registry, const AgentServiceImpl& service, std::string peer,
              std::optional<std::vector<std::string>> cert_names)
      : registry_(registry),
        service_(service),
        peer_(std::move(peer)),
        cert_names_(std::move(cert_names)) {}
  // OK when the hello's agent id matches the peer certificate (or none is
  // required).
  absl::Status CheckIdentity(const std::string& agent_id) const;
  // Checks the hello's token and claims, and registers the agent.
  absl::Status Admit(const v1::Hello& hello);

  void OnReadDone(bool ok) override ABSL_LOCKS_EXCLUDED(mu_);
  void OnWriteDone(bool ok) override ABSL_LOCKS_EXCLUDED(mu_);
  void OnDone() override;
  // Handles one message; false when the stream must end.
  bool Handle(const v1::AgentMessage& message);
  void MaybeWriteOrFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  TaskRegistry& registry_;
  const AgentServiceImpl& service_;
  const std::string peer_;  // For the audit log.
  const std::optional<std::vector<std::string>> cert_names_;
  std::shared_ptr<AgentStream> self_;
  v1::AgentBatch in_;     // Only touched by the read chain.
  std::string agent_id_;  // Set by the first read; then constant.

  absl::Mutex mu_;
  BatchOutbox<v1::CoordinatorBatch> outbox_ ABSL_GUARDED_BY(mu_);
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
};

// AgentService: creates an AgentStream per call. With
// `require_client_cert`, each agent's id comes from its verified TLS client
// certificate.
class AgentServiceImpl final : public v1::AgentService::CallbackService {
 public:
  // `metrics` must outlive it.
  AgentServiceImpl(TaskRegistry& registry, CoordinatorMetrics& metrics, AgentTokens tokens,
                   bool require_client_cert = false)
      : registry_(registry),
        metrics_(metrics),
        tokens_(std::make_shared<const AgentTokens>(std::move(tokens))),
        require_client_cert_(require_client_cert) {}

  grpc::ServerBidiReactor<v1::AgentBatch, v1::CoordinatorBatch>* Connect(
      grpc::CallbackServerContext* context) override ABSL_LOCKS_EXCLUDED(mu_);

  // Hellos are checked against `tokens` from now on; a connected agent
  // whose token or claims they no longer admit is disconnected.
  void ReplaceTokens(AgentTokens tokens) ABSL_LOCKS_EXCLUDED(mu_);
  // The tokens in force.
  std::shared_ptr<const AgentTokens> tokens() const ABSL_LOCKS_EXCLUDED(mu_);
  bool tokens_required() const { return !tokens()->empty(); }
  CoordinatorMetrics& metrics() const { return metrics_; }

 private:
  TaskRegistry& registry_;
  CoordinatorMetrics& metrics_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const AgentTokens> tokens_ ABSL_GUARDED_BY(mu_);
  const bool require_client_cert_;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_AGENT_STREAM_H_
