// The agent's end of AgentService.Connect: a client bidi reactor for one
// connection attempt. Writes go through one outbox; reads are handed to a
// handler; when the stream ends the handler is told once.
#ifndef TASKGRID_SERVICES_AGENT_COORDINATOR_LINK_H_
#define TASKGRID_SERVICES_AGENT_COORDINATOR_LINK_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "services/common/batch_outbox.h"
#include "taskgrid/v1/agent.grpc.pb.h"

namespace taskgrid {

// One stream. Thread-safe. The caller keeps the shared_ptr until `on_done`
// has run, and must not destroy it from inside `on_message`.
class CoordinatorLink final : public grpc::ClientBidiReactor<v1::AgentBatch, v1::CoordinatorBatch> {
 public:
  using MessageHandler = std::function<void(CoordinatorLink* link, const v1::CoordinatorMessage&)>;
  using DoneHandler = std::function<void(CoordinatorLink* link, const grpc::Status& status)>;

  static std::shared_ptr<CoordinatorLink> Create(MessageHandler on_message, DoneHandler on_done);
  // Starts the call with `hello` as its first message. Call once; handlers
  // may run before it returns.
  void Start(v1::AgentService::Stub& stub, const v1::AgentMessage& hello) ABSL_LOCKS_EXCLUDED(mu_);

  // Queues a message; returns false (and drops it) once the stream is ending.
  bool Send(v1::AgentMessage message) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the stream (the coordinator sees a cancelled call).
  void Cancel() { context_.TryCancel(); }

 private:
  CoordinatorLink(MessageHandler on_message, DoneHandler on_done)
      : on_message_(std::move(on_message)), on_done_(std::move(on_done)) {}

  void OnReadDone(bool ok) override ABSL_LOCKS_EXCLUDED(mu_);
  void OnWriteDone(bool ok) override ABSL_LOCKS_EXCLUDED(mu_);
  void OnDone(const grpc::Status& status) override;
  void StopWritingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const MessageHandler on_message_;
  const DoneHandler on_done_;
  grpc::ClientContext context_;
  v1::CoordinatorBatch in_;

  absl::Mutex mu_;
  BatchOutbox<v1::AgentBatch> outbox_ ABSL_GUARDED_BY(mu_);
  bool ending_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_released_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_AGENT_COORDINATOR_LINK_H_
