// The task lifecycle: the queue, transitions, retries and the end of an
// attempt, waiting reasons, and dispatch onto agents by placement's verdict.
#include "services/coordinator/task_registry.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "services/common/agent_policy.h"
#include "services/common/proto_time.h"
#include "services/common/task_resources.h"
#include "services/coordinator/task_registry_util.h"

namespace taskgrid {

using placement::Verdict;
using registry::FormatSelector;
using registry::PriorityOf;
using registry::QueueWindow;
using registry::StatusName;
using registry::StreamIndex;

void TaskRegistry::Enqueue(TaskEntry& t) {
  queue_.emplace(QueueKey{-PriorityOf(*t.spec), t.seq}, &t);
  t.queued = true;
  queue_deadlines_.Set(t.seq, t.queue_deadline);
  if (t.state.retry_at > clock_.Now()) retries_.Set(t.seq, t.state.retry_at);
  dispatch_wanted_ = true;
  ++queued_by_priority_[PriorityOf(*t.spec)];
  if (metrics_) metrics_->queue_depth(PriorityOf(*t.spec)).Increment();
}

void TaskRegistry::Dequeue(TaskEntry& t) {
  if (!t.queued) return;
  queue_.erase(QueueKey{-PriorityOf(*t.spec), t.seq});
  t.queued = false;
  queue_deadlines_.Erase(t.seq);
  retries_.Erase(t.seq);
  --queued_by_priority_[PriorityOf(*t.spec)];
  if (metrics_) metrics_->queue_depth(PriorityOf(*t.spec)).Decrement();
}

void TaskRegistry::TransitionLocked(TaskEntry& t, v1::TaskStatus status,
                                    const std::string& reason) {
  const absl::Time now = clock_.Now();
  const v1::TaskStatus from = t.state.status;
  t.state.status = status;
  t.state.updated_at = now;
  if (status == v1::TASK_STATUS_DISPATCHED || status == v1::TASK_STATUS_RUNNING) {
    active_.insert(&t);
    run_deadlines_.Set(t.seq, t.run_deadline);
  } else {
    active_.erase(&t);
    run_deadlines_.Erase(t.seq);
  }
  if (IsFinal(status)) {
    // Nothing will run it again: the store need not keep its secrets.
    if (!t.spec->secret_env().empty()) {
      v1::TaskSpec spec = *t.spec;
      spec.clear_secret_env();
      SetSpec(t, std::move(spec));
    }
    if (!IsFinal(from) && !t.state.owner.empty()) {
      auto it = unfinished_by_owner_.find(t.state.owner);
      if (it != unfinished_by_owner_.end() && --it->second <= 0) unfinished_by_owner_.erase(it);
    }
    Dequeue(t);
    t.state.status_reason = reason;
    t.state.pid = 0;
    t.state.finished_at = now;
    finished_order_.emplace_back(now, t.seq);
    monitor_.OnTaskFinished(
        t.state.agent_id, status,
        TaskState::IsSet(t.state.started_at) ? now - t.state.started_at : absl::ZeroDuration());
    if (metrics_) {
      metrics_->finished(status).Increment();
      if (TaskState::IsSet(t.state.started_at)) {
        metrics_->task_duration_seconds.Observe(
            absl::ToDoubleSeconds(now - t.state.started_at));
      }
    }
    spdlog::info("task_finished task_id={} status={} agent_id={} reason=\"{}\"", t.state.id,
                 StatusName(status), t.state.agent_id, reason);
  } else {
    spdlog::debug("task_status task_id={} from={} to={}", t.state.id, StatusName(from),
                  StatusName(status));
  }
  counts_.Changed(from, t.state);
  if (metrics_) metrics_->running_tasks.Set(static_cast<double>(active_.size()));
  PersistLocked(t);
  EmitLocked(v1::EVENT_TYPE_TASK_STATUS, &t, t.state.agent_id);
  if (status == v1::TASK_STATUS_CANCELLED) {
    EmitLocked(v1::EVENT_TYPE_TASK_CANCELLED, &t, t.state.agent_id);
  }
  if (t.run != nullptr) OnTargetChangedLocked(t, from);
}

void TaskRegistry::EndAttemptLocked(TaskEntry& t, v1::TaskStatus status,
                                    const std::string& reason) {
  const v1::RetryPolicy& retry = t.spec->retry();
  // A stopped run starts nothing again, retries included.
  const bool retryable =
      (status == v1::TASK_STATUS_LOST || (status == v1::TASK_STATUS_FAILED && retry.retry_failed())) &&
      (t.run == nullptr || !t.run->stopped());
  // Attempts that never reached an agent are no tries of the command.
  const uint32_t tries = t.state.attempt - std::min(t.state.attempt, t.state.undelivered);
  if (!retryable || tries >= retry.max_attempts()) {
    TransitionLocked(t, status, reason);
    return;
  }
  const absl::Duration cap =
      retry.has_max_backoff() ? FromProto(retry.max_backoff()) : absl::Minutes(5);
  absl::Duration backoff = retry.has_backoff() ? FromProto(retry.backoff()) : absl::Seconds(1);
  for (uint32_t i = 1; i < tries && backoff < cap; ++i) backoff *= 2;
  backoff = std::min(backoff, cap);
  const uint32_t attempt = t.state.attempt;
  spdlog::info("task_retry task_id={} attempt={} outcome={} backoff={} reason=\"{}\"", t.state.id,
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
  const std::string never = absl::StrCat("attempt ", t.state.attempt, " never reached agent ",
                                         t.state.agent_id);
  // An Assign that keeps failing on its way (larger than the agent takes,
  // say) must not go round for ever.
  if (t.state.undelivered + 1 >= kMaxUndelivered) {
    return TransitionLocked(t, v1::TASK_STATUS_LOST,
                            absl::StrCat(never, ": gave up after ", kMaxUndelivered,
                                         " attempts that never arrived"));
  }
  spdlog::info("task_requeued task_id={} attempt={} agent_id={} reason=undelivered", t.state.id,
               t.state.attempt, t.state.agent_id);
  ++t.state.undelivered;
  RequeueLocked(t, clock_.Now(), absl::StrCat(never, ": queued again"));
}

void TaskRegistry::RequeueLocked(TaskEntry& t, absl::Time eligible_at, std::string reason) {
  t.state.retry_at = eligible_at;
  t.queue_deadline = eligible_at + QueueWindow(*t.spec, t.timeout);
  t.state.status_reason = std::move(reason);
  // The next attempt starts afresh; its agent reports output from offset 0.
  t.state.agent_id.clear();
  t.state.pid = 0;
  t.state.dispatched_at = TaskState::kUnset;
  t.state.started_at = TaskState::kUnset;
  t.state.exit.reset();
  t.state.progress = 0;
  t.state.progress_message.clear();
  for (v1::OutputStream stream : {v1::OUTPUT_STREAM_STDOUT, v1::OUTPUT_STREAM_STDERR}) {
    t.out[StreamIndex(stream)] = OutputBuffer(options_.output_cap_bytes);
    store_.TrimOutput(t.state.id, stream, 0, INT64_MAX);
  }
  Enqueue(t);
  TransitionLocked(t, v1::TASK_STATUS_QUEUED, "");
}

void TaskRegistry::SendCancelLocked(TaskEntry& t, const std::string& reason) {
  const AgentEntry* a = agents_.Find(t.state.agent_id);
  if (a == nullptr || !a->connected()) return;  // Reconciled on reconnect.
  v1::CoordinatorMessage m;
  v1::Cancel* c = m.mutable_cancel();
  c->set_task_id(t.state.id);
  c->set_attempt(t.state.attempt);
  c->set_reason(reason);
  *c->mutable_grace() = ToProto(t.kill_grace);
  SendLocked(a->link, std::move(m));
}

placement::Verdict TaskRegistry::JudgeLocked(const v1::TaskSpec& spec,
                                             const AgentEntry& a) const {
  placement::AgentState state{a.info, a.connected() && a.online, a.assigned.size()};
  std::optional<v1::Resources> reserved;
  if (AsksForResources(spec)) state.reserved = &reserved.emplace(ReservedLocked(a));
  return placement::Judge(state, spec);
}

v1::Resources TaskRegistry::ReservedLocked(const AgentEntry& a) const {
  v1::Resources reserved;
  for (const std::string& id : a.assigned) {
    auto t = tasks_.find(id);
    if (t != tasks_.end() && AsksForResources(*t->second->spec)) {
      AddReservation(reserved, RequestedResources(*t->second->spec));
    }
  }
  return reserved;
}

size_t TaskRegistry::QueuedAheadLocked(const TaskEntry& t) const {
  size_t ahead = 0;
  for (int p = PriorityOf(*t.spec) + 1; p < v1::Priority_ARRAYSIZE; ++p) {
    ahead += queued_by_priority_[p];
  }
  return ahead;
}

std::string TaskRegistry::WaitingReasonLocked(const TaskEntry& t) const {
  const v1::TaskSpec& spec = *t.spec;
  if (t.held) return HeldReasonLocked(t);
  if (t.state.retry_at > clock_.Now()) {
    // The time, not the time left: the reason changes only when the state does.
    return absl::StrCat("waiting until ", absl::FormatTime("%H:%M:%E3S UTC", t.state.retry_at,
                                                           absl::UTCTimeZone()),
                        " before attempt ", t.state.attempt + 1, " (", t.state.status_reason,
                        ")");
  }
  const size_t ahead = QueuedAheadLocked(t);
  const std::string behind = ahead == 0 ? "" : "; queued tasks of higher priority go first";
  if (!spec.agent_id().empty()) {
    const AgentEntry* pinned = agents_.Find(spec.agent_id());
    if (pinned == nullptr) return absl::StrCat("agent ", spec.agent_id(), " is not registered");
    const AgentEntry& a = *pinned;
    const std::string agent = absl::StrCat("agent ", spec.agent_id());
    switch (JudgeLocked(spec, a)) {
      case Verdict::kNoMatch:
        return absl::StrCat(agent, " does not match ", FormatSelector(spec.selector()));
      case Verdict::kNoContainers:
      case Verdict::kPolicy:
      case Verdict::kCannotLimit:
      case Verdict::kTooSmall:
        return absl::StrCat(agent, " ", placement::Refusal(a.info, spec));
      case Verdict::kOffline:
        return absl::StrCat(agent, " is not connected");
      case Verdict::kNoRoom:
        if (const auto missing = placement::RoomShortfall(a.info, ReservedLocked(a), spec)) {
          return absl::StrCat(agent, " has less than ", missing->asked, " free", behind);
        }
        [[fallthrough]];
      default:
        return absl::StrCat(agent, " is busy (", a.assigned.size(), " of ", a.info.slots(),
                            " slots in use)", behind);
    }
  }
  size_t matching = agents_.size(), connected = agents_.connected().size(), refusing = 0;
  size_t unfit = 0, no_room = 0;
  std::string refusal, unfit_why;
  // Any agent matches an empty selector: no need to look, unless it is a
  // container task, policies may refuse or the task asks for resources.
  if (!spec.selector().empty() || spec.has_docker() || AsksForResources(spec) ||
      agents_.any_policy()) {
    matching = connected = 0;
    for (const auto& [id, a] : agents_.all()) {
      switch (JudgeLocked(spec, a)) {
        case Verdict::kNotPinned:
        case Verdict::kNoMatch:
        case Verdict::kNoContainers:
          break;
        case Verdict::kPolicy:
          ++refusing;
          refusal = absl::StrCat(id, " ", PolicyRefusal(a.info.policy(), spec));
          break;
        case Verdict::kCannotLimit:
        case Verdict::kTooSmall:
          ++unfit;
          unfit_why = absl::StrCat(id, " ", placement::Refusal(a.info, spec));
          break;
        case Verdict::kOffline:
          ++matching;
          break;
        case Verdict::kNoRoom:
          ++no_room;
          [[fallthrough]];
        case Verdict::kBusy:
        case Verdict::kFits:
          ++matching;
          ++connected;
          break;
      }
    }
  }
  const std::string matching_what =
      spec.selector().empty() ? "" : absl::StrCat(" matching ", FormatSelector(spec.selector()));
  if (matching == 0 && refusing > 0) {
    return absl::StrCat("every agent", matching_what, " refuses it by its operator's policy (",
                        refusal, ")");
  }
  if (matching == 0 && unfit > 0) {
    return absl::StrCat("no agent", matching_what, " can hold it (", unfit_why, ")");
  }
  // Each may lack another part of the request: the request is what they all
  // lack. Worded only then: every queued task's reason is asked for often.
  const std::string room =
      no_room == 0 ? ""
                   : absl::StrCat("less free than the ", Describe(RequestedResources(spec)),
                                  " it asks for");
  if (no_room > 0 && no_room == connected) {
    return absl::StrCat("every connected agent", matching_what, " has ", room, behind);
  }
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
                      no_room > 0 ? absl::StrCat(" are busy or have ", room)
                                  : " are busy (every slot in use)",
                      behind);
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
  for (const auto& [id, a] : agents_.connected()) {
    if (a->assigned.size() < a->info.slots()) {
      free_slots += a->info.slots() - a->assigned.size();
      if (free_slots >= queue_.size()) break;  // Enough to know; a fleet is large.
    }
  }
  for (auto it = queue_.begin(); it != queue_.end() && free_slots > 0;) {
    TaskEntry& t = *it->second;
    if (t.state.retry_at > now) {
      ++it;
      continue;
    }
    AgentEntry* best = nullptr;
    if (const std::string& pinned = t.spec->agent_id(); !pinned.empty()) {
      // One agent can take it: no need to look at the fleet (a run's targets).
      auto a = agents_.connected().find(pinned);
      if (a != agents_.connected().end() &&
          JudgeLocked(*t.spec, *a->second) == Verdict::kFits) {
        best = a->second;
      }
    } else {
      double best_load = 2;
      for (auto& [id, a] : agents_.connected()) {
        // Full agents first: most of a busy fleet, and the cheapest test.
        if (a->assigned.size() >= a->info.slots() ||
            JudgeLocked(*t.spec, *a) != Verdict::kFits) {
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
    best->assigned.insert(t.state.id);
    t.state.agent_id = best->info.agent_id();
    ++t.state.attempt;
    t.state.retry_at = TaskState::kUnset;
    t.state.dispatched_at = now;
    t.run_deadline = now + t.timeout;
    if (metrics_)
      metrics_->dispatch_latency_seconds.Observe(absl::ToDoubleSeconds(now - t.state.created_at));
    v1::CoordinatorMessage m;
    v1::Assign* assign = m.mutable_assign();
    assign->set_task_id(t.state.id);
    assign->set_attempt(t.state.attempt);
    *assign->mutable_spec() = *t.spec;
    *assign->mutable_deadline() = ToProto(t.run_deadline);
    // Journaled first: the agent never runs an attempt the store may forget.
    TransitionLocked(t, v1::TASK_STATUS_DISPATCHED, "");
    SendLocked(best->link, std::move(m));
  }
}

}  // namespace taskgrid
