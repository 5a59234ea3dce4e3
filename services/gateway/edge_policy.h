// Which browsers' requests the gateway takes, decided once at its edge for
// every route and stream: the Host a request names (DNS rebinding makes a
// foreign domain resolve to us, so only addresses and configured names are
// ours) and the Origin a browser sends (a page of another site may neither
// change anything, nor open a WebSocket or event stream, nor read). CORS
// answers for the origins the operator allows.
#ifndef TASKGRID_SERVICES_GATEWAY_EDGE_POLICY_H_
#define TASKGRID_SERVICES_GATEWAY_EDGE_POLICY_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "services/gateway/http_server.h"

namespace taskgrid::gateway {

struct EdgeOptions {
  // Host names (besides IP addresses and localhost) requests may name, for a
  // gateway reached by a DNS name or behind a proxy; "*" allows any.
  std::vector<std::string> allowed_hosts;
  // Origins of other sites whose pages may call the gateway; "*" allows any.
  std::vector<std::string> cors_origins;

  // kInvalidArgument naming allowed_hosts or cors_origins for a malformed
  // entry.
  absl::Status Validate() const;
};

// Immutable after construction; thread-safe.
class EdgePolicy {
 public:
  explicit EdgePolicy(EdgeOptions options) : options_(std::move(options)) {}

  // The refusal of `request`, or nothing when it may proceed: 421 for a Host
  // that is not ours, 403 for an Origin that is neither ours nor allowed.
  std::optional<HttpResponse> Refusal(const HttpRequest& request) const;
  // CORS response headers for `request` (none for same-origin or disallowed
  // origins).
  Headers CorsHeaders(const HttpRequest& request) const;

  // Whether a Host header names this gateway.
  bool HostAllowed(absl::string_view host) const;
  // Whether `origin` may call: the gateway's own (the authority `host` the
  // request named, whatever the scheme) or a configured one.
  bool OriginAllowed(absl::string_view origin, absl::string_view host) const;

 private:
  bool Listed(absl::string_view origin) const;

  const EdgeOptions options_;
};

}  // namespace taskgrid::gateway

#endif  // TASKGRID_SERVICES_GATEWAY_EDGE_POLICY_H_
