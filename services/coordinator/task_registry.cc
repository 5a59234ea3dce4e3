#include "services/coordinator/task_registry.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "services/common/agent_policy.h"
#include "services/common/auth.h"
#include "services/common/proto_time.h"
#include "services/common/status_util.h"
#include "services/coordinator/task_registry_util.h"
#include "services/coordinator/task_validation.h"

namespace taskgrid {

using placement::Verdict;
using registry::EncodePageToken;
using registry::FormatSelector;
using registry::IdempotencyKey;
using registry::kMaxPageSize;
using registry::Page;
using registry::ParsePage;
using registry::kRedacted;
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
      rng_(std::random_device{}()) {}

void TaskRegistry::Recover(StoredState state) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_.Now();
  for (v1::Agent& info : state.agents) {
    AgentEntry& a = agents_[info.agent_id()];
    if (HasPolicy(info.policy())) ++policies_;
    a.info = std::move(info);
    a.last_seen = now;
    a.offline_since = now;
    agent_checks_.Set(a.info.agent_id(), now + options_.retention);
  }
  // Entries are built on every core (a million tasks take seconds), then
  // indexed here in submission order.
  std::vector<std::unique_ptr<TaskEntry>> entries(state.tasks.size());
  const size_t workers = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> builders;
  for (size_t w = 0; w < workers; ++w) {
    builders.emplace_back([&, w] {
      for (size_t i = w; i < entries.size(); i += workers) {
        auto& t = *(entries[i] = std::make_unique<TaskEntry>());
        t.task = std::move(state.tasks[i].task);
        t.seq = state.tasks[i].seq;
        t.out[0] = OutputBuffer(options_.output_cap_bytes);
        t.out[1] = OutputBuffer(options_.output_cap_bytes);
        const v1::TaskSpec& spec = t.task.spec();
        t.created = FromProto(t.task.created_at());
        t.timeout = FromProto(spec.timeout());
        t.kill_grace = FromProto(spec.kill_grace());
        if (t.task.has_retry_at()) t.retry_at = FromProto(t.task.retry_at());
        t.queue_deadline = std::max(t.created, t.retry_at) + QueueWindow(spec, t.timeout);
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
    if (!t.task.idempotency_key().empty()) {
      idempotency_[IdempotencyKey(t.task.owner(), t.task.idempotency_key())] = t.task.id();
    }
    by_seq_.emplace_hint(by_seq_.end(), t.seq, &t);
    switch (t.task.status()) {
      case v1::TASK_STATUS_PENDING:
      case v1::TASK_STATUS_QUEUED:
        t.task.set_status(v1::TASK_STATUS_QUEUED);
        // A run's targets wait for their run to release them again.
        if (t.task.run_id().empty()) Enqueue(t);
        ++queued;
        break;
      case v1::TASK_STATUS_DISPATCHED:
      case v1::TASK_STATUS_RUNNING: {
        // Its agent gets a heartbeat TTL from now to come back and report it.
        t.run_deadline = FromProto(t.task.dispatched_at()) + t.timeout;
        active_.insert(&t);
        run_deadlines_.Set(t.seq, t.run_deadline);
        AgentEntry& a = agents_[t.task.agent_id()];
        a.info.set_agent_id(t.task.agent_id());
        a.assigned.insert(t.task.id());
        a.online = true;
        a.last_seen = now;
        agent_checks_.Set(t.task.agent_id(), now + options_.heartbeat_ttl);
        ++active;
        break;
      }
      default:
        finished_order_.emplace_back(FromProto(t.task.finished_at()), t.seq);
    }
    if (!IsFinal(t.task.status()) && !t.task.owner().empty()) {
      ++unfinished_by_owner_[t.task.owner()];
    }
    counts_.Add(t.task);
    tasks_.emplace(t.task.id(), std::move(entry));
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
  }
  // Log events come back with their bytes from the restored output. When the
  // output no longer holds them (the capped middle, an earlier attempt) the
  // event stays with no data: its cursor is kept and the next event's offset
  // shows the gap.
  const uint64_t last_cursor = state.events.empty() ? 0 : state.events.back().event.cursor();
  std::vector<v1::TaskEvent> events;
  events.reserve(state.events.size());
  for (StoredState::Event& stored : state.events) {
    v1::TaskEvent& e = stored.event;
    if (!events.empty() && e.cursor() != events.back().cursor() + 1) events.clear();
    if (e.type() == v1::EVENT_TYPE_TASK_LOG) {
      const TaskEntry* t = FindLocked(e.task_id());
      if (t != nullptr && t->task.attempt() == e.attempt() &&
          e.output().offset() + stored.log_bytes <=
              t->out[StreamIndex(e.output().stream())].total()) {
        OutputBuffer::Slice slice =
            t->out[StreamIndex(e.output().stream())].Read(e.output().offset(), stored.log_bytes);
        if (slice.offset == e.output().offset() &&
            static_cast<int64_t>(slice.data.size()) == stored.log_bytes) {
          e.mutable_output()->set_data(std::move(slice.data));
        }
      }
    }
    events.push_back(std::move(e));
  }
  for (v1::AuditEntry& entry : state.audit) {
    next_audit_seq_ = std::max(next_audit_seq_, entry.seq() + 1);
    audit_.push_back(std::move(entry));
    if (audit_.size() > static_cast<size_t>(kAuditLoaded)) audit_.pop_front();
  }
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
  if (t != nullptr && t->task.agent_id() == agent.info.agent_id() && t->task.attempt() == attempt) {
    return t;
  }
  if (metrics_) metrics_->stale_messages.Increment();
  spdlog::debug("agent_message_rejected agent_id={} task_id={} attempt={}", agent.info.agent_id(),
                task_id, attempt);
  return nullptr;
}

v1::Task TaskRegistry::SnapshotLocked(const TaskEntry& t) const {
  v1::Task task = t.task;
  for (auto& [name, value] : *task.mutable_spec()->mutable_secret_env()) value = kRedacted;
  task.mutable_stdout()->set_total_bytes(t.out[0].total());
  task.mutable_stdout()->set_dropped_bytes(t.out[0].dropped());
  task.mutable_stderr()->set_total_bytes(t.out[1].total());
  task.mutable_stderr()->set_dropped_bytes(t.out[1].dropped());
  if (t.task.status() == v1::TASK_STATUS_QUEUED || t.task.status() == v1::TASK_STATUS_PENDING) {
    task.set_waiting_reason(WaitingReasonLocked(t));
  }
  return task;
}

void TaskRegistry::PersistLocked(const TaskEntry& t) { store_.PutTask(t.seq, t.task); }

void TaskRegistry::SendLocked(const std::shared_ptr<AgentLink>& link,
                              v1::CoordinatorMessage message) {
  store_.WhenDurable([link, m = std::move(message)]() mutable { link->Send(std::move(m)); });
}

uint64_t TaskRegistry::AppendEventLocked(v1::TaskEvent event) {
  const v1::TaskEvent& stored = events_.Append(std::move(event));
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
  if (t != nullptr) {
    e.set_task_id(t->task.id());
    e.set_run_id(t->task.run_id());
    if (type != v1::EVENT_TYPE_TASK_DELETED) {
      *e.mutable_task() = SnapshotLocked(*t);
      t->reported_reason = std::hash<std::string>()(e.task().waiting_reason());
      // Stdin can be large and is not news to anyone watching.
      if (e.task().spec().has_shell())
        e.mutable_task()->mutable_spec()->mutable_shell()->clear_stdin();
    }
    if (type == v1::EVENT_TYPE_TASK_PROGRESS) {
      e.mutable_progress()->set_percent(t->task.progress());
      e.mutable_progress()->set_message(t->task.progress_message());
    }
  }
  return AppendEventLocked(std::move(e));
}

void TaskRegistry::PublishLocked(std::vector<v1::TaskEvent> events) {
  for (v1::TaskEvent& e : events) AppendEventLocked(std::move(e));
}

absl::StatusOr<v1::Alert> TaskRegistry::ResolveAlert(const std::string& alert_id,
                                                     const std::string& by) {
  absl::MutexLock lock(&mu_);
  auto events = monitor_.Resolve(alert_id, by);
  if (!events.ok()) return events.status();
  v1::Alert alert = events->front().alert();
  PublishLocked(std::move(*events));
  return alert;
}

void TaskRegistry::ReportHealth(const v1::ServiceHealth& report) {
  absl::MutexLock lock(&mu_);
  PublishLocked(monitor_.OnHealthReport(report));
}

void TaskRegistry::SetMonitoring(bool running) {
  absl::MutexLock lock(&mu_);
  monitor_.SetRunning(running);
}

void TaskRegistry::Enqueue(TaskEntry& t) {
  queue_.emplace(QueueKey{-PriorityOf(t.task.spec()), t.seq}, &t);
  t.queued = true;
  queue_deadlines_.Set(t.seq, t.queue_deadline);
  if (t.retry_at > clock_.Now()) retries_.Set(t.seq, t.retry_at);
  dispatch_wanted_ = true;
  ++queued_by_priority_[PriorityOf(t.task.spec())];
  if (metrics_) metrics_->queue_depth(PriorityOf(t.task.spec())).Increment();
}

void TaskRegistry::Dequeue(TaskEntry& t) {
  if (!t.queued) return;
  queue_.erase(QueueKey{-PriorityOf(t.task.spec()), t.seq});
  t.queued = false;
  queue_deadlines_.Erase(t.seq);
  retries_.Erase(t.seq);
  --queued_by_priority_[PriorityOf(t.task.spec())];
  if (metrics_) metrics_->queue_depth(PriorityOf(t.task.spec())).Decrement();
}

void TaskRegistry::TransitionLocked(TaskEntry& t, v1::TaskStatus status,
                                    const std::string& reason) {
  const absl::Time now = clock_.Now();
  const v1::TaskStatus from = t.task.status();
  t.task.set_status(status);
  *t.task.mutable_updated_at() = ToProto(now);
  if (status == v1::TASK_STATUS_DISPATCHED || status == v1::TASK_STATUS_RUNNING) {
    active_.insert(&t);
    run_deadlines_.Set(t.seq, t.run_deadline);
  } else {
    active_.erase(&t);
    run_deadlines_.Erase(t.seq);
  }
  if (IsFinal(status)) {
    // Nothing will run it again: the store need not keep its secrets.
    t.task.mutable_spec()->clear_secret_env();
    if (!IsFinal(from) && !t.task.owner().empty()) {
      auto it = unfinished_by_owner_.find(t.task.owner());
      if (it != unfinished_by_owner_.end() && --it->second <= 0) unfinished_by_owner_.erase(it);
    }
    Dequeue(t);
    t.task.set_status_reason(reason);
    t.task.set_pid(0);
    *t.task.mutable_finished_at() = ToProto(now);
    finished_order_.emplace_back(now, t.seq);
    monitor_.OnTaskFinished(
        t.task.agent_id(), status,
        t.task.has_started_at() ? now - FromProto(t.task.started_at()) : absl::ZeroDuration());
    if (metrics_) {
      metrics_->finished(status).Increment();
      if (t.task.has_started_at()) {
        metrics_->task_duration_seconds.Observe(
            absl::ToDoubleSeconds(now - FromProto(t.task.started_at())));
      }
    }
    spdlog::info("task_finished task_id={} status={} agent_id={} reason=\"{}\"", t.task.id(),
                 StatusName(status), t.task.agent_id(), reason);
  } else {
    spdlog::debug("task_status task_id={} from={} to={}", t.task.id(), StatusName(from),
                  StatusName(status));
  }
  counts_.Changed(from, t.task);
  if (metrics_) metrics_->running_tasks.Set(static_cast<double>(active_.size()));
  PersistLocked(t);
  EmitLocked(v1::EVENT_TYPE_TASK_STATUS, &t, t.task.agent_id());
  if (status == v1::TASK_STATUS_CANCELLED) {
    EmitLocked(v1::EVENT_TYPE_TASK_CANCELLED, &t, t.task.agent_id());
  }
  if (t.run != nullptr) OnTargetChangedLocked(t, from);
}

void TaskRegistry::EndAttemptLocked(TaskEntry& t, v1::TaskStatus status,
                                    const std::string& reason) {
  const v1::RetryPolicy& retry = t.task.spec().retry();
  // A stopped run starts nothing again, retries included.
  const bool retryable =
      (status == v1::TASK_STATUS_LOST || (status == v1::TASK_STATUS_FAILED && retry.retry_failed())) &&
      (t.run == nullptr || !t.run->stopped());
  // Attempts that never reached an agent are no tries of the command.
  const uint32_t tries = t.task.attempt() - std::min(t.task.attempt(), t.task.undelivered());
  if (!retryable || tries >= retry.max_attempts()) {
    TransitionLocked(t, status, reason);
    return;
  }
  const absl::Duration cap =
      retry.has_max_backoff() ? FromProto(retry.max_backoff()) : absl::Minutes(5);
  absl::Duration backoff = retry.has_backoff() ? FromProto(retry.backoff()) : absl::Seconds(1);
  for (uint32_t i = 1; i < tries && backoff < cap; ++i) backoff *= 2;
  backoff = std::min(backoff, cap);
  const uint32_t attempt = t.task.attempt();
  spdlog::info("task_retry task_id={} attempt={} outcome={} backoff={} reason=\"{}\"", t.task.id(),
               attempt, StatusName(status), absl::FormatDuration(backoff), reason);
  if (metrics_) metrics_->retries.Increment();
  RequeueLocked(t, clock_.Now() + backoff,
                absl::StrCat("attempt ", attempt, " ", StatusName(status), ": ", reason));
}

void TaskRegistry::RequeueUndeliveredLocked(TaskEntry& t) {
  if (metrics_) metrics_->undelivered.Increment();
  if (t.run != nullptr && t.run->stopped()) {
    return CancelLocked(t, absl::StrCat("not started: the run ", t.run->run.status_reason()));
  }
  const std::string never = absl::StrCat("attempt ", t.task.attempt(), " never reached agent ",
                                         t.task.agent_id());
  // An Assign that keeps failing on its way (larger than the agent takes,
  // say) must not go round for ever.
  if (t.task.undelivered() + 1 >= kMaxUndelivered) {
    return TransitionLocked(t, v1::TASK_STATUS_LOST,
                            absl::StrCat(never, ": gave up after ", kMaxUndelivered,
                                         " attempts that never arrived"));
  }
  spdlog::info("task_requeued task_id={} attempt={} agent_id={} reason=undelivered", t.task.id(),
               t.task.attempt(), t.task.agent_id());
  t.task.set_undelivered(t.task.undelivered() + 1);
  RequeueLocked(t, clock_.Now(), absl::StrCat(never, ": queued again"));
}

void TaskRegistry::RequeueLocked(TaskEntry& t, absl::Time eligible_at, std::string reason) {
  t.retry_at = eligible_at;
  t.queue_deadline = t.retry_at + QueueWindow(t.task.spec(), t.timeout);
  *t.task.mutable_retry_at() = ToProto(t.retry_at);
  t.task.set_status_reason(std::move(reason));
  // The next attempt starts afresh; its agent reports output from offset 0.
  t.task.clear_agent_id();
  t.task.set_pid(0);
  t.task.clear_dispatched_at();
  t.task.clear_started_at();
  t.task.clear_exit();
  t.task.set_progress(0);
  t.task.clear_progress_message();
  for (v1::OutputStream stream : {v1::OUTPUT_STREAM_STDOUT, v1::OUTPUT_STREAM_STDERR}) {
    t.out[StreamIndex(stream)] = OutputBuffer(options_.output_cap_bytes);
    store_.TrimOutput(t.task.id(), stream, 0, INT64_MAX);
  }
  Enqueue(t);
  TransitionLocked(t, v1::TASK_STATUS_QUEUED, "");
}

void TaskRegistry::SendCancelLocked(TaskEntry& t, const std::string& reason) {
  auto it = agents_.find(t.task.agent_id());
  if (it == agents_.end() || it->second.link == nullptr) return;  // Reconciled on reconnect.
  v1::CoordinatorMessage m;
  v1::Cancel* c = m.mutable_cancel();
  c->set_task_id(t.task.id());
  c->set_attempt(t.task.attempt());
  c->set_reason(reason);
  *c->mutable_grace() = ToProto(t.kill_grace);
  SendLocked(it->second.link, std::move(m));
}

placement::Verdict TaskRegistry::JudgeLocked(const v1::TaskSpec& spec,
                                             const AgentEntry& a) const {
  return placement::Judge({a.info, a.link != nullptr && a.online, a.assigned.size()}, spec);
}

size_t TaskRegistry::QueuedAheadLocked(const TaskEntry& t) const {
  size_t ahead = 0;
  for (int p = PriorityOf(t.task.spec()) + 1; p < v1::Priority_ARRAYSIZE; ++p) {
    ahead += queued_by_priority_[p];
  }
  return ahead;
}

bool TaskRegistry::ConnectedLocked(const std::string& agent_id) const {
  auto it = connected_.find(agent_id);
  return it != connected_.end() && it->second->link != nullptr;
}

std::string TaskRegistry::WaitingReasonLocked(const TaskEntry& t) const {
  const v1::TaskSpec& spec = t.task.spec();
  if (t.held) return HeldReasonLocked(t);
  if (t.retry_at > clock_.Now()) {
    // The time, not the time left: the reason changes only when the state does.
    return absl::StrCat("waiting until ", absl::FormatTime("%H:%M:%E3S UTC", t.retry_at,
                                                           absl::UTCTimeZone()),
                        " before attempt ", t.task.attempt() + 1, " (", t.task.status_reason(),
                        ")");
  }
  const size_t ahead = QueuedAheadLocked(t);
  const std::string behind = ahead == 0 ? "" : "; queued tasks of higher priority go first";
  if (!spec.agent_id().empty()) {
    auto it = agents_.find(spec.agent_id());
    if (it == agents_.end()) return absl::StrCat("agent ", spec.agent_id(), " is not registered");
    const AgentEntry& a = it->second;
    const std::string agent = absl::StrCat("agent ", spec.agent_id());
    switch (JudgeLocked(spec, a)) {
      case Verdict::kNoMatch:
        return absl::StrCat(agent, " does not match ", FormatSelector(spec.selector()));
      case Verdict::kNoContainers:
      case Verdict::kPolicy:
        return absl::StrCat(agent, " ", placement::Refusal(a.info, spec));
      case Verdict::kOffline:
        return absl::StrCat(agent, " is not connected");
      default:
        return absl::StrCat(agent, " is busy (", a.assigned.size(), " of ", a.info.slots(),
                            " slots in use)", behind);
    }
  }
  size_t matching = agents_.size(), connected = connected_.size(), refusing = 0;
  std::string refusal;
  // Any agent matches an empty selector: no need to look, unless policies
  // may refuse.
  if (!spec.selector().empty() || spec.has_docker() || policies_ > 0) {
    matching = connected = 0;
    for (const auto& [id, a] : agents_) {
      switch (JudgeLocked(spec, a)) {
        case Verdict::kNotPinned:
        case Verdict::kNoMatch:
        case Verdict::kNoContainers:
          break;
        case Verdict::kPolicy:
          ++refusing;
          refusal = absl::StrCat(id, " ", PolicyRefusal(a.info.policy(), spec));
          break;
        case Verdict::kOffline:
          ++matching;
          break;
        case Verdict::kBusy:
        case Verdict::kFits:
          ++matching;
          ++connected;
          break;
      }
    }
  }
  if (matching == 0 && refusing > 0) {
    return absl::StrCat("every agent", spec.selector().empty() ? "" : " matching ",
                        FormatSelector(spec.selector()),
                        " refuses it by its operator's policy (", refusal, ")");
  }
  const std::string matching_what =
      spec.selector().empty() ? "" : absl::StrCat(" matching ", FormatSelector(spec.selector()));
  const bool docker = spec.has_docker();
  if (matching == 0) {
    return absl::StrCat("no agent", matching_what,
                        docker ? " that runs containers (docker=true)" : "", " has registered");
  }
  if (connected == 0) {
    return absl::StrCat(matching, matching == 1 ? " agent" : " agents", matching_what,
                        docker ? " that run containers (docker=true)" : "",
                        matching == 1 ? " is" : " are", " registered but offline");
  }
  return absl::StrCat("all ", connected, " connected agents", matching_what,
                      docker ? " that run containers (docker=true)" : "",
                      " are busy (every slot in use)", behind);
}

void TaskRegistry::DispatchLocked() {
  DispatchQueueLocked();
  FlushRunsLocked();
}

void TaskRegistry::DispatchQueueLocked() {
  dispatch_wanted_ = false;
  if (queue_.empty()) return;
  const absl::Time now = clock_.Now();
  size_t free_slots = 0;
  for (const auto& [id, a] : connected_) {
    if (a->assigned.size() < a->info.slots()) {
      free_slots += a->info.slots() - a->assigned.size();
      if (free_slots >= queue_.size()) break;  // Enough to know; a fleet is large.
    }
  }
  for (auto it = queue_.begin(); it != queue_.end() && free_slots > 0;) {
    TaskEntry& t = *it->second;
    if (t.retry_at > now) {
      ++it;
      continue;
    }
    AgentEntry* best = nullptr;
    if (const std::string& pinned = t.task.spec().agent_id(); !pinned.empty()) {
      // One agent can take it: no need to look at the fleet (a run's targets).
      auto a = connected_.find(pinned);
      if (a != connected_.end() && JudgeLocked(t.task.spec(), *a->second) == Verdict::kFits) {
        best = a->second;
      }
    } else {
      double best_load = 2;
      for (auto& [id, a] : connected_) {
        // Full agents first: most of a busy fleet, and the cheapest test.
        if (a->assigned.size() >= a->info.slots() ||
            JudgeLocked(t.task.spec(), *a) != Verdict::kFits) {
          continue;
        }
        const double load = static_cast<double>(a->assigned.size()) / a->info.slots();
        if (load < best_load) best = a, best_load = load;
        if (load == 0) break;  // None can be less loaded.
      }
    }
    ++it;
    if (best == nullptr) continue;
    Dequeue(t);
    --free_slots;
    best->assigned.insert(t.task.id());
    t.task.set_agent_id(best->info.agent_id());
    t.task.set_attempt(t.task.attempt() + 1);
    t.task.clear_waiting_reason();
    t.task.clear_retry_at();
    *t.task.mutable_dispatched_at() = ToProto(now);
    t.run_deadline = now + t.timeout;
    if (metrics_)
      metrics_->dispatch_latency_seconds.Observe(absl::ToDoubleSeconds(now - t.created));
    v1::CoordinatorMessage m;
    v1::Assign* assign = m.mutable_assign();
    assign->set_task_id(t.task.id());
    assign->set_attempt(t.task.attempt());
    *assign->mutable_spec() = t.task.spec();
    *assign->mutable_deadline() = ToProto(t.run_deadline);
    // Journaled first: the agent never runs an attempt the store may forget.
    TransitionLocked(t, v1::TASK_STATUS_DISPATCHED, "");
    SendLocked(best->link, std::move(m));
  }
}

void TaskRegistry::RemoveLocked(const std::string& task_id) {
  auto it = tasks_.find(task_id);
  if (it == tasks_.end()) return;
  TaskEntry& t = *it->second;
  Dequeue(t);
  active_.erase(&t);
  run_deadlines_.Erase(t.seq);
  by_seq_.erase(t.seq);
  counts_.Remove(t.task);
  if (!t.task.idempotency_key().empty()) {
    idempotency_.erase(IdempotencyKey(t.task.owner(), t.task.idempotency_key()));
  }
  store_.DeleteTask(task_id);
  EmitLocked(v1::EVENT_TYPE_TASK_DELETED, &t, t.task.agent_id());
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
  absl::MutexLock lock(&mu_);
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
    if (t->queued && t->task.status() == v1::TASK_STATUS_PENDING) {
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
  if (!spec.agent_id().empty() && !agents_.contains(spec.agent_id())) {
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
  t.created = now;
  t.timeout = TimeoutOf(spec, limits);
  t.kill_grace = spec.has_kill_grace() ? FromProto(spec.kill_grace()) : options_.default_kill_grace;
  t.queue_deadline = now + QueueWindow(spec, t.timeout);
  if (id.empty()) id = NewIdLocked();
  t.task.set_id(id);
  *t.task.mutable_spec() = spec;
  if (t.task.spec().type().empty()) {
    t.task.mutable_spec()->set_type(t.task.spec().has_docker() ? "docker" : "shell");
  }
  t.task.mutable_spec()->set_priority(PriorityOf(spec));
  *t.task.mutable_spec()->mutable_timeout() = ToProto(t.timeout);
  *t.task.mutable_spec()->mutable_kill_grace() = ToProto(t.kill_grace);
  t.task.set_status(v1::TASK_STATUS_PENDING);
  *t.task.mutable_created_at() = ToProto(now);
  *t.task.mutable_updated_at() = ToProto(now);
  t.task.set_idempotency_key(idempotency_key);
  if (limits.max_output_bytes > 0 && spec.max_output_bytes() == 0) {
    t.task.mutable_spec()->set_max_output_bytes(limits.max_output_bytes);
  }
  t.task.set_owner(limits.owner);
  if (!limits.owner.empty()) ++unfinished_by_owner_[limits.owner];
  if (!idempotency_key.empty()) idempotency_[IdempotencyKey(limits.owner, idempotency_key)] = id;
  if (run != nullptr) {
    // A target waits, held, until its run releases it.
    t.run = run;
    t.held = true;
    t.queue_deadline = absl::InfiniteFuture();
    t.task.set_run_id(run->run.id());
    t.task.set_status(v1::TASK_STATUS_QUEUED);
  }
  by_seq_[t.seq] = &t;
  counts_.Add(t.task);
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
    const v1::Task& task = t.task;
    if (request.status_size() > 0 && std::find(request.status().begin(), request.status().end(),
                                               task.status()) == request.status().end()) {
      return false;
    }
    if (request.priority_size() > 0 &&
        std::find(request.priority().begin(), request.priority().end(), task.spec().priority()) ==
            request.priority().end()) {
      return false;
    }
    if (request.type_size() > 0 && std::find(request.type().begin(), request.type().end(),
                                             task.spec().type()) == request.type().end()) {
      return false;
    }
    for (const auto& tag : request.tags()) {
      if (std::find(task.spec().tags().begin(), task.spec().tags().end(), tag) ==
          task.spec().tags().end()) {
        return false;
      }
    }
    if (!request.agent_id().empty() && task.agent_id() != request.agent_id() &&
        task.spec().agent_id() != request.agent_id()) {
      return false;
    }
    if (!SelectorMatches(request.selector(), task.spec().selector())) return false;
    if (!request.run_id().empty() && task.run_id() != request.run_id()) return false;
    if (has_after && t.created < after_t) return false;
    if (has_before && t.created >= before_t) return false;
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
  absl::MutexLock lock(&mu_);
  TaskEntry* t = FindLocked(task_id);
  if (t == nullptr) return absl::NotFoundError(absl::StrCat("task_id: no task ", task_id));
  if (IsFinal(t->task.status())) {
    return absl::FailedPreconditionError(
        absl::StrCat("task ", task_id, " is already ", StatusName(t->task.status())));
  }
  CancelLocked(*t, reason.empty() ? "cancelled by client" : reason);
  DispatchLocked();  // A run's target may have freed a place.
  return SnapshotLocked(*t);
}

void TaskRegistry::CancelLocked(TaskEntry& t, const std::string& why) {
  const bool on_agent =
      t.task.status() == v1::TASK_STATUS_DISPATCHED || t.task.status() == v1::TASK_STATUS_RUNNING;
  TransitionLocked(t, v1::TASK_STATUS_CANCELLED, why);
  if (on_agent) SendCancelLocked(t, why);
}

absl::Status TaskRegistry::Delete(const std::string& task_id) {
  TASKGRID_RETURN_IF_ERROR(ValidateId("task_id", task_id, true));
  absl::MutexLock lock(&mu_);
  TaskEntry* t = FindLocked(task_id);
  if (t == nullptr) return absl::NotFoundError(absl::StrCat("task_id: no task ", task_id));
  if (!IsFinal(t->task.status())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "task ", task_id, " is ", StatusName(t->task.status()), "; cancel it before deleting"));
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
  response.set_complete(IsFinal(t->task.status()));
  return response;
}

v1::ListAgentsResponse TaskRegistry::ListAgents() {
  absl::MutexLock lock(&mu_);
  v1::ListAgentsResponse response;
  for (const auto& [id, a] : agents_) {
    v1::Agent* out = response.add_agents();
    *out = a.info;
    out->set_running_tasks(static_cast<uint32_t>(a.assigned.size()));
    out->set_connected(a.link != nullptr);
    *out->mutable_last_heartbeat() = ToProto(a.last_seen);
  }
  return response;
}

absl::StatusOr<std::string> TaskRegistry::OwnerOf(absl::string_view field,
                                                  const std::string& id) {
  TASKGRID_RETURN_IF_ERROR(ValidateId(field, id, true));
  absl::MutexLock lock(&mu_);
  if (const TaskEntry* t = FindLocked(id); t != nullptr) return t->task.owner();
  if (auto it = runs_.find(id); it != runs_.end()) return it->second->run.owner();
  return absl::NotFoundError(absl::StrCat(field, ": no ", field == "run_id" ? "run " : "task ", id));
}

// ---------------------------------------------------------------- audit

v1::AuditEntry NewAuditEntry(absl::string_view actor, absl::string_view action,
                             absl::string_view target, absl::string_view peer,
                             const absl::Status& outcome) {
  // Callers refused before they proved anything still choose some of these
  // fields: bounded, so the log holds what happened, not what they sent.
  constexpr size_t kMaxField = 256;
  auto bounded = [](absl::string_view s) { return std::string(s.substr(0, kMaxField)); };
  v1::AuditEntry e;
  e.set_actor(bounded(actor));
  e.set_action(bounded(action));
  e.set_target(bounded(target));
  e.set_peer(bounded(peer));
  e.set_outcome(outcome.ok() ? "ok" : absl::StatusCodeToString(outcome.code()));
  e.set_detail(bounded(outcome.message()));
  return e;
}

void TaskRegistry::Audit(v1::AuditEntry entry) {
  absl::MutexLock lock(&mu_);
  AuditLocked(std::move(entry));
}

void TaskRegistry::AuditLocked(v1::AuditEntry entry) {
  entry.set_seq(next_audit_seq_++);
  if (!entry.has_time()) *entry.mutable_time() = ToProto(clock_.Now());
  store_.AppendAudit(entry);
  audit_.push_back(std::move(entry));
  if (audit_.size() > static_cast<size_t>(kAuditLoaded)) audit_.pop_front();
}

absl::StatusOr<v1::ListAuditResponse> TaskRegistry::ListAudit(const v1::ListAuditRequest& request) {
  if (request.limit() < 0 || request.limit() > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit: must be 0 to ", kMaxPageSize, ", got ", request.limit()));
  }
  const size_t limit = request.limit() == 0 ? kMaxPageSize : static_cast<size_t>(request.limit());
  const absl::Time since =
      request.has_since() ? FromProto(request.since()) : absl::InfinitePast();
  absl::MutexLock lock(&mu_);
  v1::ListAuditResponse response;
  auto it = std::lower_bound(
      audit_.begin(), audit_.end(), request.after_seq() + 1,
      [](const v1::AuditEntry& e, uint64_t seq) { return e.seq() < seq; });
  for (; it != audit_.end(); ++it) {
    if (!request.actor().empty() && it->actor() != request.actor()) continue;
    if (!request.action().empty() && it->action() != request.action()) continue;
    if (FromProto(it->time()) < since) continue;
    if (static_cast<size_t>(response.entries_size()) == limit) {
      response.set_next_after_seq(response.entries().rbegin()->seq());
      break;
    }
    *response.add_entries() = *it;
  }
  return response;
}

// ---------------------------------------------------------------- agent API

absl::Status TaskRegistry::AgentConnected(const v1::Hello& hello, std::shared_ptr<AgentLink> link,
                                          const std::string& peer, const AgentToken* token) {
  TASKGRID_RETURN_IF_ERROR(ValidateId("hello.agent_id", hello.agent_id(), true));
  if (hello.slots() == 0 || hello.slots() > 4096) {
    return absl::InvalidArgumentError("hello.slots: must be 1 to 4096");
  }
  // Only a fingerprint is kept (and listed): the instance id itself proves
  // that a hello comes from the process that holds it.
  const std::string instance =
      hello.instance_id().empty() ? "" : Sha256Hex(hello.instance_id()).substr(0, 16);
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_.Now();
  AgentEntry& a = agents_[hello.agent_id()];
  const bool same_process = !instance.empty() && a.info.instance() == instance;
  if (a.link != nullptr) {
    if (!same_process) {
      return absl::AlreadyExistsError(absl::StrCat(
          "agent_id ", hello.agent_id(),
          " is connected (another process holds that id); a second agent with it is refused"));
    }
    a.link->Close(absl::AbortedError("replaced by a newer connection of the same agent process"));
  }
  a.link = std::move(link);
  a.online = true;
  connected_[hello.agent_id()] = &a;
  a.last_seen = now;
  agent_checks_.Set(hello.agent_id(), now + options_.heartbeat_ttl);
  a.info.set_agent_id(hello.agent_id());
  *a.info.mutable_labels() = hello.labels();
  a.info.set_slots(hello.slots());
  a.info.set_version(hello.version());
  a.info.set_hostname(hello.hostname());
  policies_ += (HasPolicy(hello.policy()) ? 1 : 0) - (HasPolicy(a.info.policy()) ? 1 : 0);
  *a.info.mutable_policy() = hello.policy();
  a.info.set_instance(instance);
  a.info.set_token_name(token != nullptr ? token->name : "");
  a.token_sha256 = token != nullptr ? token->sha256 : "";
  *a.info.mutable_connected_since() = ToProto(now);
  AuditLocked(NewAuditEntry("agent:" + hello.agent_id(), "agent.connect", hello.agent_id(), peer,
                            absl::OkStatus()));
  if (metrics_) metrics_->agent_connects.Increment();

  // Reconcile: keep what both sides agree is running; kill what the agent
  // holds that is final or unknown here; what only we think runs is lost.
  v1::CoordinatorMessage welcome;
  v1::Welcome* w = welcome.mutable_welcome();
  *w->mutable_heartbeat_interval() = ToProto(options_.heartbeat_interval);
  absl::flat_hash_set<std::string> held;
  for (const v1::HeldTask& h : hello.held_tasks()) {
    v1::Resume* r = w->add_resume();
    r->set_task_id(h.task_id());
    r->set_attempt(h.attempt());
    TaskEntry* t = FindLocked(h.task_id());
    const bool ours =
        t != nullptr && t->task.agent_id() == hello.agent_id() && t->task.attempt() == h.attempt();
    // A container found after the agent restarted has lost its redactor's
    // state: a task with secrets is not resumed from it.
    if (!ours || (IsFinal(t->task.status()) && !h.finished()) ||
        (h.adopted() && !t->task.spec().secret_env().empty())) {
      r->set_keep(false);
      continue;
    }
    r->set_keep(true);
    r->set_stdout_offset(t->out[0].total());
    r->set_stderr_offset(t->out[1].total());
    held.insert(h.task_id());
    a.assigned.insert(h.task_id());
  }
  std::vector<std::string> gone;
  for (const std::string& id : a.assigned) {
    if (!held.contains(id)) gone.push_back(id);
  }
  SendLocked(a.link, std::move(welcome));
  for (const std::string& id : gone) {
    a.assigned.erase(id);
    TaskEntry* t = FindLocked(id);
    if (t == nullptr || IsFinal(t->task.status())) continue;
    // The same process keeps every task it was given until its end is
    // acknowledged: one it does not hold never reached it, so never ran.
    if (same_process && t->task.status() == v1::TASK_STATUS_DISPATCHED) {
      RequeueUndeliveredLocked(*t);
    } else {
      EndAttemptLocked(*t, v1::TASK_STATUS_LOST,
                       absl::StrCat("agent ", hello.agent_id(), " reconnected without the task"));
    }
  }
  // After those ends, so a journal cut short never records this process's
  // instance without them (it would requeue a task an older one may have run).
  store_.PutAgent(a.info);
  if (metrics_) metrics_->connected_agents.Set(static_cast<double>(connected_.size()));
  spdlog::info("agent_connected agent_id={} slots={} held_tasks={} version={}", hello.agent_id(),
               hello.slots(), hello.held_tasks_size(), hello.version());
  EmitLocked(v1::EVENT_TYPE_AGENT_CONNECTED, nullptr, hello.agent_id());
  PublishLocked(monitor_.OnAgentConnected(hello.agent_id()));
  for (auto& [seq, r] : open_runs_) {
    if (r->held > 0) ReleaseTargetsLocked(*r);
  }
  DispatchLocked();
  return absl::OkStatus();
}

void TaskRegistry::DisconnectAgents(
    const std::function<absl::Status(const v1::Agent&, const std::string&)>& refusal) {
  std::vector<std::pair<std::shared_ptr<AgentLink>, absl::Status>> links;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, a] : connected_) {
      if (a->link == nullptr) continue;
      if (absl::Status s = refusal(a->info, a->token_sha256); !s.ok()) {
        links.emplace_back(a->link, std::move(s));
      }
    }
  }
  // Outside the lock: a link's Close may come back to AgentDisconnected.
  for (auto& [link, status] : links) link->Close(status);
}

void TaskRegistry::AgentDisconnected(const std::string& agent_id, const AgentLink* link) {
  absl::MutexLock lock(&mu_);
  auto it = agents_.find(agent_id);
  if (it == agents_.end() || it->second.link.get() != link) return;  // Already replaced.
  it->second.link = nullptr;
  connected_.erase(agent_id);
  if (metrics_) metrics_->connected_agents.Set(static_cast<double>(connected_.size()));
  spdlog::info("agent_disconnected agent_id={} running_tasks={}", agent_id,
               it->second.assigned.size());
  EmitDisconnectedLocked(agent_id);
  HoldTargetsOfLocked(agent_id);
  DispatchLocked();
}

void TaskRegistry::EmitDisconnectedLocked(const std::string& agent_id) {
  AuditLocked(NewAuditEntry("agent:" + agent_id, "agent.disconnect", agent_id, "",
                            absl::OkStatus()));
  EmitLocked(v1::EVENT_TYPE_AGENT_DISCONNECTED, nullptr, agent_id);
  PublishLocked(monitor_.OnAgentDisconnected(agent_id));
}

void TaskRegistry::HandleAgentMessage(const std::string& agent_id, const AgentLink* link,
                                      const v1::AgentMessage& message) {
  absl::MutexLock lock(&mu_);
  auto it = agents_.find(agent_id);
  if (it == agents_.end() || it->second.link.get() != link) return;
  AgentEntry& a = it->second;
  a.last_seen = clock_.Now();
  switch (message.msg_case()) {
    case v1::AgentMessage::kStarted: {
      const v1::Started& m = message.started();
      TaskEntry* t = FenceLocked(a, m.task_id(), m.attempt());
      if (t == nullptr || t->task.status() != v1::TASK_STATUS_DISPATCHED) return;
      *t->task.mutable_started_at() = ToProto(a.last_seen);
      t->task.set_pid(m.pid());
      if (metrics_) {
        metrics_->start_latency_seconds.Observe(absl::ToDoubleSeconds(a.last_seen - t->created));
      }
      TransitionLocked(*t, v1::TASK_STATUS_RUNNING, "");
      FlushRunsLocked();
      return;
    }
    case v1::AgentMessage::kOutput:
      // Only the output limit ending a run's target can free a place.
      if (ApplyOutputLocked(a, message.output())) DispatchLocked();
      return;
    case v1::AgentMessage::kProgress: {
      const v1::ProgressReport& m = message.progress();
      TaskEntry* t = FenceLocked(a, m.task_id(), m.attempt());
      if (t == nullptr || IsFinal(t->task.status())) return;
      t->task.set_progress(std::clamp(m.progress().percent(), 0, 100));
      t->task.set_progress_message(m.progress().message());
      PersistLocked(*t);
      EmitLocked(v1::EVENT_TYPE_TASK_PROGRESS, t, agent_id);
      return;
    }
    case v1::AgentMessage::kFinished:
      ApplyFinishedLocked(a, message.finished());
      DispatchLocked();
      return;
    case v1::AgentMessage::kHeartbeat: {
      const v1::Heartbeat& h = message.heartbeat();
      a.info.set_load1(h.load1());
      a.info.set_memory_total_bytes(h.memory_total_bytes());
      a.info.set_memory_available_bytes(h.memory_available_bytes());
      v1::HostMetrics host = h.host();
      if (!h.has_host()) {  // An agent from before host sampling: what it does send.
        host.set_memory_total_bytes(h.memory_total_bytes());
        host.set_memory_available_bytes(h.memory_available_bytes());
        host.set_memory_used_bytes(h.memory_total_bytes() - h.memory_available_bytes());
        if (h.memory_total_bytes() > 0) {
          host.set_memory_percent(100.0 * host.memory_used_bytes() / h.memory_total_bytes());
        }
        host.set_load1(h.load1());
        host.set_running_tasks(h.running_tasks());
      }
      PublishLocked(monitor_.OnHostMetrics(agent_id, std::move(host)));
      return;
    }
    default:
      spdlog::warn("agent_message_unexpected agent_id={} case={}", agent_id,
                   static_cast<int>(message.msg_case()));
  }
}

bool TaskRegistry::ApplyOutputLocked(AgentEntry& a, const v1::Output& m) {
  const v1::OutputChunk& chunk = m.chunk();
  const int64_t end = chunk.offset() + static_cast<int64_t>(chunk.data().size());
  v1::CoordinatorMessage ack;
  v1::Ack* ack_msg = ack.mutable_ack();
  ack_msg->set_task_id(m.task_id());
  ack_msg->set_attempt(m.attempt());
  TaskEntry* t = FenceLocked(a, m.task_id(), m.attempt());
  if (t == nullptr ||
      (chunk.stream() != v1::OUTPUT_STREAM_STDOUT && chunk.stream() != v1::OUTPUT_STREAM_STDERR)) {
    // Acknowledge everything so the agent frees what nobody will read.
    ack_msg->set_stdout_offset(INT64_MAX);
    ack_msg->set_stderr_offset(INT64_MAX);
    SendLocked(a.link, std::move(ack));
    return false;
  }
  OutputBuffer& buf = t->out[StreamIndex(chunk.stream())];
  bool ended = false;
  if (chunk.offset() > buf.total()) {
    // A gap means the agent lost bytes we never acknowledged; this cannot
    // happen on an ordered stream, so refuse rather than store a hole.
    spdlog::error("output_gap task_id={} expected={} got={}", m.task_id(), buf.total(),
                  chunk.offset());
  } else if (end > buf.total()) {
    const absl::string_view fresh =
        absl::string_view(chunk.data()).substr(static_cast<size_t>(buf.total() - chunk.offset()));
    v1::TaskEvent e;
    e.set_type(v1::EVENT_TYPE_TASK_LOG);
    *e.mutable_time() = ToProto(a.last_seen);
    e.set_task_id(m.task_id());
    e.set_run_id(t->task.run_id());
    e.set_agent_id(a.info.agent_id());
    e.set_attempt(m.attempt());
    e.mutable_output()->set_stream(chunk.stream());
    e.mutable_output()->set_offset(buf.total());
    e.mutable_output()->set_data(fresh.data(), fresh.size());
    store_.AppendOutput(m.task_id(), chunk.stream(), buf.total(), fresh);
    buf.Append(fresh);
    if (buf.dropped() > 0) {
      store_.TrimOutput(m.task_id(), chunk.stream(), buf.head_end(), buf.tail_start());
    }
    if (metrics_) metrics_->output_bytes.Increment(static_cast<double>(fresh.size()));
    AppendEventLocked(std::move(e));
    const int64_t limit = t->task.spec().max_output_bytes();
    if (limit > 0 && t->out[0].total() + t->out[1].total() > limit &&
        !IsFinal(t->task.status())) {
      const std::string why =
          absl::StrCat("output limit: wrote more than ", limit, " bytes (max_output_bytes)");
      TransitionLocked(*t, v1::TASK_STATUS_FAILED, why);
      SendCancelLocked(*t, why);
      ended = true;
    }
  }
  ack_msg->set_stdout_offset(t->out[0].total());
  ack_msg->set_stderr_offset(t->out[1].total());
  SendLocked(a.link, std::move(ack));
  return ended;
}

void TaskRegistry::ApplyFinishedLocked(AgentEntry& a, const v1::Finished& m) {
  v1::CoordinatorMessage ack;
  ack.mutable_ack()->set_task_id(m.task_id());
  ack.mutable_ack()->set_attempt(m.attempt());
  ack.mutable_ack()->set_finished(true);
  TaskEntry* t = FenceLocked(a, m.task_id(), m.attempt());
  a.assigned.erase(m.task_id());
  if (t != nullptr) {
    ack.mutable_ack()->set_stdout_offset(t->out[0].total());
    ack.mutable_ack()->set_stderr_offset(t->out[1].total());
    if (!t->task.has_exit()) *t->task.mutable_exit() = m.exit();
    if (!IsFinal(t->task.status())) {
      const v1::ExitInfo& e = m.exit();
      if (!t->task.has_started_at()) *t->task.mutable_started_at() = ToProto(a.last_seen);
      if (e.exit_code() == 0 && e.signal() == 0 && e.error().empty()) {
        TransitionLocked(*t, v1::TASK_STATUS_SUCCEEDED, "exit code 0");
      } else {
        EndAttemptLocked(*t, v1::TASK_STATUS_FAILED,
                         !e.error().empty() ? e.error()
                         : e.signal() != 0  ? absl::StrCat("killed by signal ", e.signal())
                                            : absl::StrCat("exit code ", e.exit_code()));
      }
    } else {
      PersistLocked(*t);
    }
  }
  SendLocked(a.link, std::move(ack));
}

// ---------------------------------------------------------------- timers

void TaskRegistry::AgentOfflineLocked(AgentEntry& a, const std::string& reason) {
  a.online = false;
  connected_.erase(a.info.agent_id());
  if (metrics_) metrics_->connected_agents.Set(static_cast<double>(connected_.size()));
  a.offline_since = clock_.Now();
  agent_checks_.Set(a.info.agent_id(), a.offline_since + options_.retention);
  if (a.link != nullptr) {
    a.link->Close(absl::DeadlineExceededError(reason));
    a.link = nullptr;
    EmitDisconnectedLocked(a.info.agent_id());
  }
  HoldTargetsOfLocked(a.info.agent_id());
  spdlog::warn("agent_offline agent_id={} lost_tasks={} reason=\"{}\"", a.info.agent_id(),
               a.assigned.size(), reason);
  for (const std::string& id : a.assigned) {
    TaskEntry* t = FindLocked(id);
    if (t != nullptr && !IsFinal(t->task.status()))
      EndAttemptLocked(*t, v1::TASK_STATUS_LOST, reason);
  }
  a.assigned.clear();
}

void TaskRegistry::Tick() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_.Now();
  if (now >= next_evaluation_) {
    next_evaluation_ = now + absl::Seconds(1);
    PublishLocked(monitor_.Evaluate(static_cast<int64_t>(queue_.size())));
    ReportWaitingLocked();
  }
  TickRunsLocked(now);
  // Only what expired. Looked up again one by one: a target's end can stop
  // its run, which takes others out of the queue.
  for (uint64_t seq : queue_deadlines_.Due(now)) {
    auto it = by_seq_.find(seq);
    if (it == by_seq_.end() || !it->second->queued) continue;
    TaskEntry& t = *it->second;
    TransitionLocked(t, v1::TASK_STATUS_TIMED_OUT,
                     absl::StrCat("not started within ", absl::FormatDuration(now - t.created),
                                  " (queue timeout): ", WaitingReasonLocked(t)));
  }
  const std::vector<uint64_t> overdue = run_deadlines_.Due(now);
  for (uint64_t seq : overdue) {
    auto it = by_seq_.find(seq);
    if (it == by_seq_.end() || !active_.contains(it->second)) continue;
    TaskEntry& t = *it->second;
    const std::string why =
        absl::StrCat("exceeded its timeout of ", absl::FormatDuration(t.timeout));
    TransitionLocked(t, v1::TASK_STATUS_TIMED_OUT, why);
    SendCancelLocked(t, why);
  }
  // Retries whose time came can go now.
  const bool retry_due = retries_.AnyDue(now);
  for (uint64_t seq : retries_.Due(now)) retries_.Erase(seq);
  // An agent's messages move its last_seen, not its check: each is looked
  // at once a TTL, not at every tick or every message.
  for (const std::string& id : agent_checks_.Due(now)) {
    auto it = agents_.find(id);
    if (it == agents_.end()) {
      agent_checks_.Erase(id);
      continue;
    }
    AgentEntry& a = it->second;
    if (a.online) {
      if (now - a.last_seen < options_.heartbeat_ttl) {
        agent_checks_.Set(id, a.last_seen + options_.heartbeat_ttl);
      } else {
        AgentOfflineLocked(a, absl::StrCat("agent ", id, " silent for ",
                                           absl::FormatDuration(now - a.last_seen)));
      }
    } else if (a.link != nullptr || now - a.offline_since < options_.retention) {
      agent_checks_.Set(id, std::max(now + options_.heartbeat_ttl,
                                     a.offline_since + options_.retention));
    } else {
      // Long gone: forgotten, so the directory stays bounded.
      store_.DeleteAgent(id);
      PublishLocked(monitor_.ForgetAgent(id));
      if (HasPolicy(a.info.policy())) --policies_;
      agent_checks_.Erase(id);
      agents_.erase(it);
    }
  }
  while (!finished_order_.empty() && (now - finished_order_.front().first >= options_.retention ||
                                      counts_.finished() > static_cast<int64_t>(options_.max_retained_tasks))) {
    const auto it = by_seq_.find(finished_order_.front().second);
    finished_order_.pop_front();
    if (it != by_seq_.end() && IsFinal(it->second->task.status())) {
      RemoveLocked(std::string(it->second->task.id()));
    }
  }
  if (const uint64_t first = events_.first_cursor(); first > events_trimmed_) {
    store_.TrimEvents(first);
    events_trimmed_ = first;
  }
  if (!overdue.empty() || retry_due || dispatch_wanted_) DispatchQueueLocked();
  FlushRunsLocked(/*all=*/true);
}

}  // namespace taskgrid
