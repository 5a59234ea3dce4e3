#include "services/coordinator/store/task_state.h"

#include "services/common/proto_time.h"

namespace taskgrid {
namespace {

void SetTime(absl::Time t, google::protobuf::Timestamp* (v1::Task::*field)(), v1::Task& task) {
  if (TaskState::IsSet(t)) *(task.*field)() = ToProto(t);
}

}  // namespace

TaskExit ExitFromProto(const v1::ExitInfo& exit) {
  return TaskExit{exit.exit_code(),   exit.signal(),       FromProto(exit.cpu_time()),
                  exit.max_rss_bytes(), exit.error(),        exit.container_id(),
                  exit.oom_killed(),    exit.memory_peak_bytes()};
}

v1::Task TaskState::ToProto() const {
  v1::Task t;
  t.set_id(id);
  t.set_status(status);
  t.set_agent_id(agent_id);
  t.set_attempt(attempt);
  t.set_undelivered(undelivered);
  t.set_progress(progress);
  t.set_pid(pid);
  SetTime(created_at, &v1::Task::mutable_created_at, t);
  SetTime(updated_at, &v1::Task::mutable_updated_at, t);
  SetTime(dispatched_at, &v1::Task::mutable_dispatched_at, t);
  SetTime(started_at, &v1::Task::mutable_started_at, t);
  SetTime(finished_at, &v1::Task::mutable_finished_at, t);
  SetTime(retry_at, &v1::Task::mutable_retry_at, t);
  if (exit.has_value()) {
    v1::ExitInfo& e = *t.mutable_exit();
    e.set_exit_code(exit->exit_code);
    e.set_signal(exit->signal);
    *e.mutable_cpu_time() = taskgrid::ToProto(exit->cpu_time);
    e.set_max_rss_bytes(exit->max_rss_bytes);
    e.set_error(exit->error);
    e.set_container_id(exit->container_id);
    e.set_oom_killed(exit->oom_killed);
    e.set_memory_peak_bytes(exit->memory_peak_bytes);
  }
  t.set_progress_message(progress_message);
  t.set_status_reason(status_reason);
  t.set_idempotency_key(idempotency_key);
  t.set_owner(owner);
  t.set_run_id(run_id);
  return t;
}

TaskState TaskState::FromProto(const v1::Task& task) {
  auto time = [](bool has, const google::protobuf::Timestamp& t) {
    return has ? taskgrid::FromProto(t) : kUnset;
  };
  TaskState s;
  s.id = task.id();
  s.status = task.status();
  s.agent_id = task.agent_id();
  s.attempt = task.attempt();
  s.undelivered = task.undelivered();
  s.progress = task.progress();
  s.pid = task.pid();
  s.created_at = time(task.has_created_at(), task.created_at());
  s.updated_at = time(task.has_updated_at(), task.updated_at());
  s.dispatched_at = time(task.has_dispatched_at(), task.dispatched_at());
  s.started_at = time(task.has_started_at(), task.started_at());
  s.finished_at = time(task.has_finished_at(), task.finished_at());
  s.retry_at = time(task.has_retry_at(), task.retry_at());
  if (task.has_exit()) s.exit = ExitFromProto(task.exit());
  s.progress_message = task.progress_message();
  s.status_reason = task.status_reason();
  s.idempotency_key = task.idempotency_key();
  s.owner = task.owner();
  s.run_id = task.run_id();
  return s;
}

}  // namespace taskgrid
