#include "services/coordinator/task_counts.h"

#include <algorithm>
#include <vector>

#include "services/common/task_status.h"
#include "services/coordinator/task_registry_util.h"

namespace taskgrid {
absl::Duration TaskCounts::RanFor(const TaskState& task) {
  if (!IsFinal(task.status) || !TaskState::IsSet(task.started_at)) return -absl::Nanoseconds(1);
  return task.finished_at - task.started_at;
}

void TaskCounts::Count(const TaskState& task, const v1::TaskSpec& spec, int sign) {
  total_ += sign;
  by_status_[task.status] += sign;
  by_priority_[spec.priority()] += sign;
  auto it = by_type_.try_emplace(spec.type(), 0).first;
  if ((it->second += sign) == 0) by_type_.erase(it);
  if (const absl::Duration d = RanFor(task); d >= absl::ZeroDuration()) {
    ran_ += sign;
    ran_micros_ += sign * absl::ToInt64Microseconds(d);
  }
}

void TaskCounts::Add(const TaskState& task, const v1::TaskSpec& spec) {
  Count(task, spec, +1);
  if (const absl::Duration d = RanFor(task); d >= absl::ZeroDuration()) {
    recent_.push_back(absl::ToDoubleSeconds(d));
    if (recent_.size() > kRecentFinishes) recent_.pop_front();
  }
}

void TaskCounts::Changed(v1::TaskStatus from, const TaskState& task) {
  if (from == task.status) return;
  --by_status_[from];
  ++by_status_[task.status];
  if (const absl::Duration d = RanFor(task); d >= absl::ZeroDuration() && !IsFinal(from)) {
    ++ran_;
    ran_micros_ += absl::ToInt64Microseconds(d);
    recent_.push_back(absl::ToDoubleSeconds(d));
    if (recent_.size() > kRecentFinishes) recent_.pop_front();
  }
}

void TaskCounts::Remove(const TaskState& task, const v1::TaskSpec& spec) {
  Count(task, spec, -1);
}

int64_t TaskCounts::finished() const {
  int64_t n = 0;
  for (int st = v1::TASK_STATUS_SUCCEEDED; st < v1::TaskStatus_ARRAYSIZE; ++st) n += by_status_[st];
  return n;
}

v1::StatsResponse TaskCounts::Stats() const {
  v1::StatsResponse s;
  for (int st = v1::TASK_STATUS_PENDING; st <= v1::TASK_STATUS_LOST; ++st) {
    const auto status = static_cast<v1::TaskStatus>(st);
    (*s.mutable_by_status())[registry::StatusName(status)] = static_cast<int32_t>(by_status_[st]);
  }
  const int64_t finals = finished();
  for (int p = v1::PRIORITY_LOW; p <= v1::PRIORITY_CRITICAL; ++p) {
    (*s.mutable_by_priority())[registry::PriorityName(static_cast<v1::Priority>(p))] =
        static_cast<int32_t>(by_priority_[p]);
  }
  for (const auto& [type, n] : by_type_) (*s.mutable_by_type())[type] = static_cast<int32_t>(n);
  s.set_total(static_cast<int32_t>(total_));
  s.set_success_rate(finals == 0 ? 0
                                 : static_cast<double>(by_status_[v1::TASK_STATUS_SUCCEEDED]) /
                                       static_cast<double>(finals));
  // No percentiles once every finish that ran is gone (deleted or expired).
  if (ran_ == 0) return s;
  s.set_avg_execution_time(static_cast<double>(ran_micros_) / 1e6 / static_cast<double>(ran_));
  if (!recent_.empty()) {
    std::vector<double> d(recent_.begin(), recent_.end());
    auto pct = [&](double p) {
      const size_t k =
          std::min(d.size() - 1, static_cast<size_t>(p * static_cast<double>(d.size())));
      std::nth_element(d.begin(), d.begin() + static_cast<ptrdiff_t>(k), d.end());
      return d[k];
    };
    s.set_p50_execution_time(pct(0.50));
    s.set_p99_execution_time(pct(0.99));
  }
  return s;
}

}  // namespace taskgrid
