// The tick: queue and run timeouts, retries coming due, agents' TTLs,
// retention, event trimming, run flushes. Each touches only what is due.
#include "services/coordinator/task_registry.h"

#include "absl/strings/str_cat.h"

namespace taskgrid {

void TaskRegistry::Tick() {
  WriteLock lock(this);
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
                     absl::StrCat("not started within ", absl::FormatDuration(now - t.state.created_at),
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
  AgentDirectory::Due agents = agents_.Check(now);
  for (AgentEntry* a : agents.silent) {
    AgentOfflineLocked(*a, absl::StrCat("agent ", a->info.agent_id(), " silent for ",
                                        absl::FormatDuration(now - a->last_seen)));
  }
  for (const std::string& id : agents.forgotten) {
    store_.DeleteAgent(id);
    PublishLocked(monitor_.ForgetAgent(id));
  }
  while (!finished_order_.empty() && (now - finished_order_.front().first >= options_.retention ||
                                      counts_.finished() > static_cast<int64_t>(options_.max_retained_tasks))) {
    const auto it = by_seq_.find(finished_order_.front().second);
    finished_order_.pop_front();
    if (it != by_seq_.end() && IsFinal(it->second->state.status)) {
      RemoveLocked(std::string(it->second->state.id));
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
