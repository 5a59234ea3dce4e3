// The gRPC channel every client of the coordinator uses (agents, gateway,
// CLI): keepalive finds dead peers, a short reconnect backoff finds a
// restarted coordinator within a second, and an address list finds whichever
// coordinator is active (standbys do not listen for clients).
#ifndef TASKGRID_SERVICES_COMMON_COORDINATOR_CHANNEL_H_
#define TASKGRID_SERVICES_COMMON_COORDINATOR_CHANNEL_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

namespace taskgrid {

// `addresses` is one gRPC target ("127.0.0.1:7000", "dns:///coord:7000") or
// a comma-separated list of IP:port, tried in order.
std::string CoordinatorTarget(const std::string& addresses);

std::shared_ptr<grpc::Channel> CoordinatorChannel(const std::string& addresses);

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_COORDINATOR_CHANNEL_H_
