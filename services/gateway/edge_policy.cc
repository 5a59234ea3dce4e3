#include "services/gateway/edge_policy.h"

#include <arpa/inet.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "services/gateway/json.h"

namespace taskgrid::gateway {
namespace {

// The name part of a Host header ("name:port", "[v6]:port"), lower-case,
// without a trailing dot.
std::string HostName(absl::string_view host) {
  std::string name;
  if (absl::StartsWith(host, "[")) {
    const size_t end = host.find(']');
    name = std::string(host.substr(0, end == absl::string_view::npos ? host.size() : end + 1));
  } else {
    name = std::string(host.substr(0, host.rfind(':')));
  }
  absl::AsciiStrToLower(&name);
  if (absl::EndsWith(name, ".")) name.pop_back();
  return name;
}

// An address cannot be rebound: only DNS names can point somewhere new.
bool IsIpLiteral(const std::string& name) {
  unsigned char buf[16];
  if (absl::StartsWith(name, "[") && absl::EndsWith(name, "]")) {
    return inet_pton(AF_INET6, name.substr(1, name.size() - 2).c_str(), buf) == 1;
  }
  return inet_pton(AF_INET, name.c_str(), buf) == 1;
}

// "https://Host:port" -> "host:port".
std::string Authority(absl::string_view origin) {
  absl::string_view rest = origin;
  if (!absl::ConsumePrefix(&rest, "http://")) absl::ConsumePrefix(&rest, "https://");
  return absl::AsciiStrToLower(rest);
}

}  // namespace

absl::Status EdgeOptions::Validate() const {
  for (const std::string& h : allowed_hosts) {
    // Names only: ports do not matter, and addresses are always allowed.
    if (h.empty() || h.find_first_of("/: []") != std::string::npos || absl::EndsWith(h, ".")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "allowed_hosts: \"", h, "\" is not a host name (want tg.example.com, no port)"));
    }
  }
  for (const std::string& o : cors_origins) {
    absl::string_view rest = o;
    if (o != "*" && ((!absl::ConsumePrefix(&rest, "http://") &&
                      !absl::ConsumePrefix(&rest, "https://")) ||
                     rest.empty() || absl::StrContains(rest, "/"))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cors_origins: \"", o, "\" is not an origin (want https://tg.example.com or *)"));
    }
  }
  return absl::OkStatus();
}

bool EdgePolicy::HostAllowed(absl::string_view host) const {
  const std::string name = HostName(host);
  if (name.empty()) return false;
  if (name == "localhost" || IsIpLiteral(name)) return true;
  for (const std::string& allowed : options_.allowed_hosts) {
    if (allowed == "*" || absl::EqualsIgnoreCase(allowed, name)) return true;
  }
  return false;
}

bool EdgePolicy::Listed(absl::string_view origin) const {
  for (const std::string& allowed : options_.cors_origins) {
    if (allowed == "*" || absl::EqualsIgnoreCase(allowed, origin)) return true;
  }
  return false;
}

bool EdgePolicy::OriginAllowed(absl::string_view origin, absl::string_view host) const {
  // The scheme is left out: behind a TLS-terminating proxy the page is
  // https:// while we serve http://, and only we answer for this authority.
  return (!host.empty() && Authority(origin) == absl::AsciiStrToLower(host)) || Listed(origin);
}

std::optional<HttpResponse> EdgePolicy::Refusal(const HttpRequest& request) const {
  // Browsers always send Host; a request without one (an HTTP/1.0 health
  // check) comes from no web page, so it cannot be a rebinding.
  const std::string host = request.Header("host");
  if (!host.empty() && !HostAllowed(host)) {
    return ErrorResponse(
        421, "misdirected_request",
        absl::StrCat("Host: \"", HostName(host),
                     "\" is not a name of this gateway (add it with --allowed_hosts)"),
        "Host");
  }
  // Browsers send Origin on every cross-site request that could change
  // something and on every WebSocket handshake; tools send none.
  if (const std::string origin = request.Header("origin");
      !origin.empty() && !OriginAllowed(origin, host)) {
    return ErrorResponse(
        403, "permission_denied",
        absl::StrCat("Origin: pages of ", origin,
                     " may not call this gateway (add the origin with --cors_origins)"),
        "Origin");
  }
  return std::nullopt;
}

Headers EdgePolicy::CorsHeaders(const HttpRequest& request) const {
  const std::string origin = request.Header("origin");
  if (origin.empty() || !Listed(origin)) return {};
  return {{"Access-Control-Allow-Origin", origin}, {"Vary", "Origin"}};
}

}  // namespace taskgrid::gateway
