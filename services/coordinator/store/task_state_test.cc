#include "services/coordinator/store/task_state.h"

#include <gtest/gtest.h>

namespace taskgrid {
namespace {

TEST(TaskStateTest, EveryFieldSurvivesTheTaskProto) {
  const absl::Time t0 = absl::FromUnixMillis(1'700'000'000'123);
  TaskState s;
  s.id = "0f8b1f5e-3c1d-4a6e-9a0b-2b4c6d8e0f12";
  s.status = v1::TASK_STATUS_FAILED;
  s.agent_id = "agent-7";
  s.attempt = 3;
  s.undelivered = 1;
  s.progress = 42;
  s.pid = 4242;
  s.created_at = t0;
  s.updated_at = t0 + absl::Seconds(5);
  s.dispatched_at = t0 + absl::Seconds(1);
  s.started_at = t0 + absl::Seconds(2);
  s.finished_at = t0 + absl::Seconds(5);
  s.retry_at = t0 + absl::Seconds(9);
  s.exit = TaskExit{2, 0, absl::Milliseconds(1500), 1 << 20, "boom", "c0ffee", true, 3 << 20};
  s.progress_message = "halfway";
  s.status_reason = "exit code 2";
  s.idempotency_key = "deploy-1";
  s.owner = "ci";
  s.run_id = "run-1";

  const v1::Task task = s.ToProto();
  EXPECT_FALSE(task.has_spec());
  EXPECT_EQ(task.exit().exit_code(), 2);
  const TaskState back = TaskState::FromProto(task);
  EXPECT_EQ(back.ToProto().SerializeAsString(), task.SerializeAsString());
  EXPECT_EQ(back.started_at, s.started_at);
  EXPECT_EQ(back.exit->cpu_time, absl::Milliseconds(1500));
  EXPECT_TRUE(back.exit->oom_killed);
  EXPECT_EQ(back.exit->memory_peak_bytes, 3 << 20);
  EXPECT_EQ(back.exit_code(), 2);
}

TEST(TaskStateTest, TimesNotReachedAndNoExitStayAbsent) {
  TaskState s;
  s.id = "a";
  s.status = v1::TASK_STATUS_QUEUED;
  s.created_at = absl::FromUnixSeconds(1);
  const v1::Task task = s.ToProto();
  EXPECT_TRUE(task.has_created_at());
  EXPECT_FALSE(task.has_started_at());
  EXPECT_FALSE(task.has_finished_at());
  EXPECT_FALSE(task.has_retry_at());
  EXPECT_FALSE(task.has_exit());
  const TaskState back = TaskState::FromProto(task);
  EXPECT_FALSE(TaskState::IsSet(back.started_at));
  EXPECT_FALSE(back.exit.has_value());
  EXPECT_EQ(back.exit_code(), 0);
}

}  // namespace
}  // namespace taskgrid
