// run and docker: submit work and follow it to its end.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <iostream>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "services/cli/cli.h"
#include "services/cli/commands.h"
#include "services/common/enum_names.h"

namespace taskgrid::cli {
namespace {

// --memory, --cpus and --pids into `r`; a usage message on error.
std::string ResourceFlags(const ParsedArgs& a, v1::Resources* r) {
  if (a.Has("memory")) {
    auto m = ParseBytes("memory", a.Get("memory"));
    if (!m.ok()) return std::string(m.status().message());
    r->set_memory_bytes(*m);
  }
  double cpus = 0;
  if (a.Has("cpus") && !absl::SimpleAtod(a.Get("cpus"), &cpus)) {
    return "--cpus: \"" + a.Get("cpus") + "\" is not a number (e.g. 0.5)";
  }
  r->set_cpus(cpus);
  int64_t pids = 0;
  if (a.Has("pids") && !absl::SimpleAtoi(a.Get("pids"), &pids)) {
    return "--pids: \"" + a.Get("pids") + "\" is not a number";
  }
  r->set_pids(pids);
  return "";
}

// The container flags of `run` into `d`; a usage message on error.
std::string DockerRunFlags(const ParsedArgs& a, v1::DockerSpec* d) {
  d->set_image(a.Get("image"));
  for (const auto& p : a.positional) d->add_command(p);
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

}  // namespace

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
    for (const char* flag : {"network", "user", "name", "mount", "keep"}) {
      if (a.Has(flag)) return Usage(absl::StrCat("--", flag, ": needs --image (a container)"));
    }
    if (a.positional.size() == 1) {
      spec->mutable_shell()->set_command(a.positional[0]);
    } else {
      for (const auto& p : a.positional) spec->mutable_shell()->add_argv(p);
    }
  }
  if (std::string bad = PlacementFlags(a, spec); !bad.empty()) return Usage(bad);
  if (a.Has("memory") || a.Has("cpus") || a.Has("pids")) {
    if (std::string bad = ResourceFlags(a, spec->mutable_resources()); !bad.empty()) {
      return Usage(bad);
    }
  }
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
                              !takes_arg     ? "takes no argument"
                              : op == "pull" ? "give one image"
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

}  // namespace taskgrid::cli
