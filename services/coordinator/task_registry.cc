// The registry's core: recovery, the task table (submit, read, list,
// cancel, delete, retention's removal), journaling and events, audit and
// monitoring hooks. Scheduling, agents, timers and fleet runs have their own
// files beside it.
#include "services/coordinator/task_registry.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "services/common/proto_time.h"
#include "services/common/status_util.h"
#include "services/coordinator/task_registry_util.h"
#include "services/coordinator/task_validation.h"

namespace taskgrid {

using registry::EncodePageToken;
using registry::IdempotencyKey;
using registry::Page;
using registry::ParsePage;
using registry::RedactSecrets;
using registry::PriorityName;
using registry::PriorityOf;
using registry::QueueWindow;
using registry::SelectorMatches;
using registry::StatusName;
using registry::StreamIndex;

namespace {

constexpr int64_t kDefaultOutputRead = 1 << 20;
constexpr int64_t kMaxOutputRead = 4 << 20;
constexpr int kMaxBatchSubmits = 1000;

}  // namespace

absl::Status RegistryOptions::Validate() const {
  auto positive = [](absl::string_view name, absl::Duration d) {
    return d > absl::ZeroDuration()
               ? absl::OkStatus()
               : absl::InvalidArgumentError(absl::StrCat(name, ": must be positive"));
  };
  TASKGRID_RETURN_IF_ERROR(positive("default_task_timeout", default_task_timeout));
  TASKGRID_RETURN_IF_ERROR(positive("heartbeat_interval", heartbeat_interval));
  TASKGRID_RETURN_IF_ERROR(positive("retention", retention));
  if (default_kill_grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("default_kill_grace: must not be negative");
  }
  if (heartbeat_ttl <= heartbeat_interval) {
    return absl::InvalidArgumentError("heartbeat_ttl: must be longer than heartbeat_interval");
  }
  if (output_cap_bytes < 1024) return absl::InvalidArgumentError("output_cap_bytes: at least 1024");
  if (max_retained_tasks == 0) return absl::InvalidArgumentError("max_retained_tasks: at least 1");
  return monitor.Validate();
}

TaskRegistry::TaskRegistry(const Clock& clock, TaskStore& store, EventLog& events,
                           CoordinatorMetrics* metrics, RegistryOptions options)
    : clock_(clock),
      store_(store),
      events_(events),
      metrics_(metrics),
      options_(std::move(options)),
      monitor_(clock, [this] {
        MonitorOptions m = options_.monitor;
        m.interval = options_.heartbeat_interval;
        return m;
      }()),
      agents_(options_.heartbeat_ttl, options_.retention,
              metrics != nullptr ? &metrics->connected_agents : nullptr),
      rng_(std::random_device{}()) {}

void TaskRegistry::Recover(StoredState state) {
  WriteLock lock(this);
  const absl::Time now = clock_.Now();
  for (v1::Agent& info : state.agents) agents_.Restore(std::move(info), now);
  // Entries are built on every core (a million tasks take seconds), then
  // indexed here in submission order.
  std::vector<std::unique_ptr<TaskEntry>> entries(state.tasks.size());
  const size_t workers = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> builders;
  for (size_t w = 0; w < workers; ++w) {
    builders.emplace_back([&, w] {
      for (size_t i = w; i < entries.size(); i += workers) {
        auto& t = *(entries[i] = std::make_unique<TaskEntry>());
        v1::Task& stored = state.tasks[i].task;
        t.state = TaskState::FromProto(stored);
        SetSpec(t, std::move(*stored.mutable_spec()));
        stored = v1::Task();
        t.spec_journaled = state.tasks[i].spec_stored;
        t.seq = state.tasks[i].seq;
        t.out[0] = OutputBuffer(options_.output_cap_bytes);
        t.out[1] = OutputBuffer(options_.output_cap_bytes);
        const v1::TaskSpec& spec = *t.spec;
        t.timeout = FromProto(spec.timeout());
        t.kill_grace = FromProto(spec.kill_grace());
        t.queue_deadline =
            std::max(t.state.created_at, t.state.retry_at) + QueueWindow(spec, t.timeout);
      }
    });
  }
  for (auto& b : builders) b.join();
  state.tasks = {};
  size_t queued = 0, active = 0;
  tasks_.reserve(entries.size());
  for (std::unique_ptr<TaskEntry>& entry : entries) {
    TaskEntry& t = *entry;
    next_seq_ = std::max(next_seq_, t.seq + 1);
    if (!t.state.idempotency_key.empty()) {
      idempotency_[IdempotencyKey(t.state.owner, t.state.idempotency_key)] = t.state.id;
    }
    by_seq_.emplace_hint(by_seq_.end(), t.seq, &t);
    switch (t.state.status) {
      case v1::TASK_STATUS_PENDING:
      case v1::TASK_STATUS_QUEUED:
        t.state.status = v1::TASK_STATUS_QUEUED;
        // A run's targets wait for their run to release them again.
        if (t.state.run_id.empty()) Enqueue(t);
        ++queued;
        break;
      case v1::TASK_STATUS_DISPATCHED:
      case v1::TASK_STATUS_RUNNING: {
        // Its agent gets a heartbeat TTL from now to come back and report it.
        t.run_deadline = t.state.dispatched_at + t.timeout;
        active_.insert(&t);
        run_deadlines_.Set(t.seq, t.run_deadline);
        agents_.ExpectBack(t.state.agent_id, now).assigned.insert(t.state.id);
        ++active;
        break;
      }
      default:
        finished_order_.emplace_back(t.state.finished_at, t.seq);
    }
    if (!IsFinal(t.state.status) && !t.state.owner.empty()) {
      ++unfinished_by_owner_[t.state.owner];
    }
    counts_.Add(t.state, *t.spec);
    tasks_.emplace(t.state.id, std::move(entry));
  }
  entries.clear();
  std::sort(finished_order_.begin(), finished_order_.end());
  for (StoredState::Output& o : state.output) {
    TaskEntry* t = FindLocked(o.task_id);
    if (t == nullptr ||
        (o.stream != v1::OUTPUT_STREAM_STDOUT && o.stream != v1::OUTPUT_STREAM_STDERR)) {
      continue;
    }
    OutputBuffer& buf = t->out[StreamIndex(o.stream)];
    absl::string_view data = o.data;
    if (o.offset > buf.total()) buf.Skip(o.offset - buf.total());  // The trimmed middle.
    const int64_t seen = buf.total() - o.offset;
    if (seen >= static_cast<int64_t>(data.size())) continue;
    buf.Append(data.substr(static_cast<size_t>(seen)));
    if (std::shared_ptr<std::atomic<bool>> head = buf.WatchHead()) head->store(true);  // Restored.
  }
  // Log events come back with their bytes from the restored output. When the
  // output no longer holds them all (the capped middle, an earlier attempt)
  // the event keeps its cursor as a marker of the bytes it dropped. Task
  // snapshots get their task's spec back; one whose task is gone keeps what
  // it has (none, or its own from an older journal).
  const uint64_t last_cursor = state.events.empty() ? 0 : state.events.back().event.cursor();
  std::vector<EventLog::Entry> events;
  events.reserve(state.events.size());
  for (StoredState::Event& stored : state.events) {
    v1::TaskEvent& e = stored.event;
    if (!events.empty() && e.cursor() != events.back().event.cursor() + 1) events.clear();
    std::shared_ptr<const v1::TaskSpec> spec;
    if (e.has_task()) {
      if (const TaskEntry* t = FindLocked(e.task_id()); t != nullptr) {
        e.mutable_task()->clear_spec();
        spec = t->shown;
      }
    }
    if (e.type() == v1::EVENT_TYPE_TASK_LOG && stored.log_bytes > 0) {
      const TaskEntry* t = FindLocked(e.task_id());
      if (t != nullptr && t->state.attempt == e.attempt() &&
          e.output().offset() + stored.log_bytes <=
              t->out[StreamIndex(e.output().stream())].total()) {
        OutputBuffer::Slice slice =
            t->out[StreamIndex(e.output().stream())].Read(e.output().offset(), stored.log_bytes);
        if (slice.offset == e.output().offset() &&
            static_cast<int64_t>(slice.data.size()) == stored.log_bytes) {
          e.mutable_output()->set_data(std::move(slice.data));
        }
      }
      if (e.output().data().empty()) e.mutable_output()->set_dropped_bytes(stored.log_bytes);
    }
    events.push_back({std::move(e), std::move(spec)});
  }
  audit_.Restore(std::move(state.audit));
  const size_t restored_events = events.size();
  events_.Restore(std::move(events), last_cursor);
  events_trimmed_ = events_.first_cursor();
  RecoverRunsLocked(std::move(state.runs));
  if (metrics_) metrics_->running_tasks.Set(static_cast<double>(active_.size()));
  spdlog::info(
      "registry_recovered tasks={} queued={} running={} finished={} agents={} events={} "
      "last_cursor={}",
      tasks_.size(), queued, active, counts_.finished(), agents_.size(), restored_events,
      last_cursor);
}

// ---------------------------------------------------------------- helpers

std::string TaskRegistry::NewIdLocked() {
  std::string id = RandomUuidLocked();
  while (tasks_.contains(id) || runs_.contains(id)) id = RandomUuidLocked();
  return id;
}

std::string TaskRegistry::RandomUuidLocked() {
  const uint64_t a = rng_(), b = rng_();
  // UUID version 4, variant 1.
  return absl::StrFormat("%08x-%04x-4%03x-%04x-%012x", a >> 32, (a >> 16) & 0xffff, a & 0xfff,
                         0x8000 | ((b >> 48) & 0x3fff), b & 0xffffffffffffULL);
}

TaskRegistry::TaskEntry* TaskRegistry::FindLocked(const std::string& task_id) {
  auto it = tasks_.find(task_id);
  return it == tasks_.end() ? nullptr : it->second.get();
}

TaskRegistry::TaskEntry* TaskRegistry::FenceLocked(const AgentEntry& agent,
                                                   const std::string& task_id, uint32_t attempt) {
  TaskEntry* t = FindLocked(task_id);
  if (t != nullptr && t->state.agent_id == agent.info.agent_id() && t->state.attempt == attempt) {
    return t;
  }
  if (metrics_) metrics_->stale_messages.Increment();
  spdlog::debug("agent_message_rejected agent_id={} task_id={} attempt={}", agent.info.agent_id(),
                task_id, attempt);
  return nullptr;
}

v1::Task TaskRegistry::SnapshotLocked(const TaskEntry& t, bool with_spec) const {
  v1::Task task = t.state.ToProto();
  if (with_spec) {
    *task.mutable_spec() = *t.spec;
    RedactSecrets(*task.mutable_spec());
  }
  task.mutable_stdout()->set_total_bytes(t.out[0].total());
  task.mutable_stdout()->set_dropped_bytes(t.out[0].dropped());
  task.mutable_stderr()->set_total_bytes(t.out[1].total());
  task.mutable_stderr()->set_dropped_bytes(t.out[1].dropped());
  if (t.state.status == v1::TASK_STATUS_QUEUED || t.state.status == v1::TASK_STATUS_PENDING) {
    task.set_waiting_reason(WaitingReasonLocked(t));
  }
  return task;
}

void TaskRegistry::SetSpec(TaskEntry& t, v1::TaskSpec spec) {
  const bool hides = !spec.secret_env().empty() || !spec.shell().stdin().empty();
  t.spec = std::make_shared<const v1::TaskSpec>(std::move(spec));
  t.spec_journaled = false;
  if (!hides) {
    t.shown = t.spec;
    return;
  }
  auto shown = std::make_shared<v1::TaskSpec>(*t.spec);
  RedactSecrets(*shown);
  // Stdin can be large and is not news to anyone watching.
  if (shown->has_shell()) shown->mutable_shell()->clear_stdin();
  t.shown = std::move(shown);
}

void TaskRegistry::PersistLocked(TaskEntry& t) {
  store_.PutTask(t.seq, t.state, t.spec_journaled ? nullptr : t.spec);
  t.spec_journaled = true;
}

void TaskRegistry::SendLocked(const std::shared_ptr<AgentLink>& link,
                              v1::CoordinatorMessage message) {
  store_.WhenDurable([link, m = std::move(message)]() mutable { link->Send(std::move(m)); });
}

uint64_t TaskRegistry::AppendEventLocked(v1::TaskEvent event,
                                         std::shared_ptr<const v1::TaskSpec> spec) {
  const v1::TaskEvent& stored = events_.Append(std::move(event), std::move(spec));
  store_.AppendEvent(stored);
  const uint64_t cursor = stored.cursor();
  store_.WhenDurable([log = &events_, cursor] { log->Publish(cursor); });
  if (metrics_) metrics_->events.Increment();
  return cursor;
}

uint64_t TaskRegistry::EmitLocked(v1::EventType type, const TaskEntry* t,
                                  const std::string& agent_id) {
  v1::TaskEvent e;
  e.set_type(type);
  *e.mutable_time() = ToProto(clock_.Now());
  e.set_agent_id(agent_id);
  std::shared_ptr<const v1::TaskSpec> spec;
  if (t != nullptr) {
    e.set_task_id(t->state.id);
    e.set_run_id(t->state.run_id);
    if (type != v1::EVENT_TYPE_TASK_DELETED) {
      *e.mutable_task() = SnapshotLocked(*t, /*with_spec=*/false);
      t->reported_reason = std::hash<std::string>()(e.task().waiting_reason());
      spec = t->shown;
    }
    if (type == v1::EVENT_TYPE_TASK_PROGRESS) {
      e.mutable_progress()->set_percent(t->state.progress);
      e.mutable_progress()->set_message(t->state.progress_message);
    }
  }
  return AppendEventLocked(std::move(e), std::move(spec));
}

void TaskRegistry::PublishLocked(std::vector<v1::TaskEvent> events) {
  for (v1::TaskEvent& e : events) AppendEventLocked(std::move(e));
}

absl::StatusOr<v1::Alert> TaskRegistry::ResolveAlert(const std::string& alert_id,
                                                     const std::string& by) {
  WriteLock lock(this);
  auto events = monitor_.Resolve(alert_id, by);
  if (!events.ok()) return events.status();
  v1::Alert alert = events->front().alert();
  PublishLocked(std::move(*events));
  return alert;
}

void TaskRegistry::ReportHealth(const v1::ServiceHealth& report) {
  WriteLock lock(this);
  PublishLocked(monitor_.OnHealthReport(report));
}

void TaskRegistry::SetMonitoring(bool running) {
  WriteLock lock(this);
  monitor_.SetRunning(running);
}

void TaskRegistry::RemoveLocked(const std::string& task_id) {
  auto it = tasks_.find(task_id);
  if (it == tasks_.end()) return;
  TaskEntry& t = *it->second;
  Dequeue(t);
  active_.erase(&t);
  run_deadlines_.Erase(t.seq);
  by_seq_.erase(t.seq);
  counts_.Remove(t.state, *t.spec);
  if (!t.state.idempotency_key.empty()) {
    idempotency_.erase(IdempotencyKey(t.state.owner, t.state.idempotency_key));
  }
  store_.DeleteTask(task_id);
  EmitLocked(v1::EVENT_TYPE_TASK_DELETED, &t, t.state.agent_id);
  if (t.run != nullptr) DetachTargetLocked(t);
  tasks_.erase(it);
}

// ---------------------------------------------------------------- client API

absl::StatusOr<v1::SubmitResponse> TaskRegistry::Submit(const v1::SubmitRequest& request,
                                                        const SubmitLimits& limits) {
  absl::StatusOr<v1::SubmitBatchResponse> out = SubmitAll({&request}, limits);
  if (!out.ok()) return out.status();
  v1::SubmitBatchResponse::Result result = std::move(*out->mutable_results(0));
  if (result.code() != 0) {
    return absl::Status(static_cast<absl::StatusCode>(result.code()), result.message());
  }
  return std::move(*result.mutable_response());
}

absl::StatusOr<v1::SubmitBatchResponse> TaskRegistry::SubmitBatch(
    const v1::SubmitBatchRequest& batch, const SubmitLimits& limits) {
  if (batch.requests_size() == 0 || batch.requests_size() > kMaxBatchSubmits) {
    return absl::InvalidArgumentError(absl::StrCat("requests: must hold 1 to ", kMaxBatchSubmits,
                                                   " submits, got ", batch.requests_size()));
  }
  std::vector<const v1::SubmitRequest*> requests;
  requests.reserve(static_cast<size_t>(batch.requests_size()));
  for (const v1::SubmitRequest& r : batch.requests()) requests.push_back(&r);
  return SubmitAll(requests, limits);
}

absl::Status TaskRegistry::Accepting() const {
  if (absl::Status s = store_.health(); !s.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "the store cannot write, so no new task is accepted until it recovers: ", s.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::SubmitBatchResponse> TaskRegistry::SubmitAll(
    const std::vector<const v1::SubmitRequest*>& requests, const SubmitLimits& limits) {
  TASKGRID_RETURN_IF_ERROR(Accepting());
  v1::SubmitBatchResponse out;
  std::vector<absl::Status> valid;
  for (const v1::SubmitRequest* request : requests) {
    absl::Status s = ValidateTaskSpec(request->spec());
    if (s.ok()) s = ValidateId("idempotency_key", request->idempotency_key(), false);
    valid.push_back(std::move(s));
    out.add_results();
  }
  WriteLock lock(this);
  std::vector<TaskEntry*> created(valid.size(), nullptr);
  for (size_t i = 0; i < requests.size(); ++i) {
    v1::SubmitBatchResponse::Result& result = *out.mutable_results(static_cast<int>(i));
    absl::StatusOr<TaskEntry*> t = valid[i].ok()
                                       ? SubmitLocked(*requests[i], limits, *result.mutable_response())
                                       : absl::StatusOr<TaskEntry*>(valid[i]);
    if (!t.ok()) {
      result.clear_response();
      result.set_code(static_cast<int>(t.status().code()));
      result.set_message(std::string(t.status().message()));
      continue;
    }
    created[i] = *t;
  }
  DispatchLocked();
  for (size_t i = 0; i < requests.size(); ++i) {
    TaskEntry* t = created[i];
    if (t == nullptr) continue;
    if (t->queued && t->state.status == v1::TASK_STATUS_PENDING) {
      TransitionLocked(*t, v1::TASK_STATUS_QUEUED, "");
    }
    *out.mutable_results(static_cast<int>(i))->mutable_response()->mutable_task() =
        SnapshotLocked(*t);
  }
  return out;
}

absl::StatusOr<TaskRegistry::TaskEntry*> TaskRegistry::SubmitLocked(
    const v1::SubmitRequest& request, const SubmitLimits& limits, v1::SubmitResponse& response) {
  if (!request.idempotency_key().empty()) {
    if (auto it = idempotency_.find(IdempotencyKey(limits.owner, request.idempotency_key()));
        it != idempotency_.end()) {
      response.set_existing(true);
      response.set_cursor(events_.last_cursor());
      return tasks_.at(it->second).get();
    }
  }
  const v1::TaskSpec& spec = request.spec();
  if (!spec.agent_id().empty() && agents_.Find(spec.agent_id()) == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("spec.agent_id: no agent \"", spec.agent_id(), "\" has ever connected"));
  }
  if (limits.max_running > 0) {
    auto it = unfinished_by_owner_.find(limits.owner);
    if (it != unfinished_by_owner_.end() && it->second >= limits.max_running) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "key ", limits.owner, " already has ", it->second,
          " unfinished tasks, its max_running; wait for one to finish"));
    }
  }
  TASKGRID_RETURN_IF_ERROR(CheckLimits(spec, limits));
  uint64_t cursor = 0;
  TaskEntry& t = NewTaskLocked(spec, limits, request.idempotency_key(), nullptr, "", cursor);
  response.set_cursor(cursor);
  Enqueue(t);
  return &t;
}

absl::Duration TaskRegistry::TimeoutOf(const v1::TaskSpec& spec,
                                       const SubmitLimits& limits) const {
  absl::Duration timeout =
      spec.has_timeout() ? FromProto(spec.timeout()) : options_.default_task_timeout;
  if (limits.max_runtime > absl::ZeroDuration()) timeout = std::min(timeout, limits.max_runtime);
  return timeout;
}

absl::Status TaskRegistry::CheckLimits(const v1::TaskSpec& spec, const SubmitLimits& limits) {
  if (limits.max_runtime > absl::ZeroDuration() && spec.has_timeout() &&
      FromProto(spec.timeout()) > limits.max_runtime) {
    return absl::PermissionDeniedError(absl::StrCat(
        "spec.timeout: ", absl::FormatDuration(FromProto(spec.timeout())), " exceeds key ",
        limits.owner, "'s max_runtime of ", absl::FormatDuration(limits.max_runtime)));
  }
  if (limits.max_output_bytes > 0 && spec.max_output_bytes() > limits.max_output_bytes) {
    return absl::PermissionDeniedError(absl::StrCat(
        "spec.max_output_bytes: ", spec.max_output_bytes(), " exceeds key ", limits.owner,
        "'s max_output of ", limits.max_output_bytes));
  }
  return absl::OkStatus();
}

TaskRegistry::TaskEntry& TaskRegistry::NewTaskLocked(const v1::TaskSpec& spec,
                                                     const SubmitLimits& limits,
                                                     const std::string& idempotency_key,
                                                     RunEntry* run, std::string id,
                                                     uint64_t& cursor) {
  const absl::Time now = clock_.Now();
  auto entry = std::make_unique<TaskEntry>();
  TaskEntry& t = *entry;
  t.out[0] = OutputBuffer(options_.output_cap_bytes);
  t.out[1] = OutputBuffer(options_.output_cap_bytes);
  t.seq = next_seq_++;
  t.timeout = TimeoutOf(spec, limits);
  t.kill_grace = spec.has_kill_grace() ? FromProto(spec.kill_grace()) : options_.default_kill_grace;
  t.queue_deadline = now + QueueWindow(spec, t.timeout);
  if (id.empty()) id = NewIdLocked();
  t.state.id = id;
  v1::TaskSpec full = spec;
  if (full.type().empty()) full.set_type(full.has_docker() ? "docker" : "shell");
  full.set_priority(PriorityOf(spec));
  *full.mutable_timeout() = ToProto(t.timeout);
  *full.mutable_kill_grace() = ToProto(t.kill_grace);
  if (limits.max_output_bytes > 0 && spec.max_output_bytes() == 0) {
    full.set_max_output_bytes(limits.max_output_bytes);
  }
  SetSpec(t, std::move(full));
  t.state.status = v1::TASK_STATUS_PENDING;
  t.state.created_at = now;
  t.state.updated_at = now;
  t.state.idempotency_key = idempotency_key;
  t.state.owner = limits.owner;
  if (!limits.owner.empty()) ++unfinished_by_owner_[limits.owner];
  if (!idempotency_key.empty()) idempotency_[IdempotencyKey(limits.owner, idempotency_key)] = id;
  if (run != nullptr) {
    // A target waits, held, until its run releases it.
    t.run = run;
    t.held = true;
    t.queue_deadline = absl::InfiniteFuture();
    t.state.run_id = run->run.id();
    t.state.status = v1::TASK_STATUS_QUEUED;
  }
  by_seq_[t.seq] = &t;
  counts_.Add(t.state, *t.spec);
  tasks_[id] = std::move(entry);
  if (metrics_) metrics_->tasks_submitted.Increment();
  PersistLocked(t);
  cursor = EmitLocked(v1::EVENT_TYPE_TASK_CREATED, &t, "");
  spdlog::debug("task_submitted task_id={} priority={}", id, PriorityName(PriorityOf(spec)));
  return t;
}

absl::StatusOr<v1::Task> TaskRegistry::Get(const std::string& task_id) {
  TASKGRID_RETURN_IF_ERROR(ValidateId("task_id", task_id, true));
  absl::MutexLock lock(&mu_);
  const TaskEntry* t = FindLocked(task_id);
  if (t == nullptr) return absl::NotFoundError(absl::StrCat("task_id: no task ", task_id));
  return SnapshotLocked(*t);
}

absl::StatusOr<v1::ListResponse> TaskRegistry::List(const v1::ListRequest& request) {
  TASKGRID_ASSIGN_OR_RETURN(const Page page, ParsePage(request.page_size(), request.page_token()));
  const bool has_after = request.has_created_after();
  const bool has_before = request.has_created_before();
  const absl::Time after_t = FromProto(request.created_after());
  const absl::Time before_t = FromProto(request.created_before());
  auto matches = [&](const TaskEntry& t) {
    const TaskState& task = t.state;
    const v1::TaskSpec& spec = *t.spec;
    if (request.status_size() > 0 && std::find(request.status().begin(), request.status().end(),
                                               task.status) == request.status().end()) {
      return false;
    }
    if (request.priority_size() > 0 &&
        std::find(request.priority().begin(), request.priority().end(), spec.priority()) ==
            request.priority().end()) {
      return false;
    }
    if (request.type_size() > 0 && std::find(request.type().begin(), request.type().end(),
                                             spec.type()) == request.type().end()) {
      return false;
    }
    for (const auto& tag : request.tags()) {
      if (std::find(spec.tags().begin(), spec.tags().end(), tag) ==
          spec.tags().end()) {
        return false;
      }
    }
    if (!request.agent_id().empty() && task.agent_id != request.agent_id() &&
        spec.agent_id() != request.agent_id()) {
      return false;
    }
    if (!SelectorMatches(request.selector(), spec.selector())) return false;
    if (!request.run_id().empty() && task.run_id != request.run_id()) return false;
    if (has_after && task.created_at < after_t) return false;
    if (has_before && task.created_at >= before_t) return false;
    return true;
  };
  // Filtered by status at most: the counts give the total and the scan ends
  // with the page, however many tasks are retained.
  const bool counted = request.priority_size() == 0 && request.type_size() == 0 &&
                       request.tags_size() == 0 && request.agent_id().empty() &&
                       request.selector().empty() && request.run_id().empty() && !has_after &&
                       !has_before;
  absl::MutexLock lock(&mu_);
  v1::ListResponse response;
  int64_t total = 0;
  if (counted) {
    const absl::flat_hash_set<int> statuses(request.status().begin(), request.status().end());
    if (statuses.empty()) total = counts_.total();
    for (int s : statuses) total += counts_.with_status(static_cast<v1::TaskStatus>(s));
  }
  bool more = false;
  uint64_t last_seq = 0;
  for (auto it = by_seq_.rbegin(); it != by_seq_.rend(); ++it) {
    if (counted && it->first >= page.before) {
      // Below the page's start by the index, not one by one.
      it = std::make_reverse_iterator(by_seq_.lower_bound(page.before));
      if (it == by_seq_.rend()) break;
    }
    if (!matches(*it->second)) continue;
    if (!counted) ++total;
    if (it->first >= page.before) continue;
    if (response.tasks_size() < page.size) {
      *response.add_tasks() = SnapshotLocked(*it->second);
      last_seq = it->first;
    } else {
      more = true;
      if (counted) break;
    }
  }
  if (more) response.set_next_page_token(EncodePageToken(last_seq));
  response.set_cursor(events_.last_cursor());  // Consistent: events append under mu_.
  response.set_total(static_cast<int32_t>(total));
  return response;
}

absl::StatusOr<v1::Task> TaskRegistry::Cancel(const std::string& task_id,
                                              const std::string& reason) {
  TASKGRID_RETURN_IF_ERROR(ValidateId("task_id", task_id, true));
  WriteLock lock(this);
  TaskEntry* t = FindLocked(task_id);
  if (t == nullptr) return absl::NotFoundError(absl::StrCat("task_id: no task ", task_id));
  if (IsFinal(t->state.status)) {
    return absl::FailedPreconditionError(
        absl::StrCat("task ", task_id, " is already ", StatusName(t->state.status)));
  }
  CancelLocked(*t, reason.empty() ? "cancelled by client" : reason);
  DispatchLocked();  // A run's target may have freed a place.
  return SnapshotLocked(*t);
}

void TaskRegistry::CancelLocked(TaskEntry& t, const std::string& why) {
  const bool on_agent =
      t.state.status == v1::TASK_STATUS_DISPATCHED || t.state.status == v1::TASK_STATUS_RUNNING;
  TransitionLocked(t, v1::TASK_STATUS_CANCELLED, why);
  if (on_agent) SendCancelLocked(t, why);
}

absl::Status TaskRegistry::Delete(const std::string& task_id) {
  TASKGRID_RETURN_IF_ERROR(ValidateId("task_id", task_id, true));
  WriteLock lock(this);
  TaskEntry* t = FindLocked(task_id);
  if (t == nullptr) return absl::NotFoundError(absl::StrCat("task_id: no task ", task_id));
  if (!IsFinal(t->state.status)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "task ", task_id, " is ", StatusName(t->state.status), "; cancel it before deleting"));
  }
  RemoveLocked(task_id);
  return absl::OkStatus();
}

v1::StatsResponse TaskRegistry::Stats() {
  absl::MutexLock lock(&mu_);
  return counts_.Stats();
}

absl::StatusOr<v1::GetOutputResponse> TaskRegistry::GetOutput(const v1::GetOutputRequest& request) {
  TASKGRID_RETURN_IF_ERROR(ValidateId("task_id", request.task_id(), true));
  if (request.stream() != v1::OUTPUT_STREAM_STDOUT &&
      request.stream() != v1::OUTPUT_STREAM_STDERR) {
    return absl::InvalidArgumentError(
        "stream: must be OUTPUT_STREAM_STDOUT or OUTPUT_STREAM_STDERR");
  }
  if (request.offset() < 0) return absl::InvalidArgumentError("offset: must not be negative");
  if (request.limit() < 0) return absl::InvalidArgumentError("limit: must not be negative");
  const int64_t limit =
      request.limit() == 0 ? kDefaultOutputRead : std::min(request.limit(), kMaxOutputRead);
  absl::MutexLock lock(&mu_);
  const TaskEntry* t = FindLocked(request.task_id());
  if (t == nullptr)
    return absl::NotFoundError(absl::StrCat("task_id: no task ", request.task_id()));
  const OutputBuffer& buf = t->out[StreamIndex(request.stream())];
  if (request.offset() > buf.total()) {
    return absl::OutOfRangeError(absl::StrCat(
        "offset: ", request.offset(), " is past the end of the stream (", buf.total(), ")"));
  }
  OutputBuffer::Slice slice = buf.Read(request.offset(), limit);
  v1::GetOutputResponse response;
  response.set_offset(slice.offset);
  response.set_data(std::move(slice.data));
  response.set_total_bytes(buf.total());
  response.set_dropped_bytes(buf.dropped());
  response.set_complete(IsFinal(t->state.status));
  return response;
}

v1::ListAgentsResponse TaskRegistry::ListAgents() {
  absl::MutexLock lock(&mu_);
  v1::ListAgentsResponse response;
  for (const auto& [id, a] : agents_.all()) {
    v1::Agent* out = response.add_agents();
    *out = a.info;
    out->set_running_tasks(static_cast<uint32_t>(a.assigned.size()));
    *out->mutable_reserved() = ReservedLocked(a);
    out->set_connected(a.link != nullptr);
    *out->mutable_last_heartbeat() = ToProto(a.last_seen);
  }
  return response;
}

absl::StatusOr<std::string> TaskRegistry::OwnerOf(absl::string_view field,
                                                  const std::string& id) {
  TASKGRID_RETURN_IF_ERROR(ValidateId(field, id, true));
  absl::MutexLock lock(&mu_);
  if (const TaskEntry* t = FindLocked(id); t != nullptr) return t->state.owner;
  if (auto it = runs_.find(id); it != runs_.end()) return it->second->run.owner();
  return absl::NotFoundError(absl::StrCat(field, ": no ", field == "run_id" ? "run " : "task ", id));
}

// ---------------------------------------------------------------- audit

void TaskRegistry::Audit(std::vector<v1::AuditEntry> entries) {
  WriteLock lock(this);
  for (v1::AuditEntry& e : entries) AuditLocked(std::move(e));
}

void TaskRegistry::AuditLocked(v1::AuditEntry entry) {
  store_.AppendAudit(audit_.Append(std::move(entry), clock_.Now()));
}

absl::StatusOr<v1::ListAuditResponse> TaskRegistry::ListAudit(const v1::ListAuditRequest& request) {
  absl::MutexLock lock(&mu_);
  return audit_.List(request);
}

}  // namespace taskgrid
