#include "services/cli/cli.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <fcntl.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "services/cli/args.h"
#include "services/cli/follow.h"
#include "services/common/auth.h"
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
      One word after -- runs through /bin/sh -c; several run as argv.
      --image IMG runs the command (as argv; none: the image's own) in a container instead:
      --memory 64m   --cpus 0.5   --pids 100   --network none|bridge   --user U   --name N
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

// What a task runs, in one line.
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

void PrintTask(const v1::Task& t) {
  std::cout << "id:          " << t.id() << "\n"
            << "status:      " << StatusName(t.status());
  if (!t.status_reason().empty()) std::cout << " (" << t.status_reason() << ")";
  std::cout << "\n";
  if (!t.waiting_reason().empty()) std::cout << "waiting:     " << t.waiting_reason() << "\n";
  std::cout << "command:     " << CommandLine(t.spec()) << "\n"
            << "type:        " << t.spec().type() << "\n"
            << "priority:    " << PriorityName(t.spec().priority()) << "\n"
            << "agent:       " << (t.agent_id().empty() ? "-" : t.agent_id()) << "\n"
            << "attempt:     " << t.attempt() << "\n"
            << "created:     " << FormatTime(t.created_at()) << "\n"
            << "started:     " << FormatTime(t.started_at()) << "\n"
            << "finished:    " << FormatTime(t.finished_at()) << "\n";
  if (t.has_exit()) {
    std::cout << "exit:        code " << t.exit().exit_code();
    if (t.exit().signal()) std::cout << ", signal " << t.exit().signal();
    std::cout << ", cpu " << absl::FormatDuration(FromProto(t.exit().cpu_time())) << ", max rss "
              << t.exit().max_rss_bytes() / 1024 << " KiB\n";
    if (!t.exit().error().empty()) std::cout << "error:       " << t.exit().error() << "\n";
    if (!t.exit().container_id().empty())
      std::cout << "container:   " << t.exit().container_id() << "\n";
  }
  if (t.progress() > 0)
    std::cout << "progress:    " << t.progress() << "% " << t.progress_message() << "\n";
  std::cout << "output:      stdout " << t.stdout().total_bytes() << " B, stderr "
            << t.stderr().total_bytes() << " B\n";
}


const std::set<std::string> kGlobalFlags = {"coordinator", "api-key", "output", "tls-ca",
                                            "tls-server-name"};

FlagSpec Spec(std::set<std::string> with_value, std::set<std::string> boolean = {}) {
  with_value.insert(kGlobalFlags.begin(), kGlobalFlags.end());
  return FlagSpec{std::move(with_value), std::move(boolean)};
}

absl::StatusOr<int64_t> ParseBytes(const std::string& flag, const std::string& value) {
  absl::StatusOr<int64_t> n = ParseByteSize(value);
  if (!n.ok()) return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", n.status().message()));
  return n;
}

// The container flags of `run` into `d`; a usage message on error.
std::string DockerRunFlags(const ParsedArgs& a, v1::DockerSpec* d) {
  d->set_image(a.Get("image"));
  for (const auto& p : a.positional) d->add_command(p);
  if (a.Has("memory")) {
    auto m = ParseBytes("memory", a.Get("memory"));
    if (!m.ok()) return std::string(m.status().message());
    d->set_memory_bytes(*m);
  }
  double cpus = 0;
  if (a.Has("cpus") && !absl::SimpleAtod(a.Get("cpus"), &cpus)) {
    return "--cpus: \"" + a.Get("cpus") + "\" is not a number (e.g. 0.5)";
  }
  d->set_cpus(cpus);
  int64_t pids = 0;
  if (a.Has("pids") && !absl::SimpleAtoi(a.Get("pids"), &pids)) {
    return "--pids: \"" + a.Get("pids") + "\" is not a number";
  }
  d->set_pids_limit(pids);
  d->set_network(a.Get("network"));
  d->set_user(a.Get("user"));
  d->set_name(a.Get("name"));
  d->set_working_dir(a.Get("cwd"));
  d->set_keep(a.Has("keep"));
  if (a.flags.count("mount")) {
    for (const auto& m : a.flags.at("mount")) {
      std::vector<std::string> parts = absl::StrSplit(m, ':');
      if (parts.size() < 2 || parts.size() > 3 || (parts.size() == 3 && parts[2] != "ro")) {
        return "--mount: \"" + m + "\" is not SRC:DST or SRC:DST:ro";
      }
      v1::DockerSpec::Mount* mount = d->add_mounts();
      mount->set_source(parts[0]);
      mount->set_target(parts[1]);
      mount->set_read_only(parts.size() == 3);
    }
  }
  return "";
}

// Where to run: --agent or --selector into `spec`; a usage message on error.
std::string PlacementFlags(const ParsedArgs& a, v1::TaskSpec* spec) {
  spec->set_agent_id(a.Get("agent"));
  for (absl::string_view kv : absl::StrSplit(a.Get("selector"), ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (p.first.empty() || kv.find('=') == absl::string_view::npos) {
      return absl::StrCat("--selector: \"", kv, "\" is not k=v");
    }
    (*spec->mutable_selector())[p.first] = p.second;
  }
  return "";
}

// Submits, then either prints the id (--detach) or streams the output and
// returns the task's exit code.
int SubmitAndFollow(Context& ctx, const ParsedArgs& a, const v1::SubmitRequest& req) {
  v1::SubmitResponse resp;
  grpc::Status s = ctx.stub->Submit(ctx.Call().get(), req, &resp);
  if (!s.ok()) return Fail(s);
  const std::string id = resp.task().id();
  if (a.Has("detach")) {
    std::cout << (ctx.json ? Json(resp.task()) : id) << "\n";
    return 0;
  }
  CancelOnSignal cancel(id, [&ctx, id] {
    v1::CancelRequest req;
    req.set_task_id(id);
    req.set_reason("cancelled from the CLI");
    v1::Task t;
    (void)ctx.stub->Cancel(ctx.Call().get(), req, &t);
  });
  auto final_task = Follow(ctx, id, resp.cursor(), !ctx.json && isatty(STDERR_FILENO));
  if (!final_task.ok()) return Fail(std::string(final_task.status().message()));
  if (ctx.json) std::cout << Json(*final_task) << "\n";
  if (!ctx.json && final_task->status() == v1::TASK_STATUS_FAILED &&
      !final_task->exit().error().empty()) {
    std::cerr << "taskgrid: " << final_task->exit().error() << "\n";
  }
  return ExitCodeOf(*final_task);
}

// Exit code of a followed run.
int ExitCodeOf(const v1::Run& run) {
  switch (run.status()) {
    case v1::TASK_STATUS_SUCCEEDED:
      return 0;
    case v1::TASK_STATUS_CANCELLED:
      return kExitCancelled;
    default:
      return kExitTargetFailed;
  }
}

// The run's end in words, on stderr, and each agent it skipped.
void PrintRunSummary(const v1::Run& run) {
  std::cerr << "taskgrid: run " << run.id() << " " << StatusName(run.status()) << ": "
            << run.status_reason() << "\n";
  for (const v1::RunTarget& t : run.targets()) {
    if (t.skipped()) std::cerr << "taskgrid: skipped " << t.reason() << "\n";
  }
}

// `run` over every agent matching the selector: submits the run, then
// prints its id (--detach) or follows it to its end.
int SubmitRunAndFollow(Context& ctx, const ParsedArgs& a, const v1::SubmitRequest& task) {
  v1::SubmitRunRequest req;
  v1::RunSpec* spec = req.mutable_spec();
  *spec->mutable_task() = task.spec();
  spec->set_max_concurrency(a.Get("max-concurrency"));
  spec->set_max_errors(a.Get("max-errors"));
  spec->set_include_offline(a.Has("include-offline"));
  if (a.Has("offline-timeout")) {
    auto d = ParseDurationFlag("offline-timeout", a.Get("offline-timeout"));
    if (!d.ok()) return Usage(std::string(d.status().message()));
    *spec->mutable_offline_timeout() = *d;
  }
  req.set_idempotency_key(task.idempotency_key());
  v1::SubmitRunResponse resp;
  grpc::Status s = ctx.stub->SubmitRun(ctx.Call().get(), req, &resp);
  if (!s.ok()) return Fail(s);
  const std::string id = resp.run().id();
  if (a.Has("detach")) {
    std::cout << (ctx.json ? Json(resp.run()) : id) << "\n";
    return 0;
  }
  if (resp.existing() && IsFinal(resp.run().status())) {  // Its idempotency key's run ended.
    if (ctx.json) {
      std::cout << R"({"type":"run","run":)" << Json(resp.run()) << "}\n";
    } else {
      PrintRunSummary(resp.run());
    }
    return ExitCodeOf(resp.run());
  }
  CancelOnSignal cancel("run " + id, [&ctx, id] {
    v1::CancelRunRequest req;
    req.set_run_id(id);
    req.set_reason("cancelled from the CLI");
    v1::Run r;
    (void)ctx.stub->CancelRun(ctx.Call().get(), req, &r);
  });
  auto run = FollowRun(ctx, resp.run(), resp.cursor(), !ctx.json && isatty(STDERR_FILENO));
  if (!run.ok()) return Fail(std::string(run.status().message()));
  if (ctx.json) {
    std::cout << R"({"type":"run","run":)" << Json(*run) << "}\n";
  } else {
    PrintRunSummary(*run);
  }
  return ExitCodeOf(*run);
}

int CmdRun(Context& ctx, const ParsedArgs& a) {
  const bool container = a.Has("image");
  if (a.positional.empty() && !container) return Usage("run: give the command after --");
  v1::SubmitRequest req;
  v1::TaskSpec* spec = req.mutable_spec();
  if (container) {
    if (std::string bad = DockerRunFlags(a, spec->mutable_docker()); !bad.empty()) {
      return Usage(bad);
    }
  } else {
    for (const char* flag : {"memory", "cpus", "pids", "network", "user", "name", "mount", "keep"}) {
      if (a.Has(flag)) return Usage(absl::StrCat("--", flag, ": needs --image (a container)"));
    }
    if (a.positional.size() == 1) {
      spec->mutable_shell()->set_command(a.positional[0]);
    } else {
      for (const auto& p : a.positional) spec->mutable_shell()->add_argv(p);
    }
  }
  if (std::string bad = PlacementFlags(a, spec); !bad.empty()) return Usage(bad);
  if (a.Has("priority")) {
    auto p = ParsePriority(a.Get("priority"));
    if (!p.ok()) return Usage(std::string(p.status().message()));
    spec->set_priority(*p);
  }
  for (const char* flag : {"timeout", "queue-timeout"}) {
    if (!a.Has(flag)) continue;
    auto d = ParseDurationFlag(flag, a.Get(flag));
    if (!d.ok()) return Usage(std::string(d.status().message()));
    *(std::string(flag) == "timeout" ? spec->mutable_timeout() : spec->mutable_queue_timeout()) =
        *d;
  }
  if (a.flags.count("env")) {
    auto* env =
        container ? spec->mutable_docker()->mutable_env() : spec->mutable_shell()->mutable_env();
    for (const auto& kv : a.flags.at("env")) {
      const size_t eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) return Usage("--env: \"" + kv + "\" is not K=V");
      (*env)[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  if (a.flags.count("secret-env")) {
    for (const auto& name : a.flags.at("secret-env")) {
      const char* value = std::getenv(name.c_str());
      if (value == nullptr) {
        return Usage("--secret-env: " + name + " is not set in this environment");
      }
      (*spec->mutable_secret_env())[name] = value;
    }
  }
  if (a.Has("max-output")) {
    auto bytes = ParseBytes("max-output", a.Get("max-output"));
    if (!bytes.ok()) return Usage(std::string(bytes.status().message()));
    spec->set_max_output_bytes(*bytes);
  }
  if (a.flags.count("tag")) {
    for (const auto& t : a.flags.at("tag")) spec->add_tags(t);
  }
  if (!container) spec->mutable_shell()->set_cwd(a.Get("cwd"));
  spec->set_type(a.Get("type"));
  req.set_idempotency_key(a.Get("idempotency-key"));
  if (!container && !a.Has("detach") && !isatty(STDIN_FILENO)) {
    // Forward piped stdin, like ssh does.
    std::string in((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    spec->mutable_shell()->set_stdin(in);
  }
  const bool fleet = a.Has("fleet") || a.Has("max-concurrency") || a.Has("max-errors") ||
                     a.Has("include-offline") || a.Has("offline-timeout");
  if (fleet && a.Has("agent")) return Usage("--agent: a fleet run picks its agents by --selector");
  return fleet ? SubmitRunAndFollow(ctx, a, req) : SubmitAndFollow(ctx, a, req);
}

int CmdDocker(Context& ctx, const ParsedArgs& a) {
  using Spec = v1::DockerSpec;
  static const std::map<std::string, Spec::Operation> kOps = {
      {"start", Spec::DOCKER_OPERATION_START}, {"stop", Spec::DOCKER_OPERATION_STOP},
      {"logs", Spec::DOCKER_OPERATION_LOGS},   {"inspect", Spec::DOCKER_OPERATION_INSPECT},
      {"rm", Spec::DOCKER_OPERATION_REMOVE},   {"ps", Spec::DOCKER_OPERATION_LIST},
      {"pull", Spec::DOCKER_OPERATION_PULL}};
  if (a.positional.empty() || !kOps.count(a.positional[0])) {
    return Usage("docker: give start, stop, logs, inspect, rm, ps or pull");
  }
  const std::string& op = a.positional[0];
  const bool takes_arg = op != "ps";
  if (a.positional.size() != (takes_arg ? 2u : 1u)) {
    return Usage(absl::StrCat("docker ", op, ": ",
                              !takes_arg        ? "takes no argument"
                              : op == "pull"    ? "give one image"
                                                : "give one container"));
  }
  if (op != "ps" && op != "pull" && !a.Has("agent")) {
    return Usage(
        absl::StrCat("docker ", op, ": --agent is required (the agent the container is on)"));
  }
  v1::SubmitRequest req;
  v1::TaskSpec* spec = req.mutable_spec();
  Spec* d = spec->mutable_docker();
  d->set_operation(kOps.at(op));
  if (op == "pull") {
    d->set_image(a.positional[1]);
  } else if (takes_arg) {
    d->set_container(a.positional[1]);
  }
  d->set_follow(a.Has("follow"));
  uint32_t tail = 0;
  if (a.Has("tail") && !absl::SimpleAtoi(a.Get("tail"), &tail)) {
    return Usage("--tail: \"" + a.Get("tail") + "\" is not a number of lines");
  }
  d->set_tail(tail);
  if (a.Has("stop-timeout")) {
    auto t = ParseDurationFlag("stop-timeout", a.Get("stop-timeout"));
    if (!t.ok()) return Usage(std::string(t.status().message()));
    *d->mutable_stop_timeout() = *t;
  }
  if (std::string bad = PlacementFlags(a, spec); !bad.empty()) return Usage(bad);
  if (a.Has("timeout")) {
    auto t = ParseDurationFlag("timeout", a.Get("timeout"));
    if (!t.ok()) return Usage(std::string(t.status().message()));
    *spec->mutable_timeout() = *t;
  }
  return SubmitAndFollow(ctx, a, req);
}

int CmdGet(Context& ctx, const ParsedArgs& a) {
  if (a.positional.size() != 1) return Usage("get: give one task id");
  v1::GetRequest req;
  req.set_task_id(a.positional[0]);
  v1::Task t;
  grpc::Status s = ctx.stub->Get(ctx.Call().get(), req, &t);
  if (!s.ok()) return Fail(s);
  if (ctx.json) {
    std::cout << Json(t) << "\n";
  } else {
    PrintTask(t);
  }
  return 0;
}

int CmdList(Context& ctx, const ParsedArgs& a) {
  v1::ListRequest req;
  for (absl::string_view s : absl::StrSplit(a.Get("status"), ',', absl::SkipEmpty())) {
    auto st = ParseStatus(s);
    if (!st.ok()) return Usage(std::string(st.status().message()));
    req.add_status(*st);
  }
  for (absl::string_view s : absl::StrSplit(a.Get("priority"), ',', absl::SkipEmpty())) {
    auto p = ParsePriority(s);
    if (!p.ok()) return Usage(std::string(p.status().message()));
    req.add_priority(*p);
  }
  if (a.Has("type")) req.add_type(a.Get("type"));
  if (a.flags.count("tag")) {
    for (const auto& t : a.flags.at("tag")) req.add_tags(t);
  }
  req.set_agent_id(a.Get("agent"));
  if (a.Has("limit")) {
    int limit;
    if (!absl::SimpleAtoi(a.Get("limit"), &limit)) return Usage("--limit: not a number");
    req.set_page_size(limit);
  }
  req.set_page_token(a.Get("page-token"));
  v1::ListResponse resp;
  grpc::Status s = ctx.stub->List(ctx.Call().get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (ctx.json) {
    std::cout << Json(resp) << "\n";
    return 0;
  }
  std::cout << absl::StrFormat("%-36s  %-10s  %-8s  %-12s  %-19s  %s\n", "TASK ID", "STATUS",
                               "PRIORITY", "AGENT", "CREATED", "COMMAND");
  for (const auto& t : resp.tasks()) {
    std::string cmd = CommandLine(t.spec());
    if (cmd.size() > 50) cmd = cmd.substr(0, 47) + "...";
    std::cout << absl::StrFormat("%-36s  %-10s  %-8s  %-12s  %-19s  %s\n", t.id(),
                                 StatusName(t.status()), PriorityName(t.spec().priority()),
                                 t.agent_id().empty() ? "-" : t.agent_id(),
                                 FormatTime(t.created_at()).substr(0, 19), cmd);
  }
  std::cout << resp.tasks_size() << " of " << resp.total() << " tasks";
  if (!resp.next_page_token().empty())
    std::cout << " (next: --page-token " << resp.next_page_token() << ")";
  std::cout << "\n";
  return 0;
}

// `runs`: the newest runs, or one run with a row per target.
int CmdRuns(Context& ctx, const ParsedArgs& a) {
  if (a.positional.size() > 1) return Usage("runs: give at most one run id");
  if (a.positional.empty()) {
    v1::ListRunsRequest req;
    req.set_page_token(a.Get("page-token"));
    if (a.Has("limit")) {
      int limit;
      if (!absl::SimpleAtoi(a.Get("limit"), &limit)) return Usage("--limit: not a number");
      req.set_page_size(limit);
    }
    v1::ListRunsResponse resp;
    grpc::Status s = ctx.stub->ListRuns(ctx.Call().get(), req, &resp);
    if (!s.ok()) return Fail(s);
    if (ctx.json) {
      std::cout << Json(resp) << "\n";
      return 0;
    }
    std::cout << absl::StrFormat("%-36s  %-10s  %-7s  %-7s  %-7s  %-6s  %-7s  %-19s  %s\n",
                                 "RUN ID", "STATUS", "TARGETS", "DONE", "RUNNING", "FAILED",
                                 "SKIPPED", "CREATED", "COMMAND");
    for (const v1::Run& r : resp.runs()) {
      const v1::RunCounts& c = r.counts();
      const int failed = c.failed() + c.timed_out() + c.lost();
      std::cout << absl::StrFormat(
          "%-36s  %-10s  %-7d  %-7d  %-7d  %-6d  %-7d  %-19s  %s\n", r.id(), StatusName(r.status()),
          c.targets() - c.skipped(), c.succeeded() + failed + c.cancelled(), c.running(), failed,
          c.skipped(), FormatTime(r.created_at()).substr(0, 19),
          CommandLine(r.spec().task()).substr(0, 50));
    }
    if (!resp.next_page_token().empty()) {
      std::cout << "(more: --page-token " << resp.next_page_token() << ")\n";
    }
    return 0;
  }
  v1::GetRunRequest req;
  req.set_run_id(a.positional[0]);
  v1::Run r;
  grpc::Status s = ctx.stub->GetRun(ctx.Call().get(), req, &r);
  if (!s.ok()) return Fail(s);
  if (ctx.json) {
    std::cout << Json(r) << "\n";
    return 0;
  }
  std::cout << "id:          " << r.id() << "\n"
            << "status:      " << StatusName(r.status());
  if (!r.status_reason().empty()) std::cout << " (" << r.status_reason() << ")";
  std::cout << "\n";
  if (!r.waiting_reason().empty()) std::cout << "waiting:     " << r.waiting_reason() << "\n";
  std::cout << "command:     " << CommandLine(r.spec().task()) << "\n"
            << "selector:    "
            << absl::StrJoin(std::map<std::string, std::string>(r.spec().task().selector().begin(),
                                                                r.spec().task().selector().end()),
                             ",", absl::PairFormatter("="))
            << "\n"
            << "concurrency: " << (r.concurrency_limit() ? absl::StrCat(r.concurrency_limit()) : "all")
            << "   max errors: " << (r.error_limit() ? absl::StrCat(r.error_limit()) : "none") << "\n"
            << "created:     " << FormatTime(r.created_at()) << "\n"
            << "finished:    " << FormatTime(r.finished_at()) << "\n";
  if (r.has_first_failure()) {
    const v1::RunFailure& f = r.first_failure();
    std::cout << "first failure: " << f.agent_id() << " " << StatusName(f.status()) << " ("
              << f.reason() << ")\n";
    for (const std::string* tail : {&f.stdout_tail(), &f.stderr_tail()}) {
      if (!tail->empty()) std::cout << *tail << (tail->back() == '\n' ? "" : "\n");
    }
  }
  std::cout << absl::StrFormat("\n%-24s  %-10s  %-4s  %-10s  %-36s  %s\n", "AGENT", "STATUS",
                               "EXIT", "DURATION", "TASK ID", "REASON");
  for (const v1::RunTarget& t : r.targets()) {
    std::cout << absl::StrFormat(
        "%-24s  %-10s  %-4s  %-10s  %-36s  %s\n", t.agent_id(),
        t.skipped() ? "skipped" : StatusName(t.status()),
        IsFinal(t.status()) && t.has_duration() ? absl::StrCat(t.exit_code()) : "-",
        t.has_duration() ? absl::FormatDuration(absl::Trunc(FromProto(t.duration()), absl::Milliseconds(1))) : "-",
        t.task_id().empty() ? "-" : t.task_id(), t.reason());
  }
  return 0;
}

int CmdCancel(Context& ctx, const ParsedArgs& a) {
  if (a.positional.size() != 1) return Usage("cancel: give one task or run id");
  v1::CancelRequest req;
  req.set_task_id(a.positional[0]);
  req.set_reason(a.Get("reason"));
  v1::Task t;
  grpc::Status s = ctx.stub->Cancel(ctx.Call().get(), req, &t);
  if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
    v1::CancelRunRequest run_req;
    run_req.set_run_id(a.positional[0]);
    run_req.set_reason(a.Get("reason"));
    v1::Run run;
    grpc::Status rs = ctx.stub->CancelRun(ctx.Call().get(), run_req, &run);
    if (rs.error_code() == grpc::StatusCode::NOT_FOUND) {
      return Fail("no task or run " + a.positional[0]);
    }
    if (!rs.ok()) return Fail(rs);
    std::cout << (ctx.json ? Json(run) : "cancelled run " + run.id()) << "\n";
    return 0;
  }
  if (!s.ok()) return Fail(s);
  std::cout << (ctx.json ? Json(t) : "cancelled " + t.id()) << "\n";
  return 0;
}

int CmdDelete(Context& ctx, const ParsedArgs& a) {
  if (a.positional.size() != 1) return Usage("delete: give one task id");
  v1::DeleteRequest req;
  req.set_task_id(a.positional[0]);
  v1::DeleteResponse resp;
  grpc::Status s = ctx.stub->Delete(ctx.Call().get(), req, &resp);
  if (!s.ok()) return Fail(s);
  std::cout << (ctx.json ? "{}" : "deleted " + a.positional[0]) << "\n";
  return 0;
}

int CmdLogs(Context& ctx, const ParsedArgs& a) {
  if (a.positional.size() != 1) return Usage("logs: give one task id");
  const std::string& id = a.positional[0];
  if (a.Has("follow")) {
    // From cursor 0: replays what the log still holds, else resyncs.
    auto t = Follow(ctx, id, 0, false);
    return t.ok() ? 0 : Fail(std::string(t.status().message()));
  }
  v1::GetRequest g;
  g.set_task_id(id);
  v1::Task t;
  grpc::Status s = ctx.stub->Get(ctx.Call().get(), g, &t);
  if (!s.ok()) return Fail(s);
  OutputSink sink(ctx, id);
  sink.CatchUp(0, t.stdout().total_bytes());
  sink.CatchUp(1, t.stderr().total_bytes());
  return 0;
}

std::string DescribeEvent(const v1::TaskEvent& e) {
  std::string type = Lower(v1::EventType_Name(e.type()), 11);
  std::string line = absl::StrCat(e.cursor(), " ", FormatTime(e.time()), " ", type);
  if (!e.task_id().empty()) absl::StrAppend(&line, " task=", e.task_id());
  if (!e.agent_id().empty()) absl::StrAppend(&line, " agent=", e.agent_id());
  if (e.has_task() && e.type() != v1::EVENT_TYPE_TASK_LOG) {
    absl::StrAppend(&line, " status=", StatusName(e.task().status()));
  }
  if (e.has_output()) {
    absl::StrAppend(&line, " ",
                    e.output().stream() == v1::OUTPUT_STREAM_STDERR ? "stderr" : "stdout",
                    " offset=", e.output().offset(), " bytes=", e.output().data().size());
  }
  if (e.has_progress()) absl::StrAppend(&line, " progress=", e.progress().percent());
  return line;
}

int CmdWatch(Context& ctx, const ParsedArgs& a) {
  v1::WatchRequest req;
  req.set_task_id(a.Get("task"));
  req.set_agent_id(a.Get("agent"));
  req.set_run_id(a.Get("run"));
  for (absl::string_view t : absl::StrSplit(a.Get("types"), ',', absl::SkipEmpty())) {
    v1::EventType type;
    std::string name = absl::StrCat("EVENT_TYPE_", absl::AsciiStrToUpper(t));
    absl::StrReplaceAll({{":", "_"}}, &name);
    if (!v1::EventType_Parse(name, &type))
      return Usage(absl::StrCat("--types: unknown type \"", t, "\""));
    req.add_types(type);
  }
  if (a.Has("after")) {
    uint64_t after;
    if (!absl::SimpleAtoi(a.Get("after"), &after)) return Usage("--after: not a cursor");
    req.set_after_cursor(after);
  }
  auto call = ctx.Call(absl::InfiniteDuration());
  auto reader = ctx.stub->Watch(call.get(), req);
  v1::WatchResponse batch;
  while (reader->Read(&batch)) {
    for (const v1::TaskEvent& e : batch.events()) {
      std::cout << (ctx.json ? Json(e) : DescribeEvent(e)) << "\n";
    }
    std::cout.flush();
  }
  grpc::Status s = reader->Finish();
  return s.ok() ? 0 : Fail(s);
}

int CmdAgents(Context& ctx, const ParsedArgs& a) {
  v1::ListAgentsResponse resp;
  grpc::Status s = ctx.stub->ListAgents(ctx.Call().get(), v1::ListAgentsRequest(), &resp);
  if (!s.ok()) return Fail(s);
  if (ctx.json) {
    std::cout << Json(resp) << "\n";
    return 0;
  }
  std::cout << absl::StrFormat("%-16s  %-9s  %-7s  %-6s  %-19s  %s\n", "AGENT", "STATE", "SLOTS",
                               "LOAD", "LAST HEARTBEAT", "LABELS");
  for (const auto& ag : resp.agents()) {
    std::map<std::string, std::string> labels(ag.labels().begin(), ag.labels().end());
    std::cout << absl::StrFormat("%-16s  %-9s  %3d/%-3d  %-6.2f  %-19s  %s\n", ag.agent_id(),
                                 ag.connected() ? "connected" : "offline", ag.running_tasks(),
                                 ag.slots(), ag.load1(),
                                 FormatTime(ag.last_heartbeat()).substr(0, 19),
                                 absl::StrJoin(labels, ",", absl::PairFormatter("=")));
  }
  return 0;
}

int CmdStats(Context& ctx, const ParsedArgs& a) {
  v1::StatsResponse resp;
  grpc::Status s = ctx.stub->Stats(ctx.Call().get(), v1::StatsRequest(), &resp);
  if (!s.ok()) return Fail(s);
  if (ctx.json) {
    std::cout << Json(resp) << "\n";
    return 0;
  }
  std::cout << "total:        " << resp.total() << "\n"
            << absl::StrFormat("success rate: %.1f%%\n", resp.success_rate() * 100)
            << absl::StrFormat("execution:    mean %.3fs  p50 %.3fs  p99 %.3fs\n",
                               resp.avg_execution_time(), resp.p50_execution_time(),
                               resp.p99_execution_time());
  std::map<std::string, int64_t> by_status(resp.by_status().begin(), resp.by_status().end());
  std::cout << "by status:    " << absl::StrJoin(by_status, " ", absl::PairFormatter("=")) << "\n";
  std::map<std::string, int64_t> by_priority(resp.by_priority().begin(), resp.by_priority().end());
  std::cout << "by priority:  " << absl::StrJoin(by_priority, " ", absl::PairFormatter("="))
            << "\n";
  std::map<std::string, int64_t> by_type(resp.by_type().begin(), resp.by_type().end());
  std::cout << "by type:      " << absl::StrJoin(by_type, " ", absl::PairFormatter("=")) << "\n";
  return 0;
}

int CmdAudit(Context& ctx, const ParsedArgs& a) {
  v1::ListAuditRequest req;
  req.set_actor(a.Get("actor"));
  req.set_action(a.Get("action"));
  if (a.Has("since")) {
    auto d = ParseDurationFlag("since", a.Get("since"));
    if (!d.ok()) return Usage(std::string(d.status().message()));
    *req.mutable_since() = ToProto(absl::Now() - FromProto(*d));
  }
  int64_t limit = 0;
  if (a.Has("limit") && (!absl::SimpleAtoi(a.Get("limit"), &limit) || limit <= 0)) {
    return Usage("--limit: must be a positive number");
  }
  req.set_limit(static_cast<int32_t>(std::min<int64_t>(limit, 1000)));
  for (int64_t printed = 0;;) {
    v1::ListAuditResponse resp;
    grpc::Status s = ctx.stub->ListAudit(ctx.Call().get(), req, &resp);
    if (!s.ok()) return Fail(s);
    for (const v1::AuditEntry& e : resp.entries()) {
      if (limit > 0 && printed++ == limit) return 0;
      if (ctx.json) {
        std::cout << Json(e) << "\n";
      } else {
        std::cout << absl::StrFormat("%s  %-18s  %-18s  %-36s  %-17s  %s%s\n",
                                     FormatTime(e.time()), e.actor(), e.action(), e.target(),
                                     e.outcome(), e.peer(),
                                     e.detail().empty() ? "" : "  (" + e.detail() + ")");
      }
    }
    if (resp.next_after_seq() == 0) return 0;
    req.set_after_seq(resp.next_after_seq());
  }
}

// The keys file's lines, with their line breaks (none when it is missing).
std::vector<std::string> ReadLines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  if (!in) return lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line + "\n");
  return lines;
}

// Replaces `path` whole, keeping its mode and owner (a new file is 0600:
// hashes only, but nobody else's business).
absl::Status WriteLines(const std::string& path, const std::vector<std::string>& lines) {
  const std::string tmp = path + ".tmp";
  struct stat old {};
  const bool existed = ::stat(path.c_str(), &old) == 0;
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError("--file: cannot write " + tmp);
  const std::string all = absl::StrJoin(lines, "");
  bool ok = ::write(fd, all.data(), all.size()) == static_cast<ssize_t>(all.size());
  if (ok && existed) {
    ok = ::fchmod(fd, old.st_mode & 07777) == 0 &&
         (::fchown(fd, old.st_uid, old.st_gid) == 0 || old.st_uid == ::geteuid());
  }
  ok = ok && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return absl::UnavailableError("--file: cannot write " + path);
  }
  return absl::OkStatus();
}

int CmdKeys(Context&, const ParsedArgs& a) {
  const std::string op = a.positional.empty() ? "" : a.positional[0];
  const std::string path = a.Get("file");
  if (path.empty()) return Usage("keys: --file is required (the coordinator's --keys_file)");
  std::vector<std::string> lines = ReadLines(path);
  if (op == "list") {
    auto keys = ApiKeys::LoadFile(path);
    if (!keys.ok()) return Fail(std::string(keys.status().message()));
    for (const std::string& line : lines) {
      auto key = ParseKeyLine(absl::StripAsciiWhitespace(line));
      if (!key.ok()) continue;  // Comments and blank lines.
      std::string shown = key->ToLine();
      absl::StrReplaceAll({{" sha256:" + key->sha256, ""}}, &shown);
      std::cout << shown << "\n";
    }
    return 0;
  }
  if (op == "revoke") {
    if (a.positional.size() != 2) return Usage("keys revoke: give the key's name");
    std::vector<std::string> kept;
    bool found = false;
    for (const std::string& line : lines) {
      auto key = ParseKeyLine(absl::StripAsciiWhitespace(line));
      if (key.ok() && key->name == a.positional[1]) {
        found = true;
      } else {
        kept.push_back(line);
      }
    }
    if (!found) return Fail("keys revoke: no key named " + a.positional[1] + " in " + path);
    if (absl::Status s = WriteLines(path, kept); !s.ok()) return Fail(std::string(s.message()));
    std::cerr << "revoked " << a.positional[1] << "; SIGHUP the coordinator to apply it\n";
    return 0;
  }
  if (op != "create") return Usage("keys: want create, list or revoke");
  const std::string name = a.Get("name");
  if (name.empty() || absl::StrContains(name, ' ')) {
    return Usage("keys create: --name is required (one word, used in the audit log)");
  }
  const std::string secret = NewApiKeySecret();
  std::string line = absl::StrCat(name, " sha256:", Sha256Hex(secret), " scopes=", a.Get("scope"));
  for (const auto& [flag, option] : std::vector<std::pair<std::string, std::string>>{
           {"selector", "selector"}, {"types", "types"}, {"max-running", "max_running"},
           {"submit-rate", "submit_rate"}, {"max-runtime", "max_runtime"},
           {"max-output", "max_output"}, {"max-streams", "max_streams"}}) {
    if (a.Has(flag)) absl::StrAppend(&line, " ", option, "=", a.Get(flag));
  }
  auto key = ParseKeyLine(line);
  if (!key.ok()) {
    std::string why(key.status().message());
    absl::StrReplaceAll({{"scopes:", "--scope:"}, {"max_", "--max-"}, {"submit_rate", "--submit-rate"}},
                        &why);
    return Usage("keys create: " + why);
  }
  if (auto existing = ApiKeys::LoadFile(path);
      !existing.ok() && !absl::IsNotFound(existing.status())) {
    return Fail(std::string(existing.status().message()));
  }
  for (const std::string& other_line : lines) {
    auto other = ParseKeyLine(absl::StripAsciiWhitespace(other_line));
    if (other.ok() && other->name == name) {
      return Usage("keys create: --name " + name + " is taken in " + path);
    }
  }
  lines.push_back(key->ToLine() + "\n");
  if (absl::Status s = WriteLines(path, lines); !s.ok()) return Fail(std::string(s.message()));
  std::cout << secret << "\n";
  std::cerr << "key " << name << " added to " << path
            << " (only its hash is kept: store the key now); SIGHUP the coordinator to load it\n";
  return 0;
}

}  // namespace

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
       {Spec({"agent", "selector", "priority", "timeout", "queue-timeout", "env", "cwd", "type",
              "tag", "idempotency-key", "image", "memory", "cpus", "pids", "network", "user",
              "name", "mount", "secret-env", "max-output", "max-concurrency", "max-errors",
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
