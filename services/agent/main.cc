// taskgrid-agent: parses flags, starts an Agent with the POSIX process
// runner and the Docker runner, serves metrics, stops cleanly on SIGINT or
// SIGTERM.
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <optional>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "services/agent/agent.h"
#include "services/agent/posix_process_runner.h"
#include "services/agent/task_cgroups.h"
#include "services/common/byte_size.h"
#include "services/common/metrics_server.h"
#include "services/common/service_process.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:7000",
          "Coordinator address, or every coordinator as a comma-separated list of IP:port.");
ABSL_FLAG(std::string, agent_id, "", "Agent id (default: the hostname).");
ABSL_FLAG(std::string, token, "",
          "Agent token, for development: every local user sees a command line until the agent "
          "overwrites it. Prefer --token_file or TASKGRID_AGENT_TOKEN.");
ABSL_FLAG(std::string, token_file, "",
          "File holding the agent token (mode 0600 or stricter: others must not read it).");
ABSL_FLAG(std::string, run_as, "",
          "User tasks run as (the agent must be root): they can then neither read the agent's "
          "memory nor signal it.");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA the coordinator's certificate must chain to (TLS; plaintext when empty).");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM client certificate (its CN or a DNS name must be --agent_id) for a coordinator "
          "with --tls_client_ca.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name the coordinator's certificate must carry, if not the host of --coordinator.");
ABSL_FLAG(std::string, labels, "", "Labels as k=v,k=v.");
ABSL_FLAG(int32_t, slots, 0, "Concurrent tasks (0: number of CPUs).");
ABSL_FLAG(std::string, capacity_memory, "",
          "Memory tasks' resource requests may reserve here in all, as 8g or 512m (empty: the "
          "host's).");
ABSL_FLAG(double, capacity_cpus, 0,
          "CPUs tasks' resource requests may reserve here in all (0: the host's).");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9101",
          "Prometheus /metrics address (empty: off).");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(5),
          "SIGTERM-to-SIGKILL grace for tasks on stop.");
ABSL_FLAG(std::string, spool_dir, "",
          "Where output waits while the coordinator is away (default TMPDIR or /var/tmp).");
ABSL_FLAG(int64_t, spool_bytes, 256 << 20,
          "Output spooled per task stream while the coordinator is away; then the task "
          "blocks on its next write.");
ABSL_FLAG(std::string, docker_socket, "/var/run/docker.sock",
          "Docker Engine API socket for container tasks (empty: run no container tasks).");
ABSL_FLAG(std::string, docker_mounts, "",
          "Host paths containers may bind-mount, comma-separated (default: none).");
ABSL_FLAG(std::string, docker_networks, "none,bridge",
          "Network modes container tasks may use, comma-separated.");
ABSL_FLAG(std::string, allow_task_types, "",
          "Task types this agent runs, shell and/or docker (empty: both).");
ABSL_FLAG(std::string, allow_commands, "",
          "Programs shell tasks may start, as argv[0] must name them: a name found in the "
          "agent's PATH or a path (empty: any). A task given as a command line runs /bin/sh, so "
          "it needs /bin/sh here. Tasks may then not set PATH, LD_*, BASH_ENV or ENV.");
ABSL_FLAG(std::string, cgroup_root, "",
          "cgroup v2 path under which each task gets a cgroup of its own (empty: the agent's "
          "own cgroup; \"off\": process groups only).");
ABSL_FLAG(std::string, log_level, "info", "trace|debug|info|warn|error|off");

namespace {

// The tasks' cgroups, with what earlier runs of this agent left killed, or
// null (said once) when tasks run in process groups only; an error for a
// --cgroup_root that is not a cgroup path.
absl::StatusOr<std::unique_ptr<taskgrid::TaskCgroups>> OpenTaskCgroups(const std::string& root,
                                                       const std::string& agent_id,
                                                       taskgrid::AgentMetrics& metrics) {
  if (root == "off") {
    spdlog::warn("agent_cgroups_off (--cgroup_root=off: a task's process that leaves its "
                 "process group outlives cancel, timeout and the agent)");
    return nullptr;
  }
  absl::StatusOr<std::unique_ptr<taskgrid::TaskCgroups>> cgroups =
      taskgrid::TaskCgroups::Open(root, agent_id);
  if (cgroups.status().code() == absl::StatusCode::kInvalidArgument) return cgroups.status();
  if (!cgroups.ok()) {
    spdlog::warn("agent_cgroups_unavailable error=\"{}\" (tasks run in process groups only: "
                 "a process that leaves its group outlives cancel, timeout and the agent)",
                 std::string(cgroups.status().message()));
    return nullptr;
  }
  for (const taskgrid::TaskCgroups::Swept& swept : (*cgroups)->SweepEarlierRuns()) {
    spdlog::warn("agent_orphans_killed task_attempt={} processes={}", swept.name,
                 swept.processes);
    metrics.orphans_killed.Increment(swept.processes);
  }
  if (absl::Status s = (*cgroups)->StartGuardian(); !s.ok()) {
    spdlog::warn("agent_cgroup_guardian_failed error=\"{}\" (tasks outlive a killed agent "
                 "until it starts again)", std::string(s.message()));
  }
  spdlog::info("agent_cgroups path={}", (*cgroups)->run_path());
  return std::move(*cgroups);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "taskgrid agent: runs tasks assigned by the coordinator. Every flag may also be set as "
      "TASKGRID_<FLAG> in the environment (--slots: TASKGRID_SLOTS); the command line wins.");
  if (auto s = taskgrid::ApplyEnvironmentFlags(); !s.ok()) {
    std::fprintf(stderr, "taskgrid-agent: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  absl::ParseCommandLine(argc, argv);
  // Tasks run as the agent's user unless --run_as says otherwise: a process
  // that is not dumpable has its /proc/PID/environ, mem and the like owned
  // by root, and the token leaves the command line and the environment
  // before any task starts.
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  const bool token_on_command_line = !absl::GetFlag(FLAGS_token).empty() &&
                                     std::getenv("TASKGRID_TOKEN") == nullptr;
  std::string token = absl::GetFlag(FLAGS_token);
  if (const char* v = std::getenv("TASKGRID_AGENT_TOKEN"); token.empty() && v != nullptr) token = v;
  taskgrid::HideSecrets(argc, argv, {"token"}, {"TASKGRID_TOKEN", "TASKGRID_AGENT_TOKEN"});
  absl::SetFlag(&FLAGS_token, "");
  if (auto s = taskgrid::InitServiceProcess("agent", absl::GetFlag(FLAGS_log_level)); !s.ok()) {
    std::fprintf(stderr, "taskgrid-agent: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (token_on_command_line) {
    spdlog::warn("agent_token_on_command_line (other users may have read it before it was "
                 "hidden: use --token_file)");
  }
  if (const std::string path = absl::GetFlag(FLAGS_token_file); !path.empty()) {
    absl::StatusOr<std::string> from_file = taskgrid::ReadSecretFile(path, "token_file");
    if (!from_file.ok()) {
      std::fprintf(stderr, "taskgrid-agent: %s\n", std::string(from_file.status().message()).c_str());
      return 2;
    }
    token = *std::move(from_file);
  }
  std::optional<taskgrid::RunAs> run_as;
  if (const std::string user = absl::GetFlag(FLAGS_run_as); !user.empty()) {
    absl::StatusOr<taskgrid::RunAs> as = taskgrid::LookUpRunAs(user);
    if (!as.ok()) {
      std::fprintf(stderr, "taskgrid-agent: %s\n", std::string(as.status().message()).c_str());
      return 2;
    }
    run_as = *as;
  } else if (geteuid() == 0) {
    spdlog::warn("agent_tasks_run_as_root (they can read the agent's token and memory: start "
                 "the agent with --run_as=USER)");
  }

  auto env = [](const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return std::string(v ? v : fallback);
  };
  taskgrid::AgentOptions options;
  options.coordinator_address = absl::GetFlag(FLAGS_coordinator);
  options.agent_id = absl::GetFlag(FLAGS_agent_id);
  if (options.agent_id.empty()) options.agent_id = taskgrid::HostName();
  options.token = std::move(token);
  options.tls.ca_file = absl::GetFlag(FLAGS_tls_ca);
  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls.server_name = absl::GetFlag(FLAGS_tls_server_name);
  for (absl::string_view kv :
       absl::StrSplit(absl::GetFlag(FLAGS_labels), ',', absl::SkipWhitespace())) {
    std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (p.first.empty()) {
      std::fprintf(stderr, "taskgrid-agent: labels: \"%s\" is not k=v\n", std::string(kv).c_str());
      return 2;
    }
    options.labels[p.first] = p.second;
  }
  if (absl::GetFlag(FLAGS_slots) < 0) {
    std::fprintf(stderr, "taskgrid-agent: slots: must not be negative\n");
    return 2;
  }
  options.slots = static_cast<uint32_t>(absl::GetFlag(FLAGS_slots));
  if (const std::string memory = absl::GetFlag(FLAGS_capacity_memory); !memory.empty()) {
    absl::StatusOr<int64_t> bytes = taskgrid::ParseByteSize(memory);
    if (!bytes.ok()) {
      std::fprintf(stderr, "taskgrid-agent: capacity_memory: %s\n",
                   std::string(bytes.status().message()).c_str());
      return 2;
    }
    options.capacity.set_memory_bytes(*bytes);
  }
  options.capacity.set_cpus(absl::GetFlag(FLAGS_capacity_cpus));
  for (absl::string_view type :
       absl::StrSplit(absl::GetFlag(FLAGS_allow_task_types), ',', absl::SkipWhitespace())) {
    if (type != "shell" && type != "docker") {
      std::fprintf(stderr, "taskgrid-agent: allow_task_types: \"%s\" is not shell or docker\n",
                   std::string(type).c_str());
      return 2;
    }
    options.policy.add_task_types(std::string(type));
  }
  for (absl::string_view command :
       absl::StrSplit(absl::GetFlag(FLAGS_allow_commands), ',', absl::SkipWhitespace())) {
    options.policy.add_commands(std::string(command));
  }
  options.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  options.spool_dir = absl::GetFlag(FLAGS_spool_dir);
  if (options.spool_dir.empty()) options.spool_dir = env("TMPDIR", "/var/tmp");
  options.spool_bytes = absl::GetFlag(FLAGS_spool_bytes);
  if (auto s = options.Validate(); !s.ok()) {
    std::fprintf(stderr, "taskgrid-agent: %s\n", std::string(s.message()).c_str());
    return 2;
  }

  auto registry = std::make_shared<prometheus::Registry>();
  taskgrid::AgentMetrics metrics(*registry);
  std::unique_ptr<taskgrid::MetricsServer> metrics_server;
  if (!absl::GetFlag(FLAGS_metrics_address).empty()) {
    auto m =
        taskgrid::MetricsServer::Start(absl::GetFlag(FLAGS_metrics_address), "agent", registry);
    if (!m.ok()) {
      std::fprintf(stderr, "taskgrid-agent: %s\n", m.status().ToString().c_str());
      return 1;
    }
    metrics_server = std::move(*m);
  }
  std::unique_ptr<taskgrid::DockerRunner> docker;
  if (!absl::GetFlag(FLAGS_docker_socket).empty()) {
    taskgrid::DockerOptions d;
    d.socket = absl::GetFlag(FLAGS_docker_socket);
    d.agent_id = options.agent_id;
    d.mount_prefixes = absl::StrSplit(absl::GetFlag(FLAGS_docker_mounts), ',', absl::SkipEmpty());
    d.networks = absl::StrSplit(absl::GetFlag(FLAGS_docker_networks), ',', absl::SkipEmpty());
    if (auto s = d.Validate(); !s.ok()) {
      std::fprintf(stderr, "taskgrid-agent: %s\n", std::string(s.message()).c_str());
      return 2;
    }
    docker = std::make_unique<taskgrid::DockerRunner>(d, &metrics);
  }
  absl::StatusOr<std::unique_ptr<taskgrid::TaskCgroups>> cgroups =
      OpenTaskCgroups(absl::GetFlag(FLAGS_cgroup_root), options.agent_id, metrics);
  if (!cgroups.ok()) {
    std::fprintf(stderr, "taskgrid-agent: %s\n", std::string(cgroups.status().message()).c_str());
    return 2;
  }
  taskgrid::PosixProcessRunner runner(run_as, cgroups->get());
  taskgrid::Agent agent(options, runner, &metrics, docker.get());
  agent.Start();
  const int sig = taskgrid::WaitForStopSignal();
  spdlog::info("agent_stopping signal={}", sig);
  agent.Stop();
  return 0;
}
