// The gRPC channel every client of the coordinator uses (agents, gateway,
// CLI): keepalive finds dead peers, a short reconnect backoff finds a
// restarted coordinator within a second, and an address list finds whichever
// coordinator is active (standbys do not listen for clients).
#ifndef TASKGRID_SERVICES_COMMON_COORDINATOR_CHANNEL_H_
#define TASKGRID_SERVICES_COMMON_COORDINATOR_CHANNEL_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "services/common/tls.h"

namespace taskgrid {

// `addresses` is one gRPC target ("127.0.0.1:7000", "dns:///coord:7000") or
// a comma-separated list of IP:port, tried in order.
std::string CoordinatorTarget(const std::string& addresses);

// Plaintext unless `tls` is enabled (call tls.Validate() first). With TLS,
// the coordinator's certificate must name the target's host, or
// tls.server_name (for a list: the first address's host by default).
std::shared_ptr<grpc::Channel> CoordinatorChannel(const std::string& addresses,
                                                  const ChannelTlsOptions& tls = {});

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_COORDINATOR_CHANNEL_H_
