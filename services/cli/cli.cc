// The taskgrid command line: the usage text, the command table, and the
// helpers every command shares.
#include "services/cli/cli.h"

#include <iostream>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/cli/commands.h"
#include "services/common/byte_size.h"
#include "services/common/coordinator_channel.h"
#include "services/common/enum_names.h"
#include "services/common/proto_time.h"
#include "taskgrid/v1/task_service.grpc.pb.h"

namespace taskgrid::cli {
namespace {

const char kUsage[] = R"(usage: taskgrid COMMAND [flags]

Commands:
  run [flags] -- CMD [ARGS...]   Run a command and stream its output; exits with its code.
      --agent ID | --selector k=v,...   where to run (default: any agent)
      --priority low|medium|high|critical   --timeout 30s   --queue-timeout 1m
      --env K=V (repeatable)   --cwd DIR   --type T   --tag T (repeatable)
      --idempotency-key K   --detach (print the task id and return)
      --secret-env NAME (repeatable): NAME's value from this environment, hidden from output,
                    logs and every API   --max-output 64m (the task fails beyond it)
      --memory 64m   --cpus 0.5   --pids 100: limits of the task's processes, also reserved
                    on its agent (the task waits for an agent with that much free)
      One word after -- runs through /bin/sh -c; several run as argv.
      --image IMG runs the command (as argv; none: the image's own) in a container instead:
      --network none|bridge   --user U   --name N
      --mount SRC:DST[:ro] (repeatable, within the agent's --docker_mounts)   --keep
      A fleet run, on every agent matching --selector (all agents without one), with
      --fleet or any of: --max-concurrency 10|25%   --max-errors 3|10%   --include-offline
      (wait for matching agents that are offline)   --offline-timeout 10m. Each line is
      printed after its agent's id; exits 0 when every target succeeded, 1 when one failed,
      timed out or was lost, 130 cancelled. --detach prints the run id.
  docker OP [ARG] --agent ID   A container operation on an agent, output streamed:
      start|stop|logs|inspect|rm CONTAINER   ps   pull IMAGE
      --follow --tail N (logs)   --stop-timeout 10s (stop)   ps and pull may omit --agent.
  get ID                      Show a task.
  list [--status s,s] [--agent ID] [--type T] [--tag T] [--priority p,p] [--limit N] [--page-token T]
  cancel ID [--reason TEXT]   Cancel a task (kills its process tree), or every target of a run.
  runs [ID] [--limit N] [--page-token T]   List fleet runs, or show one with a row per target.
  delete ID                   Delete a finished task and its output.
  logs ID [--follow]          Print a task's output (stdout to stdout, stderr to stderr).
  watch [--task ID] [--agent ID] [--run ID] [--types a,b] [--after CURSOR]   Stream events.
  agents                      List agents.
  stats                       Task statistics.
  audit [--actor A] [--action X] [--since 1h] [--limit N]   The audit log (admin key);
                              --output json prints JSON lines, for export.
  keys create --file F --name N --scope read|submit|cancel|admin[,...]   Adds a key to a
      coordinator keys file and prints it once (the file keeps its SHA-256). Limits:
      --selector k=v,...  --types shell,docker  --max-running N  --submit-rate N (per second)
      --max-runtime 1h  --max-output 64m  --max-streams N. SIGHUP the coordinator to load it.
  keys list --file F          The keys in a file (names, scopes, limits; no secrets).
  keys revoke NAME --file F   Removes a key from the file.

Global flags: --coordinator ADDR[,ADDR...] (or TASKGRID_COORDINATOR, default 127.0.0.1:7000;
                a list names every coordinator of an active/standby pair)
              --api-key KEY (or TASKGRID_API_KEY)   --output text|json
              --tls-ca FILE (or TASKGRID_TLS_CA): TLS, trusting this CA for the coordinator
              --tls-server-name NAME (or TASKGRID_TLS_SERVER_NAME): expected in its certificate
Exit codes of run (one task): the task's own; 128+N when killed by signal N; 124 timed out;
130 cancelled; 125 lost or a taskgrid error; 2 usage error.
)";

}  // namespace

int Usage(const std::string& what) {
  std::cerr << "taskgrid: " << what << "\n(taskgrid help for usage)\n";
  return kExitUsage;
}

std::string Lower(const std::string& enum_name, size_t prefix) {
  return absl::AsciiStrToLower(enum_name.substr(prefix));
}
std::string PriorityName(v1::Priority p) { return Lower(v1::Priority_Name(p), 9); }

absl::StatusOr<v1::TaskStatus> ParseStatus(absl::string_view s) {
  v1::TaskStatus v;
  if (v1::TaskStatus_Parse(absl::StrCat("TASK_STATUS_", absl::AsciiStrToUpper(s)), &v)) return v;
  return absl::InvalidArgumentError(absl::StrCat("--status: unknown status \"", s, "\""));
}

absl::StatusOr<v1::Priority> ParsePriority(absl::string_view s) {
  int n;
  if (absl::SimpleAtoi(s, &n) && v1::Priority_IsValid(n)) return static_cast<v1::Priority>(n);
  v1::Priority v;
  if (v1::Priority_Parse(absl::StrCat("PRIORITY_", absl::AsciiStrToUpper(s)), &v)) return v;
  return absl::InvalidArgumentError(
      absl::StrCat("--priority: \"", s, "\" is not low, medium, high, critical or 0-3"));
}

absl::StatusOr<google::protobuf::Duration> ParseDurationFlag(const std::string& flag,
                                                             const std::string& value) {
  absl::Duration d;
  if (!absl::ParseDuration(value, &d)) {
    int64_t secs;
    if (!absl::SimpleAtoi(value, &secs)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": \"", value, "\" is not a duration (e.g. 30s, 5m, 1h)"));
    }
    d = absl::Seconds(secs);
  }
  return ToProto(d);
}

std::string CommandLine(const v1::TaskSpec& spec) {
  if (spec.has_docker()) {
    const v1::DockerSpec& d = spec.docker();
    std::vector<std::string> words = {
        "docker", EnumWord(v1::DockerSpec::Operation_Name(d.operation()), "DOCKER_OPERATION_")};
    for (const std::string* w : {&d.image(), &d.container()}) {
      if (!w->empty()) words.push_back(*w);
    }
    words.insert(words.end(), d.command().begin(), d.command().end());
    return absl::StrJoin(words, " ");
  }
  const v1::ShellSpec& sh = spec.shell();
  return sh.argv_size() ? absl::StrJoin(sh.argv(), " ") : sh.command();
}

std::string FormatTime(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%E3S", FromProto(t), absl::LocalTimeZone());
}

const std::set<std::string> kGlobalFlags = {"coordinator", "api-key", "output", "tls-ca",
                                            "tls-server-name"};

FlagSpec Spec(std::set<std::string> with_value, std::set<std::string> boolean) {
  with_value.insert(kGlobalFlags.begin(), kGlobalFlags.end());
  return FlagSpec{std::move(with_value), std::move(boolean)};
}

absl::StatusOr<int64_t> ParseBytes(const std::string& flag, const std::string& value) {
  absl::StatusOr<int64_t> n = ParseByteSize(value);
  if (!n.ok())
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", n.status().message()));
  return n;
}

int RunCli(const std::vector<std::string>& raw_args) {
  // Global flags may also come before the command: move the command first.
  std::vector<std::string> args = raw_args;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0) {
      std::rotate(args.begin(), args.begin() + static_cast<long>(i),
                  args.begin() + static_cast<long>(i) + 1);
      break;
    }
    const std::string name = a.substr(2, a.find('=') - 2);
    if (a.find('=') == std::string::npos && kGlobalFlags.count(name)) ++i;  // Skip its value.
  }
  if (args.empty() || args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
    std::cout << kUsage;
    return args.empty() ? kExitUsage : 0;
  }
  struct Command {
    FlagSpec spec;
    int (*run)(Context&, const ParsedArgs&);
  };
  const std::map<std::string, Command> commands = {
      {"run",
       {Spec({"agent",
              "selector",
              "priority",
              "timeout",
              "queue-timeout",
              "env",
              "cwd",
              "type",
              "tag",
              "idempotency-key",
              "image",
              "memory",
              "cpus",
              "pids",
              "network",
              "user",
              "name",
              "mount",
              "secret-env",
              "max-output",
              "max-concurrency",
              "max-errors",
              "offline-timeout"},
             {"detach", "keep", "fleet", "include-offline"}),
        CmdRun}},
      {"docker",
       {Spec({"agent", "selector", "timeout", "tail", "stop-timeout"}, {"detach", "follow"}),
        CmdDocker}},
      {"get", {Spec({}), CmdGet}},
      {"list",
       {Spec({"status", "priority", "type", "tag", "agent", "limit", "page-token"}), CmdList}},
      {"cancel", {Spec({"reason"}), CmdCancel}},
      {"delete", {Spec({}), CmdDelete}},
      {"logs", {Spec({}, {"follow"}), CmdLogs}},
      {"watch", {Spec({"task", "agent", "run", "types", "after"}), CmdWatch}},
      {"runs", {Spec({"limit", "page-token"}), CmdRuns}},
      {"agents", {Spec({}), CmdAgents}},
      {"stats", {Spec({}), CmdStats}},
      {"audit", {Spec({"actor", "action", "since", "limit"}), CmdAudit}},
      {"keys",
       {Spec({"file", "name", "scope", "selector", "types", "max-running", "submit-rate",
              "max-runtime", "max-output", "max-streams"}),
        CmdKeys}},
  };
  auto it = commands.find(args[0]);
  if (it == commands.end()) return Usage("unknown command \"" + args[0] + "\"");
  auto parsed = ParseArgs(std::vector<std::string>(args.begin() + 1, args.end()), it->second.spec);
  if (!parsed.ok()) return Usage(std::string(parsed.status().message()));

  Context ctx;
  const char* env_addr = std::getenv("TASKGRID_COORDINATOR");
  const char* env_key = std::getenv("TASKGRID_API_KEY");
  const std::string address = parsed->Get("coordinator", env_addr ? env_addr : "127.0.0.1:7000");
  ctx.api_key = parsed->Get("api-key", env_key ? env_key : "");
  const std::string output = parsed->Get("output", "text");
  if (output != "text" && output != "json") return Usage("--output: must be text or json");
  ctx.json = output == "json";
  ChannelTlsOptions tls;
  const char* env_ca = std::getenv("TASKGRID_TLS_CA");
  const char* env_name = std::getenv("TASKGRID_TLS_SERVER_NAME");
  tls.ca_file = parsed->Get("tls-ca", env_ca ? env_ca : "");
  tls.server_name = parsed->Get("tls-server-name", env_name ? env_name : "");
  if (absl::Status s = tls.Validate("tls-"); !s.ok()) return Usage(std::string(s.message()));
  ctx.stub = v1::TaskService::NewStub(CoordinatorChannel(address, tls));
  return it->second.run(ctx, *parsed);
}

}  // namespace taskgrid::cli
