// The registry's fleet runs: a run expands into one task per matching agent
// (its targets), releases them into the queue within max_concurrency, stops
// starting them at max_errors, and says how many wait and why.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/common/proto_time.h"
#include "services/common/status_util.h"
#include "services/coordinator/task_registry.h"
#include "services/coordinator/task_registry_util.h"
#include "services/coordinator/task_validation.h"

namespace taskgrid {

using placement::Verdict;
using registry::EncodePageToken;
using registry::FormatSelector;
using registry::IdempotencyKey;
using registry::IsError;
using registry::RedactSecrets;
using registry::Page;
using registry::ParsePage;
using registry::QueueWindow;
using registry::StatusName;

namespace {

constexpr size_t kMaxRunTargets = 10'000;
// The first failure's output shown with a run.
constexpr int64_t kFailureTail = 4096;
// Waiting reasons compared per pass (once a second), so the pass stays
// bounded: tasks at the head of the queue, and targets of open runs (their
// held ones, and every row for the run's own reason).
constexpr int kWaitingChecks = 2000;
constexpr int kRunRowChecks = 20'000;
// Agents named in a run's waiting reason per kind of wait.
constexpr size_t kNamedAgents = 3;

std::string TimeOfDay(absl::Time t) {
  return absl::FormatTime("%H:%M:%S UTC", t, absl::UTCTimeZone());
}

std::string Plural(size_t n, absl::string_view one, absl::string_view many) {
  return absl::StrCat(n, " ", n == 1 ? one : many);
}

}  // namespace

// ---------------------------------------------------------------- client API

absl::StatusOr<v1::SubmitRunResponse> TaskRegistry::SubmitRun(const v1::SubmitRunRequest& request,
                                                              const SubmitLimits& limits) {
  TASKGRID_RETURN_IF_ERROR(Accepting());
  const v1::RunSpec& spec = request.spec();
  TASKGRID_RETURN_IF_ERROR(ValidateRunSpec(spec));
  TASKGRID_RETURN_IF_ERROR(ValidateId("idempotency_key", request.idempotency_key(), false));
  TASKGRID_RETURN_IF_ERROR(InRunTemplate(CheckLimits(spec.task(), limits)));
  TASKGRID_ASSIGN_OR_RETURN(const TargetShare concurrency,
                            ParseTargetShare("spec.max_concurrency", spec.max_concurrency()));
  TASKGRID_ASSIGN_OR_RETURN(const TargetShare errors,
                            ParseTargetShare("spec.max_errors", spec.max_errors()));
  const v1::TaskSpec& task = spec.task();

  WriteLock lock(this);
  v1::SubmitRunResponse response;
  const std::string idempotency = IdempotencyKey(limits.owner, request.idempotency_key());
  if (!request.idempotency_key().empty()) {
    if (auto it = run_idempotency_.find(idempotency); it != run_idempotency_.end()) {
      response.set_existing(true);
      response.set_cursor(events_.last_cursor());
      *response.mutable_run() = RunSnapshotLocked(*runs_.at(it->second), true);
      return response;
    }
  }
  // Every registered agent the selector matches is a target or a skipped
  // row that says why: none is left out silently.
  std::vector<v1::RunTarget> rows;
  size_t targets = 0;
  for (const auto& [id, a] : agents_.all()) {
    const Verdict verdict = JudgeLocked(task, a);
    if (verdict == Verdict::kNoMatch) continue;
    v1::RunTarget& row = rows.emplace_back();
    row.set_agent_id(id);
    std::string skip;
    if (verdict == Verdict::kNoContainers || verdict == Verdict::kPolicy ||
        verdict == Verdict::kCannotLimit || verdict == Verdict::kTooSmall) {
      skip = placement::Refusal(a.info, task);
    } else if (verdict == Verdict::kOffline && !spec.include_offline()) {
      skip = "was offline when the run was submitted (include_offline waits for such agents)";
    }
    if (skip.empty()) {
      ++targets;
    } else {
      row.set_skipped(true);
      row.set_reason(absl::StrCat("agent ", id, " ", skip));
    }
  }
  const std::string selector =
      task.selector().empty() ? "the empty selector" : FormatSelector(task.selector());
  if (rows.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "spec.task.selector: no agent matches ", selector, " (", Plural(agents_.size(), "agent", "agents"),
        " registered)"));
  }
  if (targets == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("spec.task.selector: none of the ", Plural(rows.size(), "agent", "agents"),
                     " matching ", selector, " can take it: ", rows.front().reason()));
  }
  if (targets > kMaxRunTargets) {
    return absl::InvalidArgumentError(absl::StrCat("spec.task.selector: matches ", targets,
                                                   " agents; a run targets at most ",
                                                   kMaxRunTargets));
  }
  if (limits.max_running > 0) {
    auto it = unfinished_by_owner_.find(limits.owner);
    const int unfinished = it == unfinished_by_owner_.end() ? 0 : it->second;
    if (unfinished + static_cast<int64_t>(targets) > limits.max_running) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "key ", limits.owner, " has ", unfinished, " unfinished tasks and this run adds ",
          targets, ", beyond its max_running of ", limits.max_running));
    }
  }

  const absl::Time now = clock_.Now();
  auto entry = std::make_unique<RunEntry>();
  RunEntry& r = *entry;
  v1::Run& run = r.run;
  run.set_id(NewIdLocked());
  r.seq = next_seq_++;
  *run.mutable_spec() = spec;
  // Targets keep their secrets; the run's own record needs none.
  RedactSecrets(*run.mutable_spec()->mutable_task());
  run.set_owner(limits.owner);
  run.set_idempotency_key(request.idempotency_key());
  *run.mutable_created_at() = ToProto(now);
  run.set_concurrency_limit(concurrency.Of(targets));
  run.set_error_limit(errors.Of(targets));
  r.offline_deadline =
      now + (spec.has_offline_timeout() ? FromProto(spec.offline_timeout())
                                        : QueueWindow(task, TimeoutOf(task, limits)));
  *run.mutable_offline_deadline() = ToProto(r.offline_deadline);
  r.rows = std::move(rows);
  r.target_count = static_cast<int>(targets);
  r.targets.assign(r.rows.size(), nullptr);
  for (v1::RunTarget& row : r.rows) {
    if (!row.skipped()) row.set_task_id(NewIdLocked());
  }
  response.set_cursor(events_.last_cursor());
  // The record first: a store that has a target has its run.
  PersistRunLocked(r);
  RunEntry* raw = entry.get();
  runs_.emplace(run.id(), std::move(entry));
  runs_by_seq_[r.seq] = raw;
  open_runs_[r.seq] = raw;
  if (!request.idempotency_key().empty()) run_idempotency_[idempotency] = run.id();
  r.updating = true;  // Settled once, below.
  v1::TaskSpec target = task;
  for (size_t i = 0; i < r.rows.size(); ++i) {
    if (r.rows[i].skipped()) continue;
    target.set_agent_id(r.rows[i].agent_id());
    uint64_t cursor = 0;
    TaskEntry& t = NewTaskLocked(target, limits, "", &r, r.rows[i].task_id(), cursor);
    t.run_index = static_cast<uint32_t>(i);
    r.targets[i] = &t;
    ++r.held;
    ++r.live;
  }
  r.updating = false;
  if (metrics_) {
    metrics_->runs_submitted.Increment();
    metrics_->run_targets.Increment(static_cast<double>(targets));
    metrics_->open_runs.Set(static_cast<double>(open_runs_.size()));
  }
  spdlog::info("run_submitted run_id={} selector=\"{}\" targets={} skipped={} max_concurrency={}",
               run.id(), FormatSelector(task.selector()), targets, r.rows.size() - targets,
               run.concurrency_limit());
  SettleRunLocked(r);
  MarkRunChangedLocked(r, /*urgent=*/true);
  DispatchLocked();  // Flushes.
  *response.mutable_run() = RunSnapshotLocked(r, true);
  return response;
}

absl::StatusOr<v1::Run> TaskRegistry::GetRun(const std::string& run_id) {
  TASKGRID_RETURN_IF_ERROR(ValidateId("run_id", run_id, true));
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return absl::NotFoundError(absl::StrCat("run_id: no run ", run_id));
  return RunSnapshotLocked(*it->second, true);
}

absl::StatusOr<v1::ListRunsResponse> TaskRegistry::ListRuns(const v1::ListRunsRequest& request) {
  TASKGRID_ASSIGN_OR_RETURN(const Page page, ParsePage(request.page_size(), request.page_token()));
  absl::MutexLock lock(&mu_);
  v1::ListRunsResponse response;
  uint64_t last = 0;
  for (auto it = std::make_reverse_iterator(runs_by_seq_.lower_bound(page.before));
       it != runs_by_seq_.rend(); ++it) {
    if (response.runs_size() == page.size) {
      response.set_next_page_token(EncodePageToken(last));
      break;
    }
    *response.add_runs() = RunSnapshotLocked(*it->second, false);
    last = it->first;
  }
  return response;
}

absl::StatusOr<v1::Run> TaskRegistry::CancelRun(const std::string& run_id,
                                                const std::string& reason) {
  TASKGRID_RETURN_IF_ERROR(ValidateId("run_id", run_id, true));
  WriteLock lock(this);
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return absl::NotFoundError(absl::StrCat("run_id: no run ", run_id));
  RunEntry& r = *it->second;
  if (IsFinal(r.run.status())) {
    return absl::FailedPreconditionError(
        absl::StrCat("run ", run_id, " is already ", StatusName(r.run.status())));
  }
  const std::string why = reason.empty() ? "cancelled by client" : reason;
  r.cancelled = true;
  r.run.set_status_reason(r.stopped() ? absl::StrCat(r.run.status_reason(), "; then ", why) : why);
  r.updating = true;
  for (TaskEntry* t : r.targets) {
    if (t != nullptr && !IsFinal(t->state.status)) CancelLocked(*t, why);
  }
  r.updating = false;
  SettleRunLocked(r);
  FlushRunsLocked();
  return RunSnapshotLocked(r, true);
}

// ---------------------------------------------------------------- targets

void TaskRegistry::OnTargetChangedLocked(TaskEntry& t, v1::TaskStatus from) {
  RunEntry& r = *t.run;
  const v1::TaskStatus to = t.state.status;
  if (to == v1::TASK_STATUS_DISPATCHED) r.dispatched = true;
  if (IsFinal(to) && !IsFinal(from)) {
    ++r.finals;
    if (t.held) {
      t.held = false;
      --r.held;
    } else {
      --r.in_flight;
    }
    if (IsError(to)) {
      ++r.errors;
      if (!r.run.has_first_failure()) {
        v1::RunFailure* f = r.run.mutable_first_failure();
        f->set_task_id(t.state.id);
        f->set_agent_id(t.spec->agent_id());
        f->set_status(to);
        f->set_reason(t.state.status_reason);
        f->set_exit_code(t.state.exit_code());
        PersistRunLocked(r);
        MarkRunChangedLocked(r, /*urgent=*/true);
      }
    }
  }
  if (!r.updating) SettleRunLocked(r);
}

void TaskRegistry::SettleRunLocked(RunEntry& r) {
  r.updating = true;
  const uint32_t error_limit = r.run.error_limit();
  if (!r.stopped() && error_limit > 0 && r.errors >= static_cast<int>(error_limit)) {
    StopRunLocked(r, absl::StrCat("stopped after ", Plural(r.errors, "target", "targets"),
                                  " failed (max_errors ", error_limit, ")"));
  }
  ReleaseTargetsLocked(r);
  const bool finishing = r.finals == r.target_count && !IsFinal(r.run.status());
  if (finishing) FinishRunLocked(r);
  r.updating = false;
  MarkRunChangedLocked(r, finishing);
}

void TaskRegistry::MarkRunChangedLocked(RunEntry& r, bool urgent) {
  r.urgent = r.urgent || urgent;
  if (r.dirty) return;
  r.dirty = true;
  dirty_runs_.push_back(&r);
}

void TaskRegistry::FlushRunsLocked(bool all) {
  auto waiting = dirty_runs_.begin();
  for (RunEntry* r : dirty_runs_) {
    if (!all && !r->urgent) {
      *waiting++ = r;
      continue;
    }
    r->dirty = r->urgent = false;
    EmitRunLocked(*r);
  }
  dirty_runs_.erase(waiting, dirty_runs_.end());
}

void TaskRegistry::HoldTargetsOfLocked(const std::string& agent_id) {
  std::vector<RunEntry*> changed;
  for (const auto& [seq, r] : open_runs_) {
    bool held = false;
    for (TaskEntry* t : r->targets) {
      if (t == nullptr || !t->queued || t->spec->agent_id() != agent_id) continue;
      Dequeue(*t);
      t->held = true;
      t->queue_deadline = absl::InfiniteFuture();
      ++r->held;
      --r->in_flight;
      r->release_from = std::min<size_t>(r->release_from, t->run_index);
      held = true;
    }
    if (held) changed.push_back(r);
  }
  for (RunEntry* r : changed) SettleRunLocked(*r);  // Others take the places freed.
}

absl::Time TaskRegistry::OfflineDeadlineLocked(const TaskEntry& t) const {
  const RunEntry& r = *t.run;
  const AgentEntry* a = agents_.Find(t.spec->agent_id());
  if (a == nullptr) return r.offline_deadline;
  const absl::Duration window = r.offline_deadline - FromProto(r.run.created_at());
  return std::max(r.offline_deadline, a->last_seen + window);
}

void TaskRegistry::ReleaseTargetsLocked(RunEntry& r) {
  if (r.stopped()) return;
  const uint32_t limit = r.run.concurrency_limit();
  const absl::Time now = clock_.Now();
  while (r.release_from < r.targets.size() &&
         (r.targets[r.release_from] == nullptr || !r.targets[r.release_from]->held)) {
    ++r.release_from;
  }
  for (size_t i = r.release_from; i < r.targets.size(); ++i) {
    TaskEntry* t = r.targets[i];
    if (r.held == 0 || (limit > 0 && r.in_flight >= static_cast<int>(limit))) break;
    // A target whose agent is away waits held, without taking a place.
    if (t == nullptr || !t->held || !agents_.IsConnected(t->spec->agent_id())) continue;
    t->held = false;
    --r.held;
    ++r.in_flight;
    t->queue_deadline = now + QueueWindow(*t->spec, t->timeout);
    Enqueue(*t);
  }
}

void TaskRegistry::StopRunLocked(RunEntry& r, const std::string& why) {
  spdlog::info("run_stopped run_id={} reason=\"{}\"", r.run.id(), why);
  r.run.set_status_reason(why);
  const std::string not_started = absl::StrCat("not started: the run ", why);
  for (TaskEntry* t : r.targets) {
    if (t != nullptr && (t->held || t->queued)) CancelLocked(*t, not_started);
  }
  PersistRunLocked(r);
}

void TaskRegistry::FinishRunLocked(RunEntry& r) {
  std::map<v1::TaskStatus, int> ended;
  int targets = 0;
  for (size_t i = 0; i < r.rows.size(); ++i) {
    if (r.targets[i] != nullptr) r.rows[i] = TargetRowLocked(*r.targets[i]);
    if (r.rows[i].skipped()) continue;
    ++targets;
    ++ended[r.rows[i].status()];
  }
  v1::TaskStatus status = v1::TASK_STATUS_SUCCEEDED;
  if (r.cancelled) {
    status = v1::TASK_STATUS_CANCELLED;
  } else if (r.errors > 0) {
    status = v1::TASK_STATUS_FAILED;
  } else if (ended.count(v1::TASK_STATUS_CANCELLED) > 0) {
    status = v1::TASK_STATUS_CANCELLED;
  }
  std::string why;
  if (ended.size() == 1 && ended.begin()->first == v1::TASK_STATUS_SUCCEEDED) {
    why = targets == 1 ? "the target succeeded" : absl::StrCat("all ", targets, " targets succeeded");
  } else {
    std::vector<std::string> parts;
    for (const auto& [s, n] : ended) parts.push_back(absl::StrCat(n, " ", StatusName(s)));
    why = absl::StrCat(absl::StrJoin(parts, ", "), " of ", Plural(targets, "target", "targets"));
  }
  if (const size_t skipped = r.rows.size() - static_cast<size_t>(targets); skipped > 0) {
    absl::StrAppend(&why, "; ", Plural(skipped, "agent", "agents"), " skipped");
  }
  // A stop's or cancel's reason comes first: it says why the rest did not run.
  r.run.set_status_reason(r.run.status_reason().empty()
                              ? why
                              : absl::StrCat(r.run.status_reason(), "; ", why));
  r.run.set_status(status);
  *r.run.mutable_finished_at() = ToProto(clock_.Now());
  open_runs_.erase(r.seq);
  if (metrics_) {
    metrics_->run_finished(status).Increment();
    metrics_->open_runs.Set(static_cast<double>(open_runs_.size()));
  }
  PersistRunLocked(r);
  spdlog::info("run_finished run_id={} status={} reason=\"{}\"", r.run.id(), StatusName(status),
               r.run.status_reason());
}

void TaskRegistry::PersistRunLocked(const RunEntry& r) {
  v1::Run stored = r.run;
  for (size_t i = 0; i < r.rows.size(); ++i) {
    v1::RunTarget* row = stored.add_targets();
    *row = r.rows[i];
    // Live rows are rebuilt from their tasks; only ended ones need their state.
    if (r.targets[i] != nullptr && !IsFinal(r.targets[i]->state.status)) {
      row->clear_status();
      row->clear_reason();
    } else if (r.targets[i] != nullptr) {
      *row = TargetRowLocked(*r.targets[i]);
    }
  }
  store_.PutRun(stored);
}

void TaskRegistry::DetachTargetLocked(TaskEntry& t) {
  RunEntry& r = *t.run;
  r.rows[t.run_index] = TargetRowLocked(t);
  r.targets[t.run_index] = nullptr;
  t.run = nullptr;
  --r.live;
  if (!IsFinal(r.run.status())) {
    PersistRunLocked(r);  // The row's end is known only here from now on.
  } else if (r.live == 0) {
    EraseRunLocked(r);  // The run's last task is gone: so is the run.
  }
}

void TaskRegistry::EraseRunLocked(RunEntry& r) {
  std::erase(dirty_runs_, &r);
  store_.DeleteRun(r.run.id());
  runs_by_seq_.erase(r.seq);
  open_runs_.erase(r.seq);
  if (!r.run.idempotency_key().empty()) {
    run_idempotency_.erase(IdempotencyKey(r.run.owner(), r.run.idempotency_key()));
  }
  runs_.erase(r.run.id());  // Deletes r.
}

// ---------------------------------------------------------------- timers

void TaskRegistry::TickRunsLocked(absl::Time now) {
  std::vector<RunEntry*> overdue;
  for (const auto& [seq, r] : open_runs_) {
    if (r->held > 0 && now >= r->offline_deadline) overdue.push_back(r);
  }
  for (RunEntry* r : overdue) {
    const absl::Duration window = r->offline_deadline - FromProto(r->run.created_at());
    r->updating = true;
    for (TaskEntry* t : r->targets) {
      if (t == nullptr || !t->held || agents_.IsConnected(t->spec->agent_id()) ||
          now < OfflineDeadlineLocked(*t)) {
        continue;
      }
      TransitionLocked(*t, v1::TASK_STATUS_TIMED_OUT,
                       absl::StrCat("agent ", t->spec->agent_id(), " was offline for ",
                                    absl::FormatDuration(window),
                                    " while the run waited for it (offline_timeout)"));
    }
    r->updating = false;
    SettleRunLocked(*r);
  }
}

void TaskRegistry::ReportWaitingLocked() {
  int budget = kWaitingChecks;
  auto report = [&](const TaskEntry& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (std::hash<std::string>()(WaitingReasonLocked(t)) != t.reported_reason) {
      EmitLocked(v1::EVENT_TYPE_TASK_WAITING, &t, "");
    }
  };
  for (const auto& [key, t] : queue_) {
    if (--budget < 0) break;
    report(*t);
  }
  budget = kRunRowChecks;
  for (const auto& [seq, r] : open_runs_) {
    if (budget < 0) break;
    for (const TaskEntry* t : r->targets) {
      if (t != nullptr && t->held && --budget >= 0) report(*t);
    }
    budget -= static_cast<int>(r->rows.size());  // The run's reason reads every row.
    if (RunSnapshotLocked(*r, false).waiting_reason() != r->reported_reason) EmitRunLocked(*r);
  }
}

// ---------------------------------------------------------------- reads

std::string TaskRegistry::HeldReasonLocked(const TaskEntry& t) const {
  const RunEntry& r = *t.run;
  const std::string& agent = t.spec->agent_id();
  if (!agents_.IsConnected(agent)) {
    return absl::StrCat("agent ", agent, " is offline; the run waits for it until ",
                        TimeOfDay(OfflineDeadlineLocked(t)));
  }
  const uint32_t limit = r.run.concurrency_limit();
  if (limit == 0 || r.in_flight < static_cast<int>(limit)) return "waiting for its run to start it";
  return absl::StrCat("held by the run's max_concurrency of ", limit);
}

v1::RunTarget TaskRegistry::TargetRowLocked(const TaskEntry& t) const {
  v1::RunTarget row;
  row.set_agent_id(t.spec->agent_id());
  row.set_task_id(t.state.id);
  row.set_status(t.state.status);
  row.set_exit_code(t.state.exit_code());
  if (TaskState::IsSet(t.state.started_at)) {
    const absl::Time end =
        TaskState::IsSet(t.state.finished_at) ? t.state.finished_at : clock_.Now();
    *row.mutable_duration() = ToProto(end - t.state.started_at);
  }
  if (IsFinal(t.state.status)) {
    row.set_reason(t.state.status_reason);
  } else if (t.state.status == v1::TASK_STATUS_QUEUED) {
    row.set_reason(WaitingReasonLocked(t));
  }
  return row;
}

v1::Run TaskRegistry::RunSnapshotLocked(const RunEntry& r, bool with_targets) const {
  v1::Run run = r.run;
  v1::RunCounts& c = *run.mutable_counts();
  size_t held_busy = 0;
  std::vector<std::string> offline;
  absl::Time offline_until = absl::InfinitePast();
  std::vector<const TaskEntry*> queued;
  for (size_t i = 0; i < r.rows.size(); ++i) {
    const TaskEntry* t = r.targets[i];
    if (with_targets) *run.add_targets() = t != nullptr ? TargetRowLocked(*t) : r.rows[i];
    if (r.rows[i].skipped()) {
      c.set_skipped(c.skipped() + 1);
      continue;
    }
    c.set_targets(c.targets() + 1);
    switch (t != nullptr ? t->state.status : r.rows[i].status()) {
      case v1::TASK_STATUS_PENDING:
      case v1::TASK_STATUS_QUEUED:
        c.set_waiting(c.waiting() + 1);
        if (t == nullptr) break;
        if (!t->held) {
          queued.push_back(t);
        } else if (agents_.IsConnected(t->spec->agent_id())) {
          ++held_busy;
        } else {
          offline.push_back(t->spec->agent_id());
          offline_until = std::max(offline_until, OfflineDeadlineLocked(*t));
        }
        break;
      case v1::TASK_STATUS_DISPATCHED:
      case v1::TASK_STATUS_RUNNING:
        c.set_running(c.running() + 1);
        break;
      case v1::TASK_STATUS_SUCCEEDED:
        c.set_succeeded(c.succeeded() + 1);
        break;
      case v1::TASK_STATUS_FAILED:
        c.set_failed(c.failed() + 1);
        break;
      case v1::TASK_STATUS_TIMED_OUT:
        c.set_timed_out(c.timed_out() + 1);
        break;
      case v1::TASK_STATUS_CANCELLED:
        c.set_cancelled(c.cancelled() + 1);
        break;
      case v1::TASK_STATUS_LOST:
        c.set_lost(c.lost() + 1);
        break;
      default:
        break;
    }
  }
  if (!IsFinal(run.status())) {
    run.set_status(r.dispatched || r.finals > 0 ? v1::TASK_STATUS_RUNNING
                                                : v1::TASK_STATUS_QUEUED);
  }
  c.set_targets(c.targets() + c.skipped());
  if (c.waiting() > 0) {
    std::vector<std::string> parts;
    if (held_busy > 0) {
      parts.push_back(absl::StrCat(held_busy, " held by max_concurrency of ",
                                   r.run.concurrency_limit()));
    }
    if (!offline.empty()) {
      const size_t named = std::min(offline.size(), kNamedAgents);
      parts.push_back(absl::StrCat(
          offline.size(), " waiting for offline ", offline.size() == 1 ? "agent " : "agents ",
          absl::StrJoin(offline.begin(), offline.begin() + static_cast<ptrdiff_t>(named), ", "),
          offline.size() > named ? ", ..." : "", " until ", TimeOfDay(offline_until)));
    }
    if (!queued.empty()) {
      parts.push_back(absl::StrCat(queued.size(), " queued (", WaitingReasonLocked(*queued.front()),
                                   queued.size() > 1 ? ", ..." : "", ")"));
    }
    run.set_waiting_reason(absl::StrCat(c.waiting(), " of ", c.targets() - c.skipped(),
                                        " targets waiting: ", absl::StrJoin(parts, "; ")));
  }
  if (with_targets && run.has_first_failure()) {
    if (auto it = tasks_.find(run.first_failure().task_id()); it != tasks_.end()) {
      const TaskEntry* t = it->second.get();
      for (int s = 0; s < 2; ++s) {
        const OutputBuffer& out = t->out[s];
        std::string tail = out.Read(std::max<int64_t>(0, out.total() - kFailureTail), kFailureTail).data;
        if (s == 0) {
          run.mutable_first_failure()->set_stdout_tail(std::move(tail));
        } else {
          run.mutable_first_failure()->set_stderr_tail(std::move(tail));
        }
      }
    }
  }
  return run;
}

void TaskRegistry::EmitRunLocked(const RunEntry& r) {
  v1::TaskEvent e;
  e.set_type(v1::EVENT_TYPE_RUN_STATUS);
  *e.mutable_time() = ToProto(clock_.Now());
  e.set_run_id(r.run.id());
  *e.mutable_run() = RunSnapshotLocked(r, false);
  if (e.run().spec().task().has_shell()) {
    e.mutable_run()->mutable_spec()->mutable_task()->mutable_shell()->clear_stdin();
  }
  r.reported_reason = e.run().waiting_reason();
  AppendEventLocked(std::move(e));
}

// ---------------------------------------------------------------- recovery

void TaskRegistry::RecoverRunsLocked(std::vector<v1::Run> runs) {
  std::sort(runs.begin(), runs.end(), [](const v1::Run& a, const v1::Run& b) {
    return FromProto(a.created_at()) < FromProto(b.created_at());
  });
  for (v1::Run& stored : runs) {
    auto entry = std::make_unique<RunEntry>();
    RunEntry& r = *entry;
    r.rows.assign(stored.targets().begin(), stored.targets().end());
    stored.clear_targets();
    r.run = std::move(stored);
    r.seq = next_seq_++;
    r.offline_deadline = FromProto(r.run.offline_deadline());
    r.targets.assign(r.rows.size(), nullptr);
    for (size_t i = 0; i < r.rows.size(); ++i) {
      const v1::RunTarget& row = r.rows[i];
      if (row.skipped()) continue;
      ++r.target_count;
      TaskEntry* t = row.task_id().empty() ? nullptr : FindLocked(row.task_id());
      const v1::TaskStatus status = t != nullptr ? t->state.status : row.status();
      if (t != nullptr) {
        t->run = &r;
        t->run_index = static_cast<uint32_t>(i);
        r.targets[i] = t;
        ++r.live;
        if (t->state.attempt > 0) r.dispatched = true;
      }
      if (IsFinal(status)) {
        ++r.finals;
        if (IsError(status)) ++r.errors;
      } else if (t == nullptr) {
        // A target ended and removed is stored with its end; one without
        // is a task the store never got: lost.
        r.rows[i].set_status(v1::TASK_STATUS_LOST);
        ++r.finals;
        ++r.errors;
      } else if (status == v1::TASK_STATUS_QUEUED && !t->queued) {
        t->held = true;
        t->queue_deadline = absl::InfiniteFuture();
        ++r.held;
      } else {
        ++r.in_flight;
      }
    }
    if (r.live == 0 && IsFinal(r.run.status())) {
      store_.DeleteRun(r.run.id());
      continue;
    }
    if (!r.run.idempotency_key().empty()) {
      run_idempotency_[IdempotencyKey(r.run.owner(), r.run.idempotency_key())] = r.run.id();
    }
    RunEntry* raw = entry.get();
    runs_by_seq_[r.seq] = raw;
    if (!IsFinal(r.run.status())) open_runs_[r.seq] = raw;
    runs_.emplace(r.run.id(), std::move(entry));
  }
  // A target whose run record is missing runs as a task of its own.
  for (auto& [seq, t] : by_seq_) {
    if (t->run == nullptr && t->state.status == v1::TASK_STATUS_QUEUED && !t->queued) Enqueue(*t);
  }
  std::vector<RunEntry*> open;
  for (const auto& [seq, r] : open_runs_) open.push_back(r);
  for (RunEntry* r : open) {
    SettleRunLocked(*r);
    if (r->live == 0) EraseRunLocked(*r);
  }
  FlushRunsLocked(/*all=*/true);
  if (metrics_) metrics_->open_runs.Set(static_cast<double>(open_runs_.size()));
}

}  // namespace taskgrid
