#include "services/common/proto_time.h"

namespace taskgrid {

google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp p;
  const int64_t ns = absl::ToUnixNanos(t);
  p.set_seconds(ns / 1000000000);
  p.set_nanos(static_cast<int32_t>(ns % 1000000000));
  if (p.nanos() < 0) {
    p.set_seconds(p.seconds() - 1);
    p.set_nanos(p.nanos() + 1000000000);
  }
  return p;
}

google::protobuf::Duration ToProto(absl::Duration d) {
  google::protobuf::Duration p;
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  p.set_seconds(ns / 1000000000);
  p.set_nanos(static_cast<int32_t>(ns % 1000000000));
  return p;
}

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

}  // namespace taskgrid
