#include "services/coordinator/task_counts.h"

#include <gtest/gtest.h>


namespace taskgrid {
namespace {

struct Task {
  TaskState state;
  v1::TaskSpec spec;
};

Task MakeTask(v1::TaskStatus status, const std::string& type = "shell",
              v1::Priority priority = v1::PRIORITY_MEDIUM) {
  Task t;
  t.state.status = status;
  t.spec.set_type(type);
  t.spec.set_priority(priority);
  return t;
}

// Finished `seconds` after it started.
void Finish(Task& t, v1::TaskStatus status, double seconds) {
  const absl::Time start = absl::FromUnixSeconds(1000);
  t.state.started_at = start;
  t.state.finished_at = start + absl::Seconds(seconds);
  t.state.status = status;
}

TEST(TaskCountsTest, CountsFollowEveryChange) {
  TaskCounts c;
  Task a = MakeTask(v1::TASK_STATUS_PENDING);
  Task b = MakeTask(v1::TASK_STATUS_QUEUED, "docker", v1::PRIORITY_HIGH);
  c.Add(a.state, a.spec);
  c.Add(b.state, b.spec);
  EXPECT_EQ(c.total(), 2);
  EXPECT_EQ(c.with_status(v1::TASK_STATUS_QUEUED), 1);
  EXPECT_EQ(c.finished(), 0);

  const v1::TaskStatus from = a.state.status;
  a.state.status = v1::TASK_STATUS_RUNNING;
  c.Changed(from, a.state);
  v1::StatsResponse s = c.Stats();
  EXPECT_EQ(s.total(), 2);
  EXPECT_EQ(s.by_status().at("running"), 1);
  EXPECT_EQ(s.by_status().at("pending"), 0);
  EXPECT_EQ(s.by_type().at("docker"), 1);
  EXPECT_EQ(s.by_priority().at("high"), 1);

  c.Remove(b.state, b.spec);
  s = c.Stats();
  EXPECT_EQ(s.total(), 1);
  EXPECT_EQ(s.by_type().count("docker"), 0u);  // No type left at zero.
  EXPECT_EQ(c.with_status(static_cast<v1::TaskStatus>(99)), 0);
}

TEST(TaskCountsTest, SuccessRateAndExecutionTimes) {
  TaskCounts c;
  std::vector<Task> tasks;
  for (int i = 1; i <= 4; ++i) {
    Task t = MakeTask(v1::TASK_STATUS_RUNNING);
    c.Add(t.state, t.spec);
    Finish(t, i == 4 ? v1::TASK_STATUS_FAILED : v1::TASK_STATUS_SUCCEEDED, i);
    c.Changed(v1::TASK_STATUS_RUNNING, t.state);
    tasks.push_back(t);
  }
  Task never = MakeTask(v1::TASK_STATUS_QUEUED);
  c.Add(never.state, never.spec);
  never.state.status = v1::TASK_STATUS_CANCELLED;  // Never started: no time.
  c.Changed(v1::TASK_STATUS_QUEUED, never.state);

  v1::StatsResponse s = c.Stats();
  EXPECT_EQ(c.finished(), 5);
  EXPECT_DOUBLE_EQ(s.success_rate(), 3.0 / 5.0);
  EXPECT_DOUBLE_EQ(s.avg_execution_time(), 2.5);
  EXPECT_DOUBLE_EQ(s.p50_execution_time(), 3.0);
  EXPECT_DOUBLE_EQ(s.p99_execution_time(), 4.0);

  // A removed task leaves the mean; the percentiles keep recent finishes.
  c.Remove(tasks[3].state, tasks[3].spec);
  s = c.Stats();
  EXPECT_DOUBLE_EQ(s.avg_execution_time(), 2.0);
  EXPECT_DOUBLE_EQ(s.success_rate(), 3.0 / 4.0);
  for (int i = 0; i < 3; ++i) c.Remove(tasks[i].state, tasks[i].spec);
  s = c.Stats();
  EXPECT_EQ(s.avg_execution_time(), 0);  // Nothing that ran is left: no times at all.
  EXPECT_EQ(s.p50_execution_time(), 0);
}

TEST(TaskCountsTest, RecoveredFinishedTasksCountTheirTimes) {
  TaskCounts c;
  Task t = MakeTask(v1::TASK_STATUS_PENDING);
  Finish(t, v1::TASK_STATUS_SUCCEEDED, 7);
  c.Add(t.state, t.spec);
  EXPECT_DOUBLE_EQ(c.Stats().p50_execution_time(), 7.0);
  EXPECT_DOUBLE_EQ(c.Stats().avg_execution_time(), 7.0);
}

TEST(TaskCountsTest, PercentilesOverABoundedWindow) {
  TaskCounts c;
  for (size_t i = 0; i < TaskCounts::kRecentFinishes + 100; ++i) {
    Task t = MakeTask(v1::TASK_STATUS_RUNNING);
    c.Add(t.state, t.spec);
    // The oldest finishes are slow; the window holds only fast ones.
    Finish(t, v1::TASK_STATUS_SUCCEEDED, i < 100 ? 1000 : 1);
    c.Changed(v1::TASK_STATUS_RUNNING, t.state);
  }
  EXPECT_DOUBLE_EQ(c.Stats().p99_execution_time(), 1.0);
  EXPECT_GT(c.Stats().avg_execution_time(), 1.0);  // The mean is over all.
}

}  // namespace
}  // namespace taskgrid
