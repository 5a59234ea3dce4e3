// taskgrid-gateway: parses flags, starts a Gateway, waits for SIGINT or
// SIGTERM, then closes every stream.
#include <spdlog/spdlog.h>

#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "services/common/service_process.h"
#include "services/gateway/gateway.h"

ABSL_FLAG(std::string, http_address, "127.0.0.1:8080", "HTTP address for browsers and REST.");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9103",
          "Prometheus /metrics address (empty: off).");
ABSL_FLAG(std::string, coordinator, "127.0.0.1:7000",
          "Coordinator address, or every coordinator as a comma-separated list of IP:port.");
ABSL_FLAG(bool, insecure, false,
          "Allow a non-loopback HTTP address without --tls_cert, or in front of a coordinator "
          "that checks no API keys.");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain: serve HTTPS (and wss).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(absl::Duration, tls_reload_interval, absl::Seconds(60),
          "How often --tls_cert/--tls_key are checked for changes (new connections get the new "
          "pair).");
ABSL_FLAG(std::string, coordinator_tls_ca, "",
          "PEM CA the coordinator's certificate must chain to (TLS; plaintext when empty).");
ABSL_FLAG(std::string, coordinator_tls_server_name, "",
          "Name the coordinator's certificate must carry, if not the host of --coordinator.");
ABSL_FLAG(int64_t, max_body_bytes, 1 << 20, "Largest request body (413 beyond).");
ABSL_FLAG(int64_t, max_stream_queue_bytes, 4 << 20,
          "Bytes queued per event-stream client before it is cut off as too slow.");
ABSL_FLAG(double, rate_limit, 100, "Requests per second per caller (API key or address); 0: off.");
ABSL_FLAG(double, rate_burst, 200, "Burst allowed above the rate.");
ABSL_FLAG(std::string, cors_origins, "",
          "Comma-separated origins of other sites whose pages may call the gateway (* for any); "
          "its own origin always may.");
ABSL_FLAG(std::string, allowed_hosts, "",
          "Comma-separated DNS names requests may carry as Host, besides IP addresses and "
          "localhost: the names the gateway is reached by (* for any; others get 421).");
ABSL_FLAG(int32_t, max_streams_per_caller, 64, "Open event streams and WebSockets per caller.");
ABSL_FLAG(std::string, port_file, "", "Write the bound HTTP and metrics ports here, one per line.");
ABSL_FLAG(std::string, gateway_id, "",
          "Name in service health, gateway/ID (default: host:port of --http_address).");
ABSL_FLAG(absl::Duration, health_interval, absl::Seconds(5),
          "How often the gateway reports its health to the coordinator (0: never).");
ABSL_FLAG(std::string, api_key, "",
          "Key for the gateway's own calls when the coordinator has keys; callers' keys are "
          "forwarded as they are.");
ABSL_FLAG(std::string, log_level, "info", "trace|debug|info|warn|error|off");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "taskgrid gateway: REST, Server-Sent Events and WebSockets for browsers. Every flag may "
      "also be set as TASKGRID_<FLAG> in the environment; the command line wins.");
  if (auto s = taskgrid::ApplyEnvironmentFlags(); !s.ok()) {
    std::fprintf(stderr, "taskgrid-gateway: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  absl::ParseCommandLine(argc, argv);
  const std::string api_key = absl::GetFlag(FLAGS_api_key);
  // Out of /proc/PID/cmdline and environ, which every local user can read.
  taskgrid::HideSecrets(argc, argv, {"api_key"}, {"TASKGRID_API_KEY"});
  if (auto s = taskgrid::InitServiceProcess("gateway", absl::GetFlag(FLAGS_log_level)); !s.ok()) {
    std::fprintf(stderr, "taskgrid-gateway: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  taskgrid::gateway::GatewayOptions options;
  options.http_address = absl::GetFlag(FLAGS_http_address);
  options.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  options.coordinator_address = absl::GetFlag(FLAGS_coordinator);
  options.insecure = absl::GetFlag(FLAGS_insecure);
  options.http.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.http.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  options.http.tls.reload_interval = absl::GetFlag(FLAGS_tls_reload_interval);
  options.coordinator_tls.ca_file = absl::GetFlag(FLAGS_coordinator_tls_ca);
  options.coordinator_tls.server_name = absl::GetFlag(FLAGS_coordinator_tls_server_name);
  options.rate_limit = absl::GetFlag(FLAGS_rate_limit);
  options.rate_burst = absl::GetFlag(FLAGS_rate_burst);
  options.cors_origins =
      absl::StrSplit(absl::GetFlag(FLAGS_cors_origins), ',', absl::SkipWhitespace());
  options.allowed_hosts =
      absl::StrSplit(absl::GetFlag(FLAGS_allowed_hosts), ',', absl::SkipWhitespace());
  options.max_streams_per_caller = absl::GetFlag(FLAGS_max_streams_per_caller);
  options.http.max_body_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_body_bytes));
  options.http.max_stream_queue_bytes =
      static_cast<size_t>(absl::GetFlag(FLAGS_max_stream_queue_bytes));
  options.gateway_id = absl::GetFlag(FLAGS_gateway_id);
  options.health_interval = absl::GetFlag(FLAGS_health_interval);
  options.api_key = api_key;
  auto gateway = taskgrid::gateway::Gateway::Start(options);
  if (!gateway.ok()) {
    std::fprintf(stderr, "taskgrid-gateway: %s\n", gateway.status().ToString().c_str());
    return 1;
  }
  taskgrid::WritePortFile(absl::GetFlag(FLAGS_port_file),
                          {(*gateway)->http_port(), (*gateway)->metrics_port()});
  const int sig = taskgrid::WaitForStopSignal();
  spdlog::info("gateway_stopping signal={}", sig);
  (*gateway)->Shutdown();
  return 0;
}
