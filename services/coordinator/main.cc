// taskgrid-coordinator: parses flags, starts a Coordinator, waits for SIGINT
// or SIGTERM.
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "services/common/service_process.h"
#include "services/coordinator/coordinator.h"

ABSL_FLAG(std::string, grpc_address, "127.0.0.1:7000", "Address for clients and agents.");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9100",
          "Prometheus /metrics address (empty: off).");
ABSL_FLAG(std::string, api_keys, "",
          "Client API keys in the clear, KEY:SCOPE,... (scopes read, submit, cancel, admin, "
          "joined by +); for development: prefer --keys_file.");
ABSL_FLAG(std::string, keys_file, "",
          "File of hashed API keys with scopes and policies, one per line, as written by "
          "`taskgrid keys create`; read again on SIGHUP.");
ABSL_FLAG(std::string, agent_tokens, "",
          "Agent tokens in the clear, SECRET[@AGENT_ID],... (an @ binds the token to that agent "
          "id); for development: prefer --agent_tokens_file.");
ABSL_FLAG(std::string, agent_tokens_file, "",
          "File of hashed agent tokens, one per line: NAME sha256:HEX [agents=ID,PREFIX*,...] "
          "[labels=KEY=VALUE,KEY=*,...], binding each to the agent ids it may claim and the "
          "labels it may announce; read again on SIGHUP (agents of a removed token are "
          "disconnected).");
ABSL_FLAG(bool, insecure, false,
          "Allow a non-loopback gRPC or metrics address without keys and tokens.");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain for the gRPC address (TLS).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA for agents' client certificates: agents must present one naming their "
          "--agent_id (mutual TLS); clients with API keys need none.");
ABSL_FLAG(absl::Duration, tls_reload_interval, absl::Seconds(60),
          "How often the TLS files are re-read (renewed certificates apply to new connections).");
ABSL_FLAG(std::string, data_dir, "taskgrid-data",
          "Directory for the coordinator's files (created if missing).");
ABSL_FLAG(std::string, store, "",
          "Where tasks are kept: sqlite:PATH[?sync=normal] or memory (nothing survives a "
          "restart), or postgres://... (shared by active and standby coordinators). "
          "Default: sqlite:DATA_DIR/coordinator.db.");
ABSL_FLAG(absl::Duration, lease_ttl, absl::Seconds(5),
          "PostgreSQL store: a standby takes over once the active coordinator has been silent "
          "this long.");
ABSL_FLAG(absl::Duration, default_task_timeout, absl::Minutes(10),
          "Run timeout when a task sets none.");
ABSL_FLAG(absl::Duration, kill_grace, absl::Seconds(10),
          "SIGTERM to SIGKILL grace when a task sets none.");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(5), "Agent heartbeat interval.");
ABSL_FLAG(absl::Duration, heartbeat_ttl, absl::Seconds(15),
          "Agent silence after which its tasks are lost.");
ABSL_FLAG(absl::Duration, retention, absl::Hours(24), "How long finished tasks are kept.");
ABSL_FLAG(int64_t, max_retained_tasks, 100000, "Finished tasks kept at most.");
ABSL_FLAG(int64_t, output_cap_bytes, 4 << 20,
          "Output kept per task stream (head and tail beyond).");
ABSL_FLAG(int64_t, event_log_bytes, 64 << 20,
          "Event log kept for Watch resume (bytes); a watcher further behind gets RESYNC.");
ABSL_FLAG(int64_t, metrics_history, 1000, "Host samples kept per agent.");
ABSL_FLAG(double, alert_cpu_warning, 75, "CPU percent of an agent's host that raises a warning.");
ABSL_FLAG(double, alert_cpu_critical, 90, "CPU percent that raises a critical alert.");
ABSL_FLAG(double, alert_memory_warning, 75, "Memory percent that raises a warning.");
ABSL_FLAG(double, alert_memory_critical, 90, "Memory percent that raises a critical alert.");
ABSL_FLAG(double, alert_disk_warning, 90, "Disk percent (agent work directory): warning.");
ABSL_FLAG(double, alert_disk_critical, 95, "Disk percent: critical.");
ABSL_FLAG(int64_t, alert_process_memory_bytes, 500 << 20,
          "An agent process larger than this raises a warning.");
ABSL_FLAG(double, alert_hysteresis, 5,
          "Percent points below its threshold a value must fall to resolve an alert.");
ABSL_FLAG(double, alert_failure_rate, 0.5,
          "Share of the tasks finished in the last 5 minutes (at least 10) that failed, timed "
          "out or were lost, above which a warning is raised.");
ABSL_FLAG(int64_t, alert_queue_depth, 1000, "Queued tasks above which a warning is raised.");
ABSL_FLAG(absl::Duration, alert_agent_offline, absl::Seconds(30),
          "An agent disconnected this long raises a warning.");
ABSL_FLAG(std::string, log_level, "info", "trace|debug|info|warn|error|off");
ABSL_FLAG(std::string, port_file, "",
          "Write the bound gRPC and metrics ports here, one per line "
          "(for scripts that start it on port 0).");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "taskgrid coordinator: owns the task registry and every timeout. Every flag may also be "
      "set as TASKGRID_<FLAG> in the environment (--api_keys: TASKGRID_API_KEYS); the command "
      "line wins.");
  if (auto s = taskgrid::ApplyEnvironmentFlags(); !s.ok()) {
    std::fprintf(stderr, "taskgrid-coordinator: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  absl::ParseCommandLine(argc, argv);
  const std::string api_keys = absl::GetFlag(FLAGS_api_keys);
  const std::string agent_tokens = absl::GetFlag(FLAGS_agent_tokens);
  // Out of /proc/PID/cmdline and environ, which every local user can read.
  taskgrid::HideSecrets(argc, argv, {"api_keys", "agent_tokens"},
                        {"TASKGRID_API_KEYS", "TASKGRID_AGENT_TOKENS"});
  if (auto s = taskgrid::InitServiceProcess("coordinator", absl::GetFlag(FLAGS_log_level));
      !s.ok()) {
    std::fprintf(stderr, "taskgrid-coordinator: %s\n", std::string(s.message()).c_str());
    return 2;
  }

  taskgrid::CoordinatorOptions options;
  options.grpc_address = absl::GetFlag(FLAGS_grpc_address);
  options.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  options.api_keys = api_keys;
  options.keys_file = absl::GetFlag(FLAGS_keys_file);
  options.agent_tokens = agent_tokens;
  options.agent_tokens_file = absl::GetFlag(FLAGS_agent_tokens_file);
  options.insecure = absl::GetFlag(FLAGS_insecure);
  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  options.tls.reload_interval = absl::GetFlag(FLAGS_tls_reload_interval);
  options.store = absl::GetFlag(FLAGS_store);
  if (options.store.empty()) {
    const std::string dir = absl::GetFlag(FLAGS_data_dir);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      std::fprintf(stderr, "taskgrid-coordinator: --data_dir %s: %s\n", dir.c_str(),
                   ec.message().c_str());
      return 1;
    }
    options.store = "sqlite:" + dir + "/coordinator.db";
  }
  options.registry.default_task_timeout = absl::GetFlag(FLAGS_default_task_timeout);
  options.registry.default_kill_grace = absl::GetFlag(FLAGS_kill_grace);
  options.registry.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  taskgrid::MonitorOptions& monitor = options.registry.monitor;
  monitor.history_size = static_cast<size_t>(std::max<int64_t>(0, absl::GetFlag(FLAGS_metrics_history)));
  monitor.cpu_warning = absl::GetFlag(FLAGS_alert_cpu_warning);
  monitor.cpu_critical = absl::GetFlag(FLAGS_alert_cpu_critical);
  monitor.memory_warning = absl::GetFlag(FLAGS_alert_memory_warning);
  monitor.memory_critical = absl::GetFlag(FLAGS_alert_memory_critical);
  monitor.disk_warning = absl::GetFlag(FLAGS_alert_disk_warning);
  monitor.disk_critical = absl::GetFlag(FLAGS_alert_disk_critical);
  monitor.process_memory_bytes = absl::GetFlag(FLAGS_alert_process_memory_bytes);
  monitor.hysteresis = absl::GetFlag(FLAGS_alert_hysteresis);
  monitor.failure_rate = absl::GetFlag(FLAGS_alert_failure_rate);
  monitor.queue_depth = absl::GetFlag(FLAGS_alert_queue_depth);
  monitor.agent_offline_after = absl::GetFlag(FLAGS_alert_agent_offline);
  options.registry.heartbeat_ttl = absl::GetFlag(FLAGS_heartbeat_ttl);
  options.registry.retention = absl::GetFlag(FLAGS_retention);
  options.registry.max_retained_tasks =
      static_cast<size_t>(absl::GetFlag(FLAGS_max_retained_tasks));
  options.registry.output_cap_bytes = absl::GetFlag(FLAGS_output_cap_bytes);
  options.events.max_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_event_log_bytes));

  options.lease_ttl = absl::GetFlag(FLAGS_lease_ttl);
  // Another coordinator holds the lease now: exit at once (anything written
  // is durable; a restart makes this process a standby).
  options.on_leadership_lost = [](const absl::Status& why) {
    spdlog::critical("coordinator_fenced reason=\"{}\"", std::string(why.message()));
    std::_Exit(3);
  };

  // Signals are taken on their own thread so a standby can stop while it waits.
  std::atomic<int> sig{0};
  std::atomic<taskgrid::Coordinator*> serving{nullptr};
  std::thread signals([&sig, &serving] {
    sig = taskgrid::WaitForStopSignal([&serving] {
      taskgrid::Coordinator* c = serving.load();
      if (c == nullptr) return;
      if (absl::Status s = c->ReloadKeys(); !s.ok()) {
        spdlog::error("keys_reload_failed status=\"{}\" (the previous keys stay)", s.ToString());
      } else {
        spdlog::info("keys_reloaded");
      }
    });
  });
  auto coordinator =
      taskgrid::Coordinator::Start(options, taskgrid::Clock::Real(), [&sig] { return sig != 0; });
  if (!coordinator.ok()) {
    signals.detach();
    if (absl::IsCancelled(coordinator.status())) return 0;
    std::fprintf(stderr, "taskgrid-coordinator: %s\n", coordinator.status().ToString().c_str());
    return 1;
  }
  taskgrid::WritePortFile(absl::GetFlag(FLAGS_port_file),
                          {(*coordinator)->grpc_port(), (*coordinator)->metrics_port()});
  serving = coordinator->get();
  signals.join();
  serving = nullptr;
  spdlog::info("coordinator_stopping signal={}", sig.load());
  (*coordinator)->Shutdown();
  return 0;
}
