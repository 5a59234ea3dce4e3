// TaskService over gRPC: authorizes each call (AccessControl), delegates to
// the registry and audits what changed. Watch streams the event log from a
// cursor.
#ifndef TASKGRID_SERVICES_COORDINATOR_TASK_SERVICE_H_
#define TASKGRID_SERVICES_COORDINATOR_TASK_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "services/coordinator/access_control.h"
#include "services/coordinator/event_log.h"
#include "services/coordinator/task_registry.h"
#include "taskgrid/v1/task_service.grpc.pb.h"

namespace taskgrid {

// Thread-safe; owned by the coordinator, outlived by the registry and log.
class TaskServiceImpl final : public v1::TaskService::CallbackService {
 public:
  TaskServiceImpl(TaskRegistry& registry, EventLog& events, AccessControl& access)
      : registry_(registry), events_(events), access_(access) {}

  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* ctx, const v1::SubmitRequest* req,
                                   v1::SubmitResponse* resp) override;
  grpc::ServerUnaryReactor* SubmitBatch(grpc::CallbackServerContext* ctx,
                                        const v1::SubmitBatchRequest* req,
                                        v1::SubmitBatchResponse* resp) override;
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx, const v1::GetRequest* req,
                                v1::Task* resp) override;
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* ctx, const v1::ListRequest* req,
                                 v1::ListResponse* resp) override;
  grpc::ServerUnaryReactor* Cancel(grpc::CallbackServerContext* ctx, const v1::CancelRequest* req,
                                   v1::Task* resp) override;
  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* ctx, const v1::DeleteRequest* req,
                                   v1::DeleteResponse* resp) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* ctx, const v1::StatsRequest* req,
                                  v1::StatsResponse* resp) override;
  grpc::ServerUnaryReactor* GetOutput(grpc::CallbackServerContext* ctx,
                                      const v1::GetOutputRequest* req,
                                      v1::GetOutputResponse* resp) override;
  grpc::ServerUnaryReactor* ListAgents(grpc::CallbackServerContext* ctx,
                                       const v1::ListAgentsRequest* req,
                                       v1::ListAgentsResponse* resp) override;
  grpc::ServerUnaryReactor* ListAudit(grpc::CallbackServerContext* ctx,
                                      const v1::ListAuditRequest* req,
                                      v1::ListAuditResponse* resp) override;
  grpc::ServerUnaryReactor* SubmitRun(grpc::CallbackServerContext* ctx,
                                      const v1::SubmitRunRequest* req,
                                      v1::SubmitRunResponse* resp) override;
  grpc::ServerUnaryReactor* GetRun(grpc::CallbackServerContext* ctx, const v1::GetRunRequest* req,
                                   v1::Run* resp) override;
  grpc::ServerUnaryReactor* ListRuns(grpc::CallbackServerContext* ctx,
                                     const v1::ListRunsRequest* req,
                                     v1::ListRunsResponse* resp) override;
  grpc::ServerUnaryReactor* CancelRun(grpc::CallbackServerContext* ctx,
                                      const v1::CancelRunRequest* req, v1::Run* resp) override;
  grpc::ServerWriteReactor<v1::WatchResponse>* Watch(grpc::CallbackServerContext* ctx,
                                                     const v1::WatchRequest* req) override;

 private:
  TaskRegistry& registry_;
  EventLog& events_;
  AccessControl& access_;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COORDINATOR_TASK_SERVICE_H_
