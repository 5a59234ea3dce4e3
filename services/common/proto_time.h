// Conversions between absl time types and protobuf Timestamp/Duration.
#ifndef TASKGRID_SERVICES_COMMON_PROTO_TIME_H_
#define TASKGRID_SERVICES_COMMON_PROTO_TIME_H_

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include "absl/time/time.h"

namespace taskgrid {

google::protobuf::Timestamp ToProto(absl::Time t);
google::protobuf::Duration ToProto(absl::Duration d);
absl::Time FromProto(const google::protobuf::Timestamp& t);
absl::Duration FromProto(const google::protobuf::Duration& d);

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_PROTO_TIME_H_
