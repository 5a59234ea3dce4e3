#include "services/agent/agent.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "services/common/agent_policy.h"
#include "services/common/coordinator_channel.h"
#include "services/common/proto_time.h"
#include "services/common/service_process.h"
#include "services/common/task_resources.h"
#include "services/common/version.h"

namespace taskgrid {
namespace {

int Index(StdStream s) { return s == StdStream::kStderr ? 1 : 0; }

std::vector<std::string> BaseEnvironment() {
  std::vector<std::string> env = {
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
  for (const char* name : {"HOME", "USER", "LOGNAME", "LANG"}) {
    if (const char* v = std::getenv(name)) env.push_back(absl::StrCat(name, "=", v));
  }
  return env;
}

}  // namespace

absl::Status AgentOptions::Validate() const {
  if (coordinator_address.empty()) return absl::InvalidArgumentError("coordinator: is required");
  if (agent_id.empty()) return absl::InvalidArgumentError("agent_id: is required");
  if (slots > 4096) return absl::InvalidArgumentError("slots: at most 4096");
  if (capacity.memory_bytes() < 0) {
    return absl::InvalidArgumentError("capacity_memory: must not be negative");
  }
  if (!(capacity.cpus() >= 0 && capacity.cpus() <= 1024)) {
    return absl::InvalidArgumentError("capacity_cpus: 0 (the host's) to 1024");
  }
  if (output_window_bytes < 64 << 10) {
    return absl::InvalidArgumentError("output_window_bytes: at least 65536");
  }
  if (spool_bytes < output_window_bytes) {
    return absl::InvalidArgumentError("spool_bytes: at least output_window_bytes");
  }
  if (reconnect_min <= absl::ZeroDuration() || reconnect_max < reconnect_min) {
    return absl::InvalidArgumentError("reconnect_min/reconnect_max: need 0 < min <= max");
  }
  return tls.Validate();
}

Agent::Agent(AgentOptions options, ProcessRunner& runner, AgentMetrics* metrics,
             const DockerRunner* docker)
    : options_([&] {
        if (options.slots == 0) options.slots = std::max(1u, std::thread::hardware_concurrency());
        v1::Resources& capacity = options.capacity;
        if (capacity.memory_bytes() == 0) {
          capacity.set_memory_bytes(static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) *
                                    sysconf(_SC_PAGESIZE));
        }
        if (capacity.cpus() == 0) {
          capacity.set_cpus(std::max(1u, std::thread::hardware_concurrency()));
        }
        return options;
      }()),
      instance_id_([] {
        std::random_device rd;
        std::string id;
        for (int i = 0; i < 4; ++i) absl::StrAppendFormat(&id, "%08x", rd());
        return id;
      }()),
      runner_(runner),
      metrics_(metrics),
      docker_(docker),
      rng_(std::random_device{}()) {
  channel_ = CoordinatorChannel(options_.coordinator_address, options_.tls);
  stub_ = v1::AgentService::NewStub(channel_);
}

Agent::~Agent() { Stop(); }

void Agent::Start() {
  spdlog::info("agent_started agent_id={} coordinator={} slots={}", options_.agent_id,
               options_.coordinator_address, options_.slots);
  thread_ = std::thread([this] { RunLoop(); });
}

bool Agent::connected() const {
  absl::MutexLock lock(&mu_);
  return welcomed_;
}

size_t Agent::held_tasks() const {
  absl::MutexLock lock(&mu_);
  return executions_.size();
}

void Agent::DropConnectionForTesting() {
  std::shared_ptr<CoordinatorLink> link;
  {
    absl::MutexLock lock(&mu_);
    link = link_;
  }
  if (link) link->Cancel();
}

v1::AgentMessage Agent::HelloLocked() {
  v1::AgentMessage m;
  v1::Hello* h = m.mutable_hello();
  h->set_agent_id(options_.agent_id);
  h->set_token(options_.token);
  h->set_instance_id(instance_id_);
  h->mutable_labels()->insert(options_.labels.begin(), options_.labels.end());
  if (docker_ != nullptr) (*h->mutable_labels())["docker"] = docker_up_ ? "true" : "false";
  h->set_slots(options_.slots);
  *h->mutable_capacity() = options_.capacity;
  for (std::string& limit : runner_.EnforcedLimits()) h->add_limits(std::move(limit));
  h->set_container_limits(docker_ != nullptr);
  h->set_version(kVersion);
  h->set_hostname(HostName());
  *h->mutable_policy() = options_.policy;
  for (const auto& [id, e] : executions_) {
    if (e->forget) continue;
    v1::HeldTask* held = h->add_held_tasks();
    held->set_task_id(id);
    held->set_attempt(e->attempt);
    held->set_stdout_resend_from(e->spool[0].start());
    held->set_stderr_resend_from(e->spool[1].start());
    held->set_finished(e->exited || (e->adopt && !e->adopt->running()));
    held->set_adopted(e->adopted);
  }
  return m;
}

void Agent::RunLoop() {
  int failures = 0;
  std::shared_ptr<CoordinatorLink> retired;  // Kept until its OnDone surely returned.
  for (bool first = true;; first = false) {
    CheckDocker();
    v1::AgentMessage hello;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      hello = HelloLocked();
      link_done_ = false;
      welcomed_ = false;
    }
    if (!first && metrics_) metrics_->reconnects.Increment();
    auto link = CoordinatorLink::Create(
        [this](CoordinatorLink* l, const v1::CoordinatorMessage& m) { OnMessage(l, m); },
        [this](CoordinatorLink* l, const grpc::Status& s) { OnLinkDone(l, s); });
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;  // Stop() cancels only a link it can see.
      link_ = link;           // Before Start: the Welcome may arrive at once.
    }
    link->Start(*stub_, hello);
    bool was_welcomed = false;
    {
      absl::MutexLock lock(&mu_);
      for (;;) {
        const bool woke =
            mu_.AwaitWithTimeout(absl::Condition(this, &Agent::WakeLocked), heartbeat_interval_);
        if (woke && !link_done_) {  // The Welcome set the interval: wait with that one.
          interval_changed_ = false;
          continue;
        }
        was_welcomed |= welcomed_;
        // Processes the coordinator no longer wants are destroyed here, off
        // their own callback thread.
        std::vector<std::unique_ptr<RunningProcess>> dead;
        for (auto it = executions_.begin(); it != executions_.end();) {
          auto cur = it++;
          if (cur->second->forget && cur->second->exited) {
            dead.push_back(std::move(cur->second->process));
            executions_.erase(cur);
          }
        }
        for (auto it = dying_.begin(); it != dying_.end();) {
          if ((*it)->exited) {
            dead.push_back(std::move((*it)->process));
            it = dying_.erase(it);
          } else {
            ++it;
          }
        }
        if (!dead.empty()) {
          mu_.Unlock();
          dead.clear();
          mu_.Lock();
        }
        if (woke) break;
        if (welcomed_) {
          mu_.Unlock();
          SendHeartbeat();
          mu_.Lock();
        }
      }
      link_.reset();
    }
    retired = std::move(link);
    failures = was_welcomed ? 0 : failures + 1;
    if (failures == 1 || failures % 20 == 0) {
      spdlog::info("coordinator_unreachable agent_id={} attempts={}", options_.agent_id, failures);
    }
    const absl::Duration cap =
        std::min(options_.reconnect_max, options_.reconnect_min * (1 << std::min(failures, 16)));
    absl::Duration wait;
    {
      absl::MutexLock lock(&mu_);
      // Full jitter keeps a fleet from reconnecting in lockstep.
      wait = cap * std::uniform_real_distribution<double>(0.5, 1.0)(rng_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), wait);
    }
  }
}

void Agent::CheckDocker() {
  if (docker_ == nullptr) return;
  const absl::Status up = docker_->Probe();
  bool adopt;
  {
    absl::MutexLock lock(&mu_);
    if (up.ok() != docker_up_ || !containers_adopted_) {
      spdlog::info("docker_checked agent_id={} available={} status=\"{}\"", options_.agent_id,
                   up.ok(), up.ToString());
    }
    adopt = up.ok() && !containers_adopted_;
    // Containers are taken only once the earlier run's are known.
    docker_up_ = up.ok() && containers_adopted_;
  }
  if (!adopt) return;
  auto owned = docker_->FindOwned();
  if (!owned.ok()) {
    spdlog::warn("containers_not_listed agent_id={} status=\"{}\"", options_.agent_id,
                 owned.status().ToString());
    return;
  }
  // The newest attempt of a task is followed; anything older is stopped.
  std::sort(owned->begin(), owned->end(), [](const OwnedContainer& a, const OwnedContainer& b) {
    return a.attempt > b.attempt;
  });
  absl::MutexLock lock(&mu_);
  containers_adopted_ = true;
  docker_up_ = true;
  for (const OwnedContainer& c : *owned) {
    auto held = executions_.find(c.task_id);
    if (held != executions_.end() && held->second->attempt == c.attempt) continue;  // Ours now.
    auto e = std::make_unique<Execution>(options_);
    e->task_id = c.task_id;
    e->attempt = c.attempt;
    e->finished.set_task_id(c.task_id);
    e->finished.set_attempt(c.attempt);
    e->adopt = c;
    e->adopted = true;
    spdlog::info("container_found agent_id={} task_id={} attempt={} container={} state={}",
                 options_.agent_id, c.task_id, c.attempt, c.id.substr(0, 12), c.state);
    if (held != executions_.end()) {  // Another attempt than the one the agent runs.
      e->forget = true;
      StartAdoptedLocked(*e);
      e->process->Terminate(options_.shutdown_grace);
      dying_.push_back(std::move(e));
    } else {
      executions_[c.task_id] = std::move(e);
    }
  }
}

void Agent::StartAdoptedLocked(Execution& e) {
  e.process = docker_->Adopt(*e.adopt, e.spool[0].start(), e.spool[1].start(),
                             OutputTo(e.task_id, e.attempt), ExitTo(e.task_id, e.attempt));
  e.adopt.reset();
  if (metrics_) metrics_->running_tasks.Increment();
}

OutputCallback Agent::OutputTo(const std::string& task_id, uint32_t attempt) {
  return [this, task_id, attempt](StdStream s, absl::string_view d) {
    OnOutput(task_id, attempt, s, d);
  };
}

ExitCallback Agent::ExitTo(const std::string& task_id, uint32_t attempt) {
  return [this, task_id, attempt](const ProcessExit& x) { OnExit(task_id, attempt, x); };
}

void Agent::OnLinkDone(CoordinatorLink* link, const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  if (link != link_.get()) return;
  if (!stopping_ && welcomed_) {
    spdlog::warn("coordinator_stream_ended agent_id={} code={} message=\"{}\"", options_.agent_id,
                 static_cast<int>(status.error_code()), status.error_message());
  } else if (!stopping_ && status.error_code() != grpc::StatusCode::UNAVAILABLE &&
             status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
    // Refused at hello (token, identity): the operator must learn why.
    spdlog::error("coordinator_refused agent_id={} code={} message=\"{}\"", options_.agent_id,
                  static_cast<int>(status.error_code()), status.error_message());
  }
  link_done_ = true;
  welcomed_ = false;
  if (metrics_) metrics_->connected.Set(0);
  // Output now goes to the spool: let paused tasks write again.
  for (auto& [id, e] : executions_) UpdatePauseLocked(*e);
}

void Agent::SendLocked(v1::AgentMessage m) {
  if (welcomed_ && link_) link_->Send(std::move(m));
}

void Agent::OnMessage(CoordinatorLink* link, const v1::CoordinatorMessage& m) {
  std::vector<std::unique_ptr<RunningProcess>> dead;  // Destroyed after unlocking.
  absl::MutexLock lock(&mu_);
  if (link != link_.get()) return;
  switch (m.msg_case()) {
    case v1::CoordinatorMessage::kWelcome:
      HandleWelcomeLocked(m.welcome());
      break;
    case v1::CoordinatorMessage::kAssign:
      HandleAssignLocked(m.assign(), dead);
      break;
    case v1::CoordinatorMessage::kCancel: {
      auto it = executions_.find(m.cancel().task_id());
      if (it != executions_.end() && it->second->attempt == m.cancel().attempt()) {
        spdlog::info("task_terminating task_id={} reason=\"{}\"", m.cancel().task_id(),
                     m.cancel().reason());
        if (it->second->process) {
          it->second->process->Terminate(FromProto(m.cancel().grace()));
        } else if (it->second->spawning) {
          it->second->cancel_grace = FromProto(m.cancel().grace());
        }
      }
      break;
    }
    case v1::CoordinatorMessage::kAck:
      HandleAckLocked(m.ack(), dead);
      break;
    default:
      break;
  }
  mu_.Unlock();
  dead.clear();
  mu_.Lock();
}

void Agent::HandleWelcomeLocked(const v1::Welcome& w) {
  welcomed_ = true;
  if (metrics_) metrics_->connected.Set(1);
  if (w.has_heartbeat_interval() && FromProto(w.heartbeat_interval()) > absl::ZeroDuration()) {
    interval_changed_ = heartbeat_interval_ != FromProto(w.heartbeat_interval());
    heartbeat_interval_ = FromProto(w.heartbeat_interval());
  }
  spdlog::info("coordinator_connected agent_id={} resumed_tasks={}", options_.agent_id,
               w.resume_size());
  for (const v1::Resume& r : w.resume()) {
    auto it = executions_.find(r.task_id());
    if (it == executions_.end() || it->second->attempt != r.attempt()) continue;
    Execution& e = *it->second;
    if (!r.keep()) {
      // Nobody will acknowledge its output: drop it and keep the pipes
      // flowing, or a paused process could never exit.
      e.forget = true;
      for (OutputSpool& s : e.spool) s.Clear();
      if (e.adopt && !e.adopt->running() && e.adopt->keep) {
        e.exited = true;  // Stopped and kept on purpose: the user's; nothing to do.
        e.adopt.reset();
      } else if (e.adopt) {
        StartAdoptedLocked(e);  // To stop it, and remove it unless kept.
      }
      UpdatePauseLocked(e);
      if (!e.exited && e.process) e.process->Terminate(options_.shutdown_grace);
      continue;
    }
    // Resend from what the coordinator holds; the first Started may have
    // died with the old stream.
    const int64_t held[2] = {r.stdout_offset(), r.stderr_offset()};
    if (e.adopt) {  // Its output is read again from the start: skip what was delivered.
      for (int i = 0; i < 2; ++i) e.spool[i].Rebase(held[i]);
      StartAdoptedLocked(e);
    }
    for (int i = 0; i < 2; ++i) {
      e.spool[i].Drop(held[i]);
      e.sent[i] = std::max(held[i], e.spool[i].start());
    }
    e.finished_sent = false;
    if (e.process) {
      v1::AgentMessage m;
      m.mutable_started()->set_task_id(e.task_id);
      m.mutable_started()->set_attempt(e.attempt);
      m.mutable_started()->set_pid(e.process->pid());
      SendLocked(std::move(m));
    }
    PumpLocked(e);
    UpdatePauseLocked(e);
  }
}

void Agent::PumpLocked(Execution& e) {
  if (!welcomed_ || e.forget || e.spawning) return;
  constexpr int64_t kMaxChunk = 64 << 10;
  for (int i = 0; i < 2; ++i) {
    OutputSpool& spool = e.spool[i];
    while (e.sent[i] < spool.end() && e.sent[i] - spool.start() < options_.output_window_bytes) {
      std::string data = spool.Read(
          e.sent[i],
          std::min(kMaxChunk, options_.output_window_bytes - (e.sent[i] - spool.start())));
      if (data.empty()) break;
      v1::AgentMessage m;
      v1::Output* out = m.mutable_output();
      out->set_task_id(e.task_id);
      out->set_attempt(e.attempt);
      out->mutable_chunk()->set_stream(i == 0 ? v1::OUTPUT_STREAM_STDOUT
                                              : v1::OUTPUT_STREAM_STDERR);
      out->mutable_chunk()->set_offset(e.sent[i]);
      e.sent[i] += static_cast<int64_t>(data.size());
      out->mutable_chunk()->set_data(std::move(data));
      SendLocked(std::move(m));
    }
  }
  // Finished goes after the last byte, so the coordinator has it all.
  if (e.exited && !e.finished_sent && e.sent[0] == e.spool[0].end() &&
      e.sent[1] == e.spool[1].end()) {
    e.finished_sent = true;
    v1::AgentMessage m;
    *m.mutable_finished() = e.finished;
    SendLocked(std::move(m));
  }
}

Agent::Execution* Agent::FindLocked(const std::string& task_id, uint32_t attempt) {
  if (auto it = executions_.find(task_id);
      it != executions_.end() && it->second->attempt == attempt) {
    return it->second.get();
  }
  for (auto& e : dying_) {
    if (e->task_id == task_id && e->attempt == attempt) return e.get();
  }
  return nullptr;
}

void Agent::HandleAssignLocked(const v1::Assign& a,
                               std::vector<std::unique_ptr<RunningProcess>>& dead) {
  if (auto it = executions_.find(a.task_id()); it != executions_.end()) {
    if (it->second->attempt >= a.attempt()) return;  // A repeat.
    // A newer attempt of a task whose old one is still being killed (the
    // coordinator gave up on it): both coexist until the old one is gone.
    Execution& old = *it->second;
    if (!old.forget) {
      old.forget = true;
      for (OutputSpool& s : old.spool) s.Clear();
      if (old.adopt) StartAdoptedLocked(old);
      if (!old.exited && old.process) old.process->Terminate(options_.shutdown_grace);
    }
    dying_.push_back(std::move(it->second));
    executions_.erase(it);
  }
  if (stopping_) {  // Refuse at once so the slot frees and the task fails honestly.
    v1::AgentMessage m;
    m.mutable_finished()->set_task_id(a.task_id());
    m.mutable_finished()->set_attempt(a.attempt());
    m.mutable_finished()->mutable_exit()->set_exit_code(127);
    m.mutable_finished()->mutable_exit()->set_error("the agent is stopping");
    SendLocked(std::move(m));
    return;
  }
  auto owned = std::make_unique<Execution>(options_);
  Execution& e = *owned;
  e.task_id = a.task_id();
  e.attempt = a.attempt();
  e.finished.set_task_id(a.task_id());
  e.finished.set_attempt(a.attempt());
  executions_[a.task_id()] = std::move(owned);

  const std::string id = a.task_id();
  const uint32_t attempt = a.attempt();
  auto fail = [&](Execution& failed, const absl::Status& why, int exit_code = 127)
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    spdlog::warn("task_spawn_failed task_id={} status=\"{}\"", id, why.ToString());
    if (metrics_) metrics_->spawn_failures.Increment();
    failed.exited = true;
    failed.finished.mutable_exit()->set_exit_code(exit_code);
    failed.finished.mutable_exit()->set_error(std::string(why.message()));
    PumpLocked(failed);
  };
  // The coordinator checks the policy too; this guards against one that
  // does not (an older version, or a compromised one).
  if (std::string refusal = PolicyRefusal(options_.policy, a.spec()); !refusal.empty()) {
    return fail(e, absl::PermissionDeniedError(
                    absl::StrCat("agent ", options_.agent_id, " ", refusal, " by its policy")),
                126);
  }
  const auto& secrets = a.spec().secret_env();
  if (!secrets.empty()) {
    std::vector<std::string> values;
    for (const auto& [name, value] : secrets) values.push_back(value);
    e.redact[0] = std::make_unique<SecretRedactor>(values);
    e.redact[1] = std::make_unique<SecretRedactor>(*e.redact[0]);
  }
  if (a.spec().has_docker()) {
    if (docker_ == nullptr) {
      return fail(e, absl::FailedPreconditionError(absl::StrCat(
          "agent ", options_.agent_id, " runs no container tasks (--docker_socket is empty)")));
    }
    v1::DockerSpec docker = a.spec().docker();
    for (const auto& [name, value] : secrets) (*docker.mutable_env())[name] = value;
    if (AsksForResources(a.spec())) {
      const v1::Resources limits = RequestedResources(a.spec());
      docker.set_memory_bytes(limits.memory_bytes());
      docker.set_cpus(limits.cpus());
      docker.set_pids_limit(limits.pids());
    }
    e.process = docker_->Start(id, attempt, docker, OutputTo(id, attempt), ExitTo(id, attempt));
  } else {
    const v1::ShellSpec& shell = a.spec().shell();
    ProcessSpec spec;
    if (shell.argv_size() > 0) {
      spec.argv.assign(shell.argv().begin(), shell.argv().end());
    } else {
      spec.argv = {"/bin/sh", "-c", shell.command()};
    }
    spec.env = BaseEnvironment();
    spec.env.push_back("TASKGRID_TASK_ID=" + a.task_id());
    spec.env.push_back("TASKGRID_AGENT_ID=" + options_.agent_id);
    for (const auto& [k, v] : shell.env()) spec.env.push_back(absl::StrCat(k, "=", v));
    for (const auto& [k, v] : secrets) spec.env.push_back(absl::StrCat(k, "=", v));
    spec.cwd = shell.cwd();
    spec.stdin_data = shell.stdin();
    spec.name = absl::StrCat(a.task_id(), ".", attempt);
    if (AsksForResources(a.spec())) {  // most tasks: no Resources to build
      const v1::Resources limits = RequestedResources(a.spec());
      spec.limits = {limits.memory_bytes(), limits.cpus(), limits.pids()};
    }
    // A spawn takes a fork's time: not under the lock that every report of
    // every task waits on. Meanwhile the attempt may be cancelled, replaced
    // or forgotten, or the agent told to stop; it is looked up again after.
    e.spawning = true;
    mu_.Unlock();
    absl::StatusOr<std::unique_ptr<RunningProcess>> process =
        runner_.Start(spec, OutputTo(id, attempt), ExitTo(id, attempt));
    mu_.Lock();
    Execution* now = FindLocked(id, attempt);
    if (now == nullptr) {  // Forgotten and gone (it exited at once).
      if (process.ok()) dead.push_back(std::move(*process));
      return;
    }
    now->spawning = false;
    if (!process.ok()) return fail(*now, process.status());
    now->process = std::move(*process);
    return StartedLocked(*now);
  }
  StartedLocked(e);
}

void Agent::StartedLocked(Execution& e) {
  if (metrics_) {
    metrics_->tasks_started.Increment();
    metrics_->running_tasks.Increment();
  }
  v1::AgentMessage m;
  m.mutable_started()->set_task_id(e.task_id);
  m.mutable_started()->set_attempt(e.attempt);
  m.mutable_started()->set_pid(e.process->pid());
  SendLocked(std::move(m));
  if (!e.exited && (e.forget || stopping_)) {
    e.process->Terminate(options_.shutdown_grace);
  } else if (!e.exited && e.cancel_grace) {
    e.process->Terminate(*e.cancel_grace);
  }
  PumpLocked(e);  // What it wrote, or its exit, while it was being installed.
  UpdatePauseLocked(e);
}

void Agent::HandleAckLocked(const v1::Ack& a, std::vector<std::unique_ptr<RunningProcess>>& dead) {
  auto it = executions_.find(a.task_id());
  if (it == executions_.end() || it->second->attempt != a.attempt()) return;
  Execution& e = *it->second;
  const int64_t acked[2] = {a.stdout_offset(), a.stderr_offset()};
  for (int i = 0; i < 2; ++i) {
    e.spool[i].Drop(acked[i]);
    e.sent[i] = std::max(e.sent[i], e.spool[i].start());
  }
  PumpLocked(e);
  UpdatePauseLocked(e);
  if (a.finished() && e.exited) {
    dead.push_back(std::move(e.process));
    executions_.erase(it);
  }
}

void Agent::UpdatePauseLocked(Execution& e) {
  if (!e.process) return;
  // Connected: a window in flight, as backpressure. Away: the disk spool.
  const int64_t limit = welcomed_ ? options_.output_window_bytes : options_.spool_bytes;
  const int64_t most = std::max(e.spool[0].size(), e.spool[1].size());
  if (!e.paused && most >= limit) {
    e.paused = true;
    if (metrics_) metrics_->paused.Increment();
    e.process->SetOutputPaused(true);
  } else if (e.paused && most < limit / 2) {
    e.paused = false;
    e.process->SetOutputPaused(false);
  }
}

void Agent::OnOutput(const std::string& task_id, uint32_t attempt, StdStream stream,
                     absl::string_view data) {
  absl::MutexLock lock(&mu_);
  Execution* found = FindLocked(task_id, attempt);
  if (found == nullptr) return;
  Execution& e = *found;
  if (metrics_) metrics_->output_bytes.Increment(static_cast<double>(data.size()));
  if (e.forget) return;  // Being killed; nobody wants its output.
  std::string redacted;
  if (SecretRedactor* r = e.redact[Index(stream)].get()) {
    r->Feed(data, &redacted);
    data = redacted;
  }
  e.spool[Index(stream)].Append(data);
  if (stream == StdStream::kStdout) ScanProgressLocked(e, data);
  PumpLocked(e);
  UpdatePauseLocked(e);
}

void Agent::ScanProgressLocked(Execution& e, absl::string_view data) {
  constexpr absl::string_view kMarker = "::progress ";
  constexpr size_t kMaxLine = 512;
  while (!data.empty()) {
    const size_t nl = data.find('\n');
    const absl::string_view piece = data.substr(0, nl);
    if (e.line_is_candidate) {
      e.stdout_line.append(piece.data(), std::min(piece.size(), kMaxLine));
      const size_t n = std::min(e.stdout_line.size(), kMarker.size());
      e.line_is_candidate = e.stdout_line.size() <= kMaxLine &&
                            absl::string_view(e.stdout_line).substr(0, n) == kMarker.substr(0, n);
    }
    if (nl == absl::string_view::npos) return;
    int percent = 0;
    if (e.line_is_candidate && e.stdout_line.size() > kMarker.size()) {
      absl::string_view rest = absl::string_view(e.stdout_line).substr(kMarker.size());
      const size_t space = rest.find(' ');
      if (absl::SimpleAtoi(rest.substr(0, space), &percent) && percent >= 0 && percent <= 100) {
        v1::AgentMessage m;
        v1::ProgressReport* p = m.mutable_progress();
        p->set_task_id(e.task_id);
        p->set_attempt(e.attempt);
        p->mutable_progress()->set_percent(percent);
        if (space != absl::string_view::npos) {
          p->mutable_progress()->set_message(std::string(rest.substr(space + 1)));
        }
        SendLocked(std::move(m));
      }
    }
    e.stdout_line.clear();
    e.line_is_candidate = true;
    data.remove_prefix(nl + 1);
  }
}

void Agent::OnExit(const std::string& task_id, uint32_t attempt, const ProcessExit& x) {
  absl::MutexLock lock(&mu_);
  Execution* found = FindLocked(task_id, attempt);
  if (found == nullptr) return;
  Execution& e = *found;
  e.exited = true;
  for (int i = 0; i < 2; ++i) {
    if (e.redact[i] == nullptr || e.forget) continue;
    std::string tail;
    e.redact[i]->Flush(&tail);
    e.spool[i].Append(tail);
  }
  if (metrics_) metrics_->running_tasks.Decrement();
  v1::ExitInfo* exit = e.finished.mutable_exit();
  exit->set_exit_code(x.exit_code);
  exit->set_signal(x.signal);
  *exit->mutable_cpu_time() = ToProto(x.cpu_time);
  exit->set_max_rss_bytes(x.max_rss_bytes);
  exit->set_memory_peak_bytes(x.memory_peak_bytes);
  exit->set_oom_killed(x.oom_killed);
  if (!x.container_id.empty()) exit->set_container_id(x.container_id);
  if (!x.error.empty()) {
    exit->set_error(x.error);
  } else if (x.survivors > 0) {
    exit->set_error(absl::StrCat(x.survivors, " process(es) of the task survived SIGKILL"));
  } else if (stopping_ && x.signal != 0) {
    exit->set_error("killed because the agent was stopping");
  }
  e.finished.set_stdout_bytes(e.spool[0].end());
  e.finished.set_stderr_bytes(e.spool[1].end());
  spdlog::debug("task_exited task_id={} exit_code={} signal={}", task_id, x.exit_code, x.signal);
  PumpLocked(e);
}

void Agent::SendHeartbeat() {
  v1::AgentMessage m;
  v1::Heartbeat* h = m.mutable_heartbeat();
  v1::HostMetrics host = sampler_.Sample();
  h->set_load1(host.load1());
  h->set_memory_total_bytes(host.memory_total_bytes());
  h->set_memory_available_bytes(host.memory_available_bytes());
  absl::MutexLock lock(&mu_);
  const auto running = static_cast<uint32_t>(executions_.size());
  host.set_running_tasks(running);
  host.set_free_slots(running < options_.slots ? options_.slots - running : 0);
  if (metrics_) {
    metrics_->host_cpu.Set(host.cpu_percent() / 100);
    metrics_->host_memory_used.Set(static_cast<double>(host.memory_used_bytes()));
    metrics_->host_memory_total.Set(static_cast<double>(host.memory_total_bytes()));
    metrics_->host_load1.Set(host.load1());
    metrics_->process_rss.Set(static_cast<double>(host.process_rss_bytes()));
    metrics_->disk_used.Set(static_cast<double>(host.disk_used_bytes()));
    metrics_->disk_total.Set(static_cast<double>(host.disk_total_bytes()));
    metrics_->free_slots.Set(host.free_slots());
  }
  *h->mutable_time() = ToProto(absl::Now());
  *host.mutable_time() = h->time();
  h->set_running_tasks(running);
  *h->mutable_host() = std::move(host);
  SendLocked(std::move(m));
}

void Agent::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    for (auto& [id, e] : executions_) {
      if (!e->exited && e->process) e->process->Terminate(options_.shutdown_grace);
    }
    // Give the coordinator the exits (and let it acknowledge them).
    auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const auto& [id, e] : executions_) {
        if (e->adopt) continue;  // Never taken up: the next start finds it again.
        if (!e->exited || (welcomed_ && !e->forget)) return false;
      }
      return true;
    };
    mu_.AwaitWithTimeout(absl::Condition(&settled, &decltype(settled)::operator()),
                         options_.shutdown_grace + absl::Seconds(3));
  }
  DropConnectionForTesting();
  if (thread_.joinable()) thread_.join();
  absl::flat_hash_map<std::string, std::unique_ptr<Execution>> leftovers;
  std::vector<std::unique_ptr<Execution>> dying;
  {
    absl::MutexLock lock(&mu_);
    leftovers.swap(executions_);
    dying.swap(dying_);
  }
  leftovers.clear();  // Kills and reaps anything that ignored the grace.
  dying.clear();
  spdlog::info("agent_stopped agent_id={}", options_.agent_id);
}

}  // namespace taskgrid
