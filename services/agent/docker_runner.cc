#include "services/agent/docker_runner.h"

#include <google/protobuf/util/json_util.h>
#include <limits.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <atomic>
#include <cmath>
#include <optional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "services/common/enum_names.h"
#include "services/common/status_util.h"
#include "services/common/task_resources.h"

namespace taskgrid {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

constexpr char kAgentLabel[] = "taskgrid.agent_id";
constexpr char kTaskLabel[] = "taskgrid.task_id";
constexpr char kAttemptLabel[] = "taskgrid.attempt";
constexpr char kKeepLabel[] = "taskgrid.keep";
// `docker run`'s exit codes for its own failures.
constexpr int kDockerError = 125;
constexpr int kCannotExecute = 126;
constexpr int kCommandNotFound = 127;

std::string OperationName(v1::DockerSpec::Operation op) {
  return EnumWord(v1::DockerSpec::Operation_Name(op), "DOCKER_OPERATION_");
}

std::string PercentEncode(absl::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

Value Str(absl::string_view s) {
  Value v;
  v.set_string_value(std::string(s));
  return v;
}
Value Num(double d) {
  Value v;
  v.set_number_value(d);
  return v;
}

const Value* Field(const Struct& s, const std::string& name) {
  auto it = s.fields().find(name);
  return it == s.fields().end() ? nullptr : &it->second;
}
std::string StringField(const Struct& s, const std::string& name) {
  const Value* v = Field(s, name);
  return v != nullptr && v->has_string_value() ? v->string_value() : "";
}
// Pointers into a temporary would dangle.
const Value* Field(Struct&&, const std::string&) = delete;
const Struct* StructField(Struct&&, const std::string&) = delete;
const Struct* StructField(const Struct& s, const std::string& name) {
  const Value* v = Field(s, name);
  return v != nullptr && v->has_struct_value() ? &v->struct_value() : nullptr;
}

std::string ToJsonLine(const Struct& s) {
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(s, &out);
  return out + "\n";
}

// The Engine's answer to a failed call, as a status a person can act on.
absl::Status EngineError(absl::string_view what, const DockerResponse& r) {
  const std::string message = absl::StrCat(what, ": ", r.ErrorMessage());
  switch (r.status) {
    case 400:
      return absl::InvalidArgumentError(message);
    case 403:
      return absl::PermissionDeniedError(message);
    case 404:
      return absl::NotFoundError(message);
    case 409:
      return absl::AlreadyExistsError(message);
    default:
      return absl::UnavailableError(message);
  }
}

// Every container, running or not, that carries `agent_id`'s label.
absl::StatusOr<std::vector<Struct>> ListOwned(const DockerClient& client,
                                              const std::string& agent_id) {
  const std::string filters =
      absl::StrCat(R"({"label":[")", kAgentLabel, "=", agent_id, R"("]})");
  TASKGRID_ASSIGN_OR_RETURN(
      DockerResponse r,
      client.Call("GET", "/containers/json?all=1&filters=" + PercentEncode(filters)));
  if (!r.ok()) return EngineError("list containers", r);
  Struct wrapped;  // The answer is an array: parse it as the value of a field.
  if (!google::protobuf::util::JsonStringToMessage(absl::StrCat(R"({"c":)", r.body, "}"),
                                                   &wrapped)
           .ok()) {
    return absl::UnavailableError("list containers: unreadable answer from Docker");
  }
  std::vector<Struct> out;
  for (const Value& v : wrapped.fields().at("c").list_value().values()) {
    out.push_back(v.struct_value());
  }
  return out;
}

// Bind sources must resolve (symlinks followed) under an allowed prefix.
// `resolved` is set to the real path of the source.
absl::Status CheckMount(const DockerOptions& o, const v1::DockerSpec::Mount& m,
                        std::string& resolved) {
  if (m.target().empty() || m.target()[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("mount target \"", m.target(), "\" must be an absolute path"));
  }
  char real[PATH_MAX];
  if (realpath(m.source().c_str(), real) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("mount source \"", m.source(), "\" does not exist on agent ", o.agent_id));
  }
  resolved = real;  // Docker gets this path: a symlink swapped later cannot escape.
  const absl::string_view path(resolved);
  for (const std::string& prefix : o.mount_prefixes) {
    absl::string_view p(prefix);
    while (p.size() > 1 && p.back() == '/') p.remove_suffix(1);
    if (path == p || p == "/" || (absl::StartsWith(path, p) && path[p.size()] == '/')) {
      return absl::OkStatus();
    }
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "mount source \"", m.source(), "\" is not under a path agent ", o.agent_id,
      " allows (--docker_mounts: ",
      o.mount_prefixes.empty() ? "none" : absl::StrJoin(o.mount_prefixes, ","), ")"));
}

// One container operation as a process: see DockerRunner. Thread-safe.
class ContainerExecution final : public RunningProcess {
 public:
  // With `adopt` set, follows that container instead of creating one.
  ContainerExecution(const DockerRunner& runner, std::string task_id, uint32_t attempt,
                     v1::DockerSpec spec, std::optional<OwnedContainer> adopt,
                     int64_t skip_stdout, int64_t skip_stderr, OutputCallback on_output,
                     ExitCallback on_exit)
      : runner_(runner),
        client_(runner.client()),
        task_id_(std::move(task_id)),
        attempt_(attempt),
        spec_(std::move(spec)),
        adopt_(std::move(adopt)),
        skip_{skip_stdout, skip_stderr},
        on_output_(std::move(on_output)),
        on_exit_(std::move(on_exit)) {}

  void Begin() { io_ = std::thread([this] { Run(); }); }

  ~ContainerExecution() override {
    std::string kill_id;
    {
      absl::MutexLock lock(&mu_);
      destroying_ = true;
      if (!done_) kill_id = container_id_;
    }
    if (!kill_id.empty() && spec_.operation() == v1::DockerSpec::DOCKER_OPERATION_RUN) {
      (void)client_.Call("POST", absl::StrCat("/containers/", kill_id, "/kill"));
    }
    abort_ = true;
    if (io_.joinable()) io_.join();
    if (stopper_.joinable()) stopper_.join();
  }

  int64_t pid() const override { return 0; }

  void Terminate(absl::Duration grace) override {
    absl::MutexLock lock(&mu_);
    if (terminating_ || done_) return;
    terminating_ = true;
    if (spec_.operation() != v1::DockerSpec::DOCKER_OPERATION_RUN) {
      abort_ = true;  // Other operations end by closing their call.
      return;
    }
    // Stopping blocks for the grace: never on the caller's thread.
    stopper_ = std::thread([this, grace] { StopContainer(grace); });
  }

  void SetOutputPaused(bool paused) override {
    absl::MutexLock lock(&mu_);
    paused_ = paused;
  }

 private:
  void Run() {
    ProcessExit exit;
    const std::string op = OperationName(spec_.operation());
    absl::Status s = Execute(exit);
    if (!s.ok()) {
      exit.error = std::string(s.message());
      if (exit.exit_code == 0) exit.exit_code = kDockerError;
      spdlog::warn("container_operation_failed task_id={} operation={} status=\"{}\"", task_id_,
                   op, s.ToString());
    }
    if (AgentMetrics* m = runner_.metrics()) {
      m->container_operations.Add({{"operation", op}, {"outcome", s.ok() ? "ok" : "error"}})
          .Increment();
    }
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
    }
    on_exit_(exit);
  }

  absl::Status Execute(ProcessExit& exit) {
    switch (spec_.operation()) {
      case v1::DockerSpec::DOCKER_OPERATION_RUN:
        if (!adopt_) return RunContainer(exit);
        if (adopt_->state == "created") {  // Never started: its run cannot be told.
          (void)Remove(adopt_->id, exit);
          return absl::UnavailableError("the agent restarted before it started the container");
        }
        return Follow(adopt_->id, exit);
      case v1::DockerSpec::DOCKER_OPERATION_START:
        return Simple("POST", "/start", "started", "is already running");
      case v1::DockerSpec::DOCKER_OPERATION_STOP: {
        const int64_t t =
            spec_.has_stop_timeout() ? std::max<int64_t>(0, spec_.stop_timeout().seconds()) : 10;
        // The call lasts as long as the grace.
        return Simple("POST", absl::StrCat("/stop?t=", t), "stopped", "is not running",
                      absl::Seconds(t) + client_.timeout());
      }
      case v1::DockerSpec::DOCKER_OPERATION_REMOVE:
        return Simple("DELETE", "?force=1&v=1", "removed", "");
      case v1::DockerSpec::DOCKER_OPERATION_INSPECT: {
        auto inspected = Owned();
        if (!inspected.ok()) return inspected.status();
        Emit(1, inspected->body + "\n");
        return absl::OkStatus();
      }
      case v1::DockerSpec::DOCKER_OPERATION_LOGS:
        return Logs(exit);
      case v1::DockerSpec::DOCKER_OPERATION_LIST:
        return List();
      case v1::DockerSpec::DOCKER_OPERATION_PULL:
        return Pull();
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("unknown docker operation ", spec_.operation()));
    }
  }

  absl::Status RunContainer(ProcessExit& exit) {
    const DockerOptions& o = runner_.options();
    const std::string network = spec_.network().empty() ? "none" : spec_.network();
    if (std::find(o.networks.begin(), o.networks.end(), network) == o.networks.end()) {
      return absl::PermissionDeniedError(
          absl::StrCat("network \"", network, "\" is not allowed on agent ", o.agent_id,
                       " (--docker_networks: ", absl::StrJoin(o.networks, ","), ")"));
    }
    Struct body;
    auto& f = *body.mutable_fields();
    f["Image"] = Str(spec_.image());
    if (spec_.command_size() > 0) {
      auto* cmd = f["Cmd"].mutable_list_value();
      for (const auto& a : spec_.command()) *cmd->add_values() = Str(a);
    }
    auto* env = f["Env"].mutable_list_value();
    *env->add_values() = Str("TASKGRID_TASK_ID=" + task_id_);
    *env->add_values() = Str("TASKGRID_AGENT_ID=" + o.agent_id);
    for (const auto& [k, v] : spec_.env()) *env->add_values() = Str(absl::StrCat(k, "=", v));
    if (!spec_.working_dir().empty()) f["WorkingDir"] = Str(spec_.working_dir());
    if (!spec_.user().empty()) f["User"] = Str(spec_.user());
    auto& labels = *f["Labels"].mutable_struct_value()->mutable_fields();
    labels[kAgentLabel] = Str(o.agent_id);
    labels[kTaskLabel] = Str(task_id_);
    labels[kAttemptLabel] = Str(absl::StrCat(attempt_));
    labels[kKeepLabel] = Str(spec_.keep() ? "true" : "false");
    auto& host = *f["HostConfig"].mutable_struct_value()->mutable_fields();
    host["NetworkMode"] = Str(network);
    if (spec_.memory_bytes() > 0) {
      host["Memory"] = Num(static_cast<double>(spec_.memory_bytes()));
      host["MemorySwap"] = Num(static_cast<double>(spec_.memory_bytes()));  // No swap on top.
    }
    if (spec_.cpus() > 0) host["NanoCpus"] = Num(std::round(spec_.cpus() * 1e9));
    if (spec_.pids_limit() > 0) host["PidsLimit"] = Num(static_cast<double>(spec_.pids_limit()));
    auto* mounts = host["Mounts"].mutable_list_value();
    for (const auto& m : spec_.mounts()) {
      std::string source;
      TASKGRID_RETURN_IF_ERROR(CheckMount(o, m, source));
      auto& mf = *mounts->add_values()->mutable_struct_value()->mutable_fields();
      mf["Type"] = Str("bind");
      mf["Source"] = Str(source);
      mf["Target"] = Str(m.target());
      mf["ReadOnly"].set_bool_value(m.read_only());
    }

    std::string target = "/containers/create";
    if (!spec_.name().empty()) absl::StrAppend(&target, "?name=", PercentEncode(spec_.name()));
    TASKGRID_ASSIGN_OR_RETURN(DockerResponse created, client_.Call("POST", target, &body));
    if (created.status == 404) {
      return absl::NotFoundError(absl::StrCat("image \"", spec_.image(),
                                              "\" is not on agent ", o.agent_id,
                                              ": pull it first (taskgrid docker pull ",
                                              spec_.image(), ")"));
    }
    if (!created.ok()) return EngineError("create container", created);
    const std::string id = StringField(created.Json(), "Id");
    if (id.empty()) return absl::UnavailableError("create container: Docker returned no id");
    exit.container_id = id;
    bool cancelled;
    {
      absl::MutexLock lock(&mu_);
      container_id_ = id;
      cancelled = terminating_ || destroying_;
    }
    spdlog::info("container_created task_id={} container={} image={}", task_id_, id.substr(0, 12),
                 spec_.image());
    if (cancelled) {  // Cancelled while it was being created: never start it.
      exit.signal = SIGTERM;
      return Remove(id, exit);
    }
    TASKGRID_ASSIGN_OR_RETURN(DockerResponse started,
                              client_.Call("POST", absl::StrCat("/containers/", id, "/start")));
    if (!started.ok()) {
      const std::string message = started.ErrorMessage();
      // As `docker run` does: 127 for a missing command, 126 for one that cannot run.
      if (absl::StrContains(message, "not found") || absl::StrContains(message, "no such file")) {
        exit.exit_code = kCommandNotFound;
      } else if (absl::StrContains(message, "permission denied")) {
        exit.exit_code = kCannotExecute;
      }
      (void)Remove(id, exit);
      return EngineError("start container", started);
    }
    return Follow(id, exit);
  }

  // Streams the container's output until it stops, then reports its exit.
  absl::Status Follow(const std::string& id, ProcessExit& exit) {
    exit.container_id = id;
    {
      absl::MutexLock lock(&mu_);
      container_id_ = id;
    }
    AgentMetrics* metrics = runner_.metrics();
    if (metrics) metrics->containers_running.Increment();
    auto streamed = StreamLogs(id, "follow=1");
    auto waited = client_.Call("POST", absl::StrCat("/containers/", id, "/wait"));
    if (metrics) metrics->containers_running.Decrement();
    absl::Status failed;
    if (!streamed.ok() || !streamed->ok()) {
      failed = streamed.ok() ? EngineError("container output", *streamed) : streamed.status();
    } else if (!waited.ok() || !waited->ok()) {
      failed = waited.ok() ? EngineError("wait for container", *waited) : waited.status();
    }
    if (!failed.ok()) {  // Unfollowed, it must not run on: kill it, remove it unless kept.
      (void)client_.Call("POST", absl::StrCat("/containers/", id, "/kill"));
      (void)Remove(id, exit);
      return failed;
    }
    CatchUp(id);
    const Struct wait_answer = waited->Json();
    const Value* code = Field(wait_answer, "StatusCode");
    const int status = code != nullptr ? static_cast<int>(code->number_value()) : kDockerError;
    auto inspected = client_.Call("GET", absl::StrCat("/containers/", id, "/json"));
    const Struct description = inspected.ok() ? inspected->Json() : Struct();
    const Struct* state = StructField(description, "State");
    const Value* oom = state ? Field(*state, "OOMKilled") : nullptr;
    bool terminated;
    {
      absl::MutexLock lock(&mu_);
      terminated = terminating_ || destroying_;
    }
    if (oom != nullptr && oom->bool_value()) {
      exit.signal = SIGKILL;
      exit.oom_killed = true;
      exit.error = OutOfMemoryReason(spec_.memory_bytes());
    } else if (terminated && status > 128 && status <= 128 + 64) {
      exit.signal = status - 128;  // Docker reports death by signal N as 128+N.
    } else {
      exit.exit_code = status;
    }
    return spec_.keep() ? absl::OkStatus() : Remove(id, exit);
  }

  // Before 23.0 dockerd ends a follow when the logger closes, without the
  // records still ahead of it in the file. Once the container has stopped
  // its log is whole: read it again and hand over only what the follow did not.
  void CatchUp(const std::string& id) {
    for (int i = 0; i < 2; ++i) {
      skip_[i] = seen_[i];
      seen_[i] = 0;
    }
    auto r = StreamLogs(id, "follow=0");
    if (!r.ok() || !r->ok()) {
      spdlog::warn("container_output_catch_up_failed task_id={} container={} error=\"{}\"",
                   task_id_, id.substr(0, 12),
                   r.ok() ? r->ErrorMessage() : std::string(r.status().message()));
    }
  }

  absl::Status Remove(const std::string& id, ProcessExit& exit) {
    if (spec_.keep()) return absl::OkStatus();
    auto removed = client_.Call("DELETE", absl::StrCat("/containers/", id, "?force=1&v=1"));
    if (removed.ok() && (removed->ok() || removed->status == 404)) return absl::OkStatus();
    const std::string why =
        removed.ok() ? removed->ErrorMessage() : std::string(removed.status().message());
    spdlog::warn("container_remove_failed task_id={} container={} error=\"{}\"", task_id_, id,
                 why);
    if (exit.error.empty()) exit.error = absl::StrCat("could not remove container: ", why);
    return absl::OkStatus();
  }

  void StopContainer(absl::Duration grace) {
    std::string id;
    {
      absl::MutexLock lock(&mu_);
      // Until created there is nothing to stop: creation looks at terminating_.
      auto known = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !container_id_.empty() || done_;
      };
      mu_.Await(absl::Condition(&known));
      if (done_) return;
      id = container_id_;
    }
    const int64_t t = static_cast<int64_t>(std::ceil(absl::ToDoubleSeconds(grace)));
    spdlog::info("container_stopping task_id={} container={} grace_s={}", task_id_,
                 id.substr(0, 12), t);
    // The call lasts as long as the grace: wait that long, and the usual bound on top.
    auto stopped = client_.Call("POST", absl::StrCat("/containers/", id, "/stop?t=", t), nullptr,
                                absl::Seconds(t) + client_.timeout());
    if (!stopped.ok() || (!stopped->ok() && stopped->status != 304)) {
      // Docker would not stop it: kill it, so the task cannot outlive its cancel.
      (void)client_.Call("POST", absl::StrCat("/containers/", id, "/kill"));
    }
  }

  // The inspected container, if it is this agent's.
  absl::StatusOr<DockerResponse> Owned() {
    const std::string& c = spec_.container();
    TASKGRID_ASSIGN_OR_RETURN(DockerResponse r,
                              client_.Call("GET", absl::StrCat("/containers/",
                                                                PercentEncode(c), "/json")));
    if (r.status == 404) return absl::NotFoundError(absl::StrCat("no such container \"", c, "\""));
    if (!r.ok()) return EngineError("inspect container", r);
    const Struct description = r.Json();
    const Struct* config = StructField(description, "Config");
    const Struct* labels = config ? StructField(*config, "Labels") : nullptr;
    const std::string& agent = runner_.options().agent_id;
    if (labels == nullptr || StringField(*labels, kAgentLabel) != agent) {
      return absl::PermissionDeniedError(
          absl::StrCat("container \"", c, "\" was not created by agent ", agent,
                       ": taskgrid manages only the containers its agents created"));
    }
    return r;
  }

  // One call on an owned container; 304 means it was already so.
  absl::Status Simple(absl::string_view method, absl::string_view suffix, absl::string_view done,
                      absl::string_view already, absl::Duration timeout = absl::ZeroDuration()) {
    TASKGRID_RETURN_IF_ERROR(Owned().status());
    const std::string& c = spec_.container();
    const std::string path = absl::StrCat("/containers/", PercentEncode(c), suffix);
    TASKGRID_ASSIGN_OR_RETURN(DockerResponse r, client_.Call(method, path, nullptr, timeout));
    if (r.status == 304 && !already.empty()) {
      Emit(1, absl::StrCat(c, " ", already, "\n"));
      return absl::OkStatus();
    }
    if (!r.ok()) return EngineError(absl::StrCat(method, " ", c), r);
    Emit(1, absl::StrCat(done, " ", c, "\n"));
    return absl::OkStatus();
  }

  // A container's output, demultiplexed into Emit, until it ends or abort_.
  absl::StatusOr<DockerResponse> StreamLogs(const std::string& container,
                                            absl::string_view query) {
    DockerStreamDemuxer demux([this](int stream, absl::string_view d) { Emit(stream, d); });
    return client_.Stream(
        "GET",
        absl::StrCat("/containers/", PercentEncode(container), "/logs?stdout=1&stderr=1&", query),
        [&demux](absl::string_view d) {
          demux.Feed(d);
          return true;
        },
        abort_);
  }

  absl::Status Logs(ProcessExit& exit) {
    TASKGRID_RETURN_IF_ERROR(Owned().status());
    TASKGRID_ASSIGN_OR_RETURN(
        DockerResponse r,
        StreamLogs(spec_.container(),
                   absl::StrCat("follow=", spec_.follow() ? 1 : 0, "&tail=",
                                spec_.tail() > 0 ? absl::StrCat(spec_.tail()) : "all")));
    if (abort_) exit.signal = SIGTERM;  // Cancelled while following.
    if (r.status != 0 && !r.ok()) return EngineError("container logs", r);
    return absl::OkStatus();
  }

  absl::Status List() {
    TASKGRID_ASSIGN_OR_RETURN(std::vector<Struct> containers,
                              ListOwned(client_, runner_.options().agent_id));
    for (const Struct& c : containers) {
      Struct line;
      auto& f = *line.mutable_fields();
      f["id"] = Str(StringField(c, "Id").substr(0, 12));
      const Value* names = Field(c, "Names");
      std::string name = names && names->list_value().values_size() > 0
                             ? names->list_value().values(0).string_value()
                             : "";
      if (absl::StartsWith(name, "/")) name.erase(0, 1);
      f["name"] = Str(name);
      f["image"] = Str(StringField(c, "Image"));
      f["state"] = Str(StringField(c, "State"));
      f["status"] = Str(StringField(c, "Status"));
      const Struct* labels = StructField(c, "Labels");
      f["task_id"] = Str(labels ? StringField(*labels, kTaskLabel) : "");
      Emit(1, ToJsonLine(line));
    }
    return absl::OkStatus();
  }

  absl::Status Pull() {
    std::string image = spec_.image(), tag = "latest";
    const size_t colon = image.rfind(':');
    if (image.find('@') != std::string::npos) {
      tag.clear();  // A digest names the image exactly.
    } else if (colon != std::string::npos && image.find('/', colon) == std::string::npos) {
      tag = image.substr(colon + 1);
      image.resize(colon);
    }
    std::string error, line;
    auto r = client_.Stream(
        "POST",
        absl::StrCat("/images/create?fromImage=", PercentEncode(image),
                     tag.empty() ? "" : "&tag=", PercentEncode(tag)),
        [&](absl::string_view d) {
          // Progress arrives as JSON lines; an "error" line ends a failed pull.
          for (char ch : d) {
            if (ch != '\n') {
              line.push_back(ch);
              continue;
            }
            DockerResponse msg{200, std::move(line)};
            line.clear();
            const Struct j = msg.Json();
            if (std::string e = StringField(j, "error"); !e.empty()) error = e;
            if (std::string s = StringField(j, "status"); !s.empty()) {
              const std::string id = StringField(j, "id");
              Emit(1, absl::StrCat(id.empty() ? "" : id + ": ", s, "\n"));
            }
          }
          return true;
        },
        abort_);
    absl::Status s = absl::OkStatus();
    if (!r.ok()) {
      s = r.status();
    } else if (!r->ok()) {
      s = EngineError(absl::StrCat("pull ", spec_.image()), *r);
    } else if (!error.empty()) {
      s = absl::UnavailableError(absl::StrCat("pull ", spec_.image(), ": ", error));
    }
    if (AgentMetrics* m = runner_.metrics()) {
      m->image_pulls.Add({{"outcome", s.ok() ? "ok" : "error"}}).Increment();
    }
    return s;
  }

  // Hands output to the agent, after the bytes to skip, while not paused.
  void Emit(int stream, absl::string_view data) {
    const int i = stream == 2 ? 1 : 0;
    seen_[i] += static_cast<int64_t>(data.size());
    int64_t& skip = skip_[i];
    if (skip > 0) {
      const size_t n = static_cast<size_t>(std::min<int64_t>(skip, data.size()));
      skip -= static_cast<int64_t>(n);
      data.remove_prefix(n);
      if (data.empty()) return;
    }
    {
      absl::MutexLock lock(&mu_);
      auto may_go = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !paused_ || destroying_;
      };
      mu_.Await(absl::Condition(&may_go));
    }
    on_output_(stream == 2 ? StdStream::kStderr : StdStream::kStdout, data);
  }

  const DockerRunner& runner_;
  const DockerClient& client_;
  const std::string task_id_;
  const uint32_t attempt_;
  const v1::DockerSpec spec_;
  const std::optional<OwnedContainer> adopt_;
  int64_t skip_[2];      // Only the io thread touches these two.
  int64_t seen_[2] = {};  // bytes of each stream the daemon sent, skipped or not
  const OutputCallback on_output_;
  const ExitCallback on_exit_;
  std::atomic<bool> abort_{false};

  absl::Mutex mu_;
  std::string container_id_ ABSL_GUARDED_BY(mu_);
  bool terminating_ ABSL_GUARDED_BY(mu_) = false;
  bool destroying_ ABSL_GUARDED_BY(mu_) = false;
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::thread io_;
  std::thread stopper_;  // Set once, under mu_, by Terminate.
};

}  // namespace

absl::Status DockerOptions::Validate() const {
  if (socket.empty()) return absl::InvalidArgumentError("docker_socket: is required");
  if (agent_id.empty()) return absl::InvalidArgumentError("agent_id: is required");
  for (const std::string& p : mount_prefixes) {
    if (p.empty() || p[0] != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("docker_mounts: \"", p, "\" is not an absolute path"));
    }
  }
  if (api_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("docker_api_timeout: must be positive");
  }
  return absl::OkStatus();
}

DockerRunner::DockerRunner(DockerOptions options, AgentMetrics* metrics)
    : options_(std::move(options)),
      client_(options_.socket, options_.api_timeout),
      metrics_(metrics) {}

absl::Status DockerRunner::Probe() const {
  // Short: the agent checks before each connection to its coordinator.
  TASKGRID_ASSIGN_OR_RETURN(DockerResponse r,
                            client_.Call("GET", "/_ping", nullptr, absl::Seconds(5)));
  if (!r.ok()) return EngineError("Docker ping", r);
  return absl::OkStatus();
}

std::unique_ptr<RunningProcess> DockerRunner::Start(const std::string& task_id, uint32_t attempt,
                                                    const v1::DockerSpec& spec,
                                                    OutputCallback on_output,
                                                    ExitCallback on_exit) const {
  auto e = std::make_unique<ContainerExecution>(*this, task_id, attempt, spec, std::nullopt, 0, 0,
                                                std::move(on_output), std::move(on_exit));
  e->Begin();
  return e;
}

absl::StatusOr<std::vector<OwnedContainer>> DockerRunner::FindOwned() const {
  TASKGRID_ASSIGN_OR_RETURN(std::vector<Struct> containers, ListOwned(client_, options_.agent_id));
  std::vector<OwnedContainer> owned;
  for (const Struct& c : containers) {
    const Struct* labels = StructField(c, "Labels");
    if (labels == nullptr) continue;
    OwnedContainer o;
    o.id = StringField(c, "Id");
    o.task_id = StringField(*labels, kTaskLabel);
    if (!absl::SimpleAtoi(StringField(*labels, kAttemptLabel), &o.attempt) || o.task_id.empty()) {
      continue;
    }
    o.state = StringField(c, "State");
    o.keep = StringField(*labels, kKeepLabel) == "true";
    owned.push_back(std::move(o));
  }
  return owned;
}

std::unique_ptr<RunningProcess> DockerRunner::Adopt(const OwnedContainer& c, int64_t skip_stdout,
                                                    int64_t skip_stderr, OutputCallback on_output,
                                                    ExitCallback on_exit) const {
  v1::DockerSpec spec;
  spec.set_keep(c.keep);
  auto e = std::make_unique<ContainerExecution>(*this, c.task_id, c.attempt, spec, c,
                                                skip_stdout, skip_stderr, std::move(on_output),
                                                std::move(on_exit));
  e->Begin();
  return e;
}

}  // namespace taskgrid
