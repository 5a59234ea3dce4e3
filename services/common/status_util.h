// absl::Status helpers: early-return macros and the conversion to and from
// gRPC status at the RPC edge (both use google.rpc.Code numbering).
#ifndef TASKGRID_SERVICES_COMMON_STATUS_UTIL_H_
#define TASKGRID_SERVICES_COMMON_STATUS_UTIL_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace taskgrid {

inline grpc::Status ToGrpcStatus(const absl::Status& s) {
  return {static_cast<grpc::StatusCode>(s.code()), std::string(s.message())};
}

inline absl::Status FromGrpcStatus(const grpc::Status& s) {
  return {static_cast<absl::StatusCode>(s.error_code()), s.error_message()};
}

}  // namespace taskgrid

#define TASKGRID_STATUS_CONCAT_INNER(a, b) a##b
#define TASKGRID_STATUS_CONCAT(a, b) TASKGRID_STATUS_CONCAT_INNER(a, b)

#define TASKGRID_RETURN_IF_ERROR(expr)                        \
  do {                                                        \
    if (absl::Status _tg_status = (expr); !_tg_status.ok()) { \
      return _tg_status;                                      \
    }                                                         \
  } while (0)

#define TASKGRID_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return std::move(tmp).status();       \
  lhs = std::move(*tmp)

#define TASKGRID_ASSIGN_OR_RETURN(lhs, expr) \
  TASKGRID_ASSIGN_OR_RETURN_IMPL(TASKGRID_STATUS_CONCAT(_tg_statusor_, __LINE__), lhs, expr)

#endif  // TASKGRID_SERVICES_COMMON_STATUS_UTIL_H_
