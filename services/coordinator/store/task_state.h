// TaskState: what the registry knows of a task besides its spec (held apart,
// once): its status and attempt, where and when it ran, how it ended. The
// registry holds it, the store journals it, and a v1::Task is assembled from
// it only for a reader. What the registry derives when read (output totals,
// the waiting reason) is not part of it.
#ifndef TASKGRID_SERVICES_COORDINATOR_STORE_TASK_STATE_H_
#define TASKGRID_SERVICES_COORDINATOR_STORE_TASK_STATE_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "taskgrid/v1/task.pb.h"

namespace taskgrid {

// How the process ended, as its agent reported (v1::ExitInfo).
struct TaskExit {
  int32_t exit_code = 0;
  int32_t signal = 0;
  absl::Duration cpu_time;
  int64_t max_rss_bytes = 0;
  std::string error;
  std::string container_id;
  bool oom_killed = false;
  int64_t memory_peak_bytes = 0;
};

struct TaskState {
  // Times not (yet) reached are absent from the v1::Task.
  static constexpr absl::Time kUnset = absl::InfinitePast();
  static bool IsSet(absl::Time t) { return t != kUnset; }

  std::string id;
  v1::TaskStatus status = v1::TASK_STATUS_UNSPECIFIED;
  std::string agent_id;  // Of the current attempt; empty while queued.
  uint32_t attempt = 0;
  uint32_t undelivered = 0;  // Attempts that never reached their agent.
  int32_t progress = 0;
  int64_t pid = 0;
  absl::Time created_at = kUnset;
  absl::Time updated_at = kUnset;
  absl::Time dispatched_at = kUnset;
  absl::Time started_at = kUnset;
  absl::Time finished_at = kUnset;
  absl::Time retry_at = kUnset;  // The next attempt is not dispatched before.
  std::optional<TaskExit> exit;
  std::string progress_message;
  std::string status_reason;
  std::string idempotency_key;
  std::string owner;
  std::string run_id;

  int32_t exit_code() const { return exit.has_value() ? exit->exit_code : 0; }

  // Every field above; no spec, output totals or waiting reason.
  v1::Task ToProto() const;
  // The state of `task`; its spec, output totals and waiting reason are
  // not read.
  static TaskState FromProto(const v1::Task& task);
};

TaskExit ExitFromProto(const v1::ExitInfo& exit);

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_STORE_TASK_STATE_H_
