// Following work live from a terminal: the CLI's call context, output written
// exactly once by offset, a task or a fleet run followed to its end across
// broken streams, and Ctrl-C turned into a cancel.
#ifndef TASKGRID_SERVICES_CLI_FOLLOW_H_
#define TASKGRID_SERVICES_CLI_FOLLOW_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "services/common/task_status.h"
#include "taskgrid/v1/task_service.grpc.pb.h"

namespace taskgrid::cli {

// What every command calls the coordinator with. Not thread-safe to change;
// calls from several threads are fine.
struct Context {
  std::unique_ptr<v1::TaskService::Stub> stub;
  std::string api_key;
  bool json = false;

  std::unique_ptr<grpc::ClientContext> Call(absl::Duration timeout = absl::Seconds(30)) const;
};

// Print "taskgrid: WHAT" on stderr and return kExitError.
int Fail(const std::string& what);
int Fail(const grpc::Status& s);
// The proto3 JSON of `m` on one line.
std::string Json(const google::protobuf::Message& m);
std::string StatusName(v1::TaskStatus s);  // "running"
// The exit code `taskgrid run` returns for a finished task.
int ExitCodeOf(const v1::Task& t);

// Writes a task's output exactly once, whatever mix of live events, replays
// and GetOutput reads delivers it. Not thread-safe.
class OutputSink {
 public:
  // Receives bytes of stream 0 (stdout) or 1 (stderr), in order.
  using Writer = std::function<void(int stream, absl::string_view data)>;
  // By default stdout goes to stdout and stderr to stderr.
  OutputSink(const Context& ctx, std::string task_id, Writer writer = nullptr);

  void OnChunk(const v1::OutputChunk& c);
  // Reads retained output up to `until` (or everything) for stream i.
  void CatchUp(int i, int64_t until = INT64_MAX);

 private:
  const Context& ctx_;
  const std::string task_id_;
  const Writer writer_;
  int64_t next_[2] = {0, 0};
};

// Follows a task's events from `after` until it is final, writing output.
// Returns the final task. Survives broken streams by resuming at the last
// cursor seen.
absl::StatusOr<v1::Task> Follow(const Context& ctx, const std::string& task_id, uint64_t after,
                                bool show_progress);

// Follows a fleet run from `after` until it is final: each target's output
// line by line with its agent id in front (JSON lines with ctx.json), a
// live progress line on a terminal, and a line for each target that did not
// succeed. Returns the final run with its target rows.
absl::StatusOr<v1::Run> FollowRun(const Context& ctx, const v1::Run& run, uint64_t after,
                                  bool show_progress);

// Calls `cancel` on the first SIGINT/SIGTERM (saying so with `what`); exits
// at once on the second.
class CancelOnSignal {
 public:
  CancelOnSignal(std::string what, std::function<void()> cancel);
  ~CancelOnSignal();

 private:
  std::thread thread_;
};

}  // namespace taskgrid::cli

#endif  // TASKGRID_SERVICES_CLI_FOLLOW_H_
