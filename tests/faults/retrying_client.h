// A TaskService client that rides out a coordinator restart or failover:
// every call is sent as soon as a coordinator is reachable and retried while
// the answer is UNAVAILABLE or DEADLINE_EXCEEDED, for up to a minute.
#ifndef TASKGRID_TESTS_FAULTS_RETRYING_CLIENT_H_
#define TASKGRID_TESTS_FAULTS_RETRYING_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "services/common/coordinator_channel.h"
#include "taskgrid/v1/task_service.grpc.pb.h"

namespace taskgrid {

class RetryingClient {
 public:
  explicit RetryingClient(const std::string& addresses)
      : stub_(v1::TaskService::NewStub(CoordinatorChannel(addresses))) {}

  v1::TaskService::Stub& stub() { return *stub_; }

  // `rpc(context)` makes one attempt.
  template <typename Rpc>
  grpc::Status Call(Rpc rpc) {
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    for (;;) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      ctx.set_wait_for_ready(true);
      grpc::Status s = rpc(ctx);
      if ((s.error_code() != grpc::StatusCode::UNAVAILABLE &&
           s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) ||
          absl::Now() > give_up) {
        return s;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
  }

  grpc::Status Submit(const v1::SubmitRequest& req, v1::SubmitResponse* resp) {
    return Call([&](grpc::ClientContext& c) { return stub_->Submit(&c, req, resp); });
  }

  grpc::Status Get(const std::string& id, v1::Task* task) {
    v1::GetRequest req;
    req.set_task_id(id);
    return Call([&](grpc::ClientContext& c) { return stub_->Get(&c, req, task); });
  }

  // The whole retained output of one stream (head and tail); `dropped` gets
  // the bytes not retained between them.
  std::string ReadOutput(const std::string& id, v1::OutputStream stream, int64_t* dropped) {
    std::string out;
    for (int64_t offset = 0;;) {
      v1::GetOutputRequest req;
      req.set_task_id(id);
      req.set_stream(stream);
      req.set_offset(offset);
      v1::GetOutputResponse resp;
      if (!Call([&](grpc::ClientContext& c) { return stub_->GetOutput(&c, req, &resp); }).ok()) {
        return out + "<GetOutput failed>";
      }
      *dropped = resp.dropped_bytes();
      if (resp.data().empty()) return out;
      out += resp.data();
      offset = resp.offset() + static_cast<int64_t>(resp.data().size());
    }
  }

  // Agents with an open stream, or -1 when the coordinator did not answer.
  int ConnectedAgents() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    ctx.set_wait_for_ready(true);
    v1::ListAgentsResponse resp;
    if (!stub_->ListAgents(&ctx, {}, &resp).ok()) return -1;
    int n = 0;
    for (const auto& a : resp.agents()) n += a.connected();
    return n;
  }

  // Number of tasks not yet final, or -1 when the coordinator did not answer.
  int Unfinished() {
    v1::ListRequest req;
    for (v1::TaskStatus s : {v1::TASK_STATUS_PENDING, v1::TASK_STATUS_QUEUED,
                             v1::TASK_STATUS_DISPATCHED, v1::TASK_STATUS_RUNNING}) {
      req.add_status(s);
    }
    req.set_page_size(1);
    v1::ListResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    ctx.set_wait_for_ready(true);
    return stub_->List(&ctx, req, &resp).ok() ? static_cast<int>(resp.total()) : -1;
  }

 private:
  std::unique_ptr<v1::TaskService::Stub> stub_;
};

}  // namespace taskgrid

#endif  // TASKGRID_TESTS_FAULTS_RETRYING_CLIENT_H_
