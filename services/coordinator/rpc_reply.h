// The coordinator's unary RPC replies, shared by its services: from
// absl::Status, at once or once the store made a change durable.
#ifndef TASKGRID_SERVICES_COORDINATOR_RPC_REPLY_H_
#define TASKGRID_SERVICES_COORDINATOR_RPC_REPLY_H_

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "services/common/status_util.h"
#include "services/coordinator/task_registry.h"

namespace taskgrid {

inline grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* ctx, const absl::Status& s) {
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(s));
  return reactor;
}

template <typename T>
grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* ctx, absl::StatusOr<T> result,
                                T* response) {
  if (result.ok()) *response = std::move(*result);
  return Reply(ctx, result.status());
}

// Acknowledges a change only once the store has made it durable.
inline grpc::ServerUnaryReactor* ReplyWhenDurable(grpc::CallbackServerContext* ctx,
                                                  TaskRegistry& registry, const absl::Status& s) {
  if (!s.ok()) return Reply(ctx, s);
  auto* reactor = ctx->DefaultReactor();
  registry.WhenDurable([reactor] { reactor->Finish(grpc::Status::OK); });
  return reactor;
}

template <typename T>
grpc::ServerUnaryReactor* ReplyWhenDurable(grpc::CallbackServerContext* ctx,
                                           TaskRegistry& registry, absl::StatusOr<T> result,
                                           T* response) {
  if (result.ok()) *response = std::move(*result);
  return ReplyWhenDurable(ctx, registry, result.status());
}

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_RPC_REPLY_H_
