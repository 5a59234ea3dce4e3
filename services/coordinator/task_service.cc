#include "services/coordinator/task_service.h"

#include <memory>

#include "absl/strings/match.h"
#include "services/common/status_util.h"
#include "services/coordinator/rpc_reply.h"
#include "services/coordinator/task_validation.h"

namespace taskgrid {
namespace {

// Streams events after a cursor: it keeps only its cursor and reads the next
// matching event from the shared log when the previous write completes, so a
// slow client costs no memory and, once behind the ring, is told to resync.
class WatchReactor final : public grpc::ServerWriteReactor<v1::WatchResponse>,
                           public EventLog::Listener {
 public:
  // `ticket` holds the caller's stream slot until the stream is done.
  WatchReactor(EventLog& log, const v1::WatchRequest& request, std::shared_ptr<void> ticket)
      : log_(log), request_(request), ticket_(std::move(ticket)) {
    cursor_ = request.has_after_cursor() ? request.after_cursor() : log.last_cursor();
  }

  void Begin(std::shared_ptr<WatchReactor> self) ABSL_LOCKS_EXCLUDED(mu_) {
    self_ = self;
    log_.AddListener(std::move(self),
                     {request_.task_id(), request_.run_id(), request_.agent_id()});
    absl::MutexLock lock(&mu_);
    PumpLocked();
  }

  void OnAppended() override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    PumpLocked();
  }

 private:
  bool Matches(const v1::TaskEvent& e) const {
    if (!request_.task_id().empty() && e.task_id() != request_.task_id()) return false;
    if (!request_.agent_id().empty() && e.agent_id() != request_.agent_id()) return false;
    if (!request_.run_id().empty() && e.run_id() != request_.run_id()) return false;
    if (request_.types_size() > 0 && std::find(request_.types().begin(), request_.types().end(),
                                               e.type()) == request_.types().end()) {
      return false;
    }
    return true;
  }

  // Sends what is available, up to a batch, when no write is in flight.
  void PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (write_in_flight_ || done_) return;
    response_.Clear();
    size_t bytes = 0;
    auto match = [this](const v1::TaskEvent& e) { return Matches(e); };
    while (response_.events_size() < kMaxBatchEvents && bytes < kMaxBatchBytes) {
      v1::TaskEvent* slot = response_.add_events();
      if (!log_.Next(cursor_, match, *slot, request_.task_id())) {
        response_.mutable_events()->RemoveLast();
        break;
      }
      bytes += slot->ByteSizeLong();
    }
    if (response_.events_size() == 0) return;
    write_in_flight_ = true;
    StartWrite(&response_);
  }

  void OnWriteDone(bool ok) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    write_in_flight_ = false;
    if (pending_finish_) {
      pending_finish_ = false;
      Finish(grpc::Status::CANCELLED);
      return;
    }
    if (!ok) {
      FinishLocked(grpc::Status::CANCELLED);
      return;
    }
    PumpLocked();
  }

  void OnCancel() override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    FinishLocked(grpc::Status::CANCELLED);
  }

  void FinishLocked(const grpc::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (done_) return;
    done_ = true;
    if (!write_in_flight_)
      Finish(s);
    else
      pending_finish_ = true;
  }

  void OnDone() override {
    log_.RemoveListener(this);
    ticket_.reset();
    self_.reset();  // May delete this.
  }

  static constexpr int kMaxBatchEvents = 256;
  static constexpr size_t kMaxBatchBytes = 1 << 20;

  EventLog& log_;
  const v1::WatchRequest request_;
  std::shared_ptr<void> ticket_;
  std::shared_ptr<WatchReactor> self_;
  absl::Mutex mu_;
  uint64_t cursor_ ABSL_GUARDED_BY(mu_);
  v1::WatchResponse response_ ABSL_GUARDED_BY(mu_);  // In flight while write_in_flight_.
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool pending_finish_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerUnaryReactor* TaskServiceImpl::Submit(grpc::CallbackServerContext* ctx,
                                                  const v1::SubmitRequest* req,
                                                  v1::SubmitResponse* resp) {
  constexpr absl::string_view kAction = "task.submit";
  absl::StatusOr<Caller> caller = access_.Authorize(ctx, Scope::kSubmit, kAction);
  if (!caller.ok()) return Reply(ctx, caller.status());
  if (absl::Status s = ValidateTargeting(req->spec()); !s.ok()) return Reply(ctx, s);
  v1::SubmitRequest request = *req;
  absl::StatusOr<SubmitLimits> limits = access_.AdmitSubmit(*caller, *request.mutable_spec(), kAction);
  if (!limits.ok()) return Reply(ctx, limits.status());
  if (absl::Status s = access_.TakeSubmits(*caller, 1, kAction); !s.ok()) return Reply(ctx, s);
  absl::StatusOr<v1::SubmitResponse> result = registry_.Submit(request, *limits);
  access_.Record(*caller, kAction, result.ok() ? result->task().id() : "", result.status());
  return ReplyWhenDurable(ctx, registry_, std::move(result), resp);
}

grpc::ServerUnaryReactor* TaskServiceImpl::SubmitBatch(grpc::CallbackServerContext* ctx,
                                                       const v1::SubmitBatchRequest* req,
                                                       v1::SubmitBatchResponse* resp) {
  constexpr absl::string_view kAction = "task.submit";
  absl::StatusOr<Caller> caller = access_.Authorize(ctx, Scope::kSubmit, kAction);
  if (!caller.ok()) return Reply(ctx, caller.status());
  v1::SubmitBatchRequest batch = *req;
  SubmitLimits limits;  // The same for every request of the caller.
  limits.owner = caller->key;
  for (v1::SubmitRequest& r : *batch.mutable_requests()) {
    if (absl::Status s = ValidateTargeting(r.spec()); !s.ok()) return Reply(ctx, s);
    absl::StatusOr<SubmitLimits> admitted = access_.AdmitSubmit(*caller, *r.mutable_spec(), kAction);
    if (!admitted.ok()) return Reply(ctx, admitted.status());
    limits = *admitted;
  }
  if (absl::Status s = access_.TakeSubmits(*caller, batch.requests_size(), kAction); !s.ok()) {
    return Reply(ctx, s);
  }
  absl::StatusOr<v1::SubmitBatchResponse> result = registry_.SubmitBatch(batch, limits);
  if (!result.ok()) {
    access_.Record(*caller, kAction, "", result.status());
  } else {
    std::vector<std::pair<std::string, absl::Status>> outcomes;
    outcomes.reserve(result->results_size());
    for (const auto& r : result->results()) {
      outcomes.emplace_back(r.response().task().id(),
                            absl::Status(static_cast<absl::StatusCode>(r.code()), r.message()));
    }
    access_.RecordEach(*caller, kAction, outcomes);
  }
  return ReplyWhenDurable(ctx, registry_, std::move(result), resp);
}

grpc::ServerUnaryReactor* TaskServiceImpl::Get(grpc::CallbackServerContext* ctx,
                                               const v1::GetRequest* req, v1::Task* resp) {
  if (auto c = access_.Authorize(ctx, Scope::kRead, "task.get"); !c.ok()) return Reply(ctx, c.status());
  return Reply(ctx, registry_.Get(req->task_id()), resp);
}

grpc::ServerUnaryReactor* TaskServiceImpl::List(grpc::CallbackServerContext* ctx,
                                                const v1::ListRequest* req,
                                                v1::ListResponse* resp) {
  if (auto c = access_.Authorize(ctx, Scope::kRead, "task.list"); !c.ok()) return Reply(ctx, c.status());
  if (absl::Status s = ValidateListRequest(*req); !s.ok()) return Reply(ctx, s);
  return Reply(ctx, registry_.List(*req), resp);
}

grpc::ServerUnaryReactor* TaskServiceImpl::Cancel(grpc::CallbackServerContext* ctx,
                                                  const v1::CancelRequest* req, v1::Task* resp) {
  constexpr absl::string_view kAction = "task.cancel";
  absl::StatusOr<Caller> caller = access_.Authorize(ctx, Scope::kRead, kAction);
  if (!caller.ok()) return Reply(ctx, caller.status());
  absl::Status allowed = access_.MayChangeTask(*caller, "task_id", req->task_id(), kAction);
  if (!allowed.ok()) return Reply(ctx, allowed);  // Audited as refused.
  absl::StatusOr<v1::Task> result = registry_.Cancel(req->task_id(), req->reason());
  access_.Record(*caller, kAction, req->task_id(), result.status());
  return ReplyWhenDurable(ctx, registry_, std::move(result), resp);
}

grpc::ServerUnaryReactor* TaskServiceImpl::Delete(grpc::CallbackServerContext* ctx,
                                                  const v1::DeleteRequest* req,
                                                  v1::DeleteResponse* resp) {
  constexpr absl::string_view kAction = "task.delete";
  absl::StatusOr<Caller> caller = access_.Authorize(ctx, Scope::kRead, kAction);
  if (!caller.ok()) return Reply(ctx, caller.status());
  if (absl::Status allowed = access_.MayChangeTask(*caller, "task_id", req->task_id(), kAction);
      !allowed.ok()) {
    return Reply(ctx, allowed);  // Audited as refused.
  }
  absl::Status s = registry_.Delete(req->task_id());
  access_.Record(*caller, kAction, req->task_id(), s);
  return ReplyWhenDurable(ctx, registry_, s);
}

grpc::ServerUnaryReactor* TaskServiceImpl::Stats(grpc::CallbackServerContext* ctx,
                                                 const v1::StatsRequest* req,
                                                 v1::StatsResponse* resp) {
  if (auto c = access_.Authorize(ctx, Scope::kRead, "task.stats"); !c.ok()) return Reply(ctx, c.status());
  *resp = registry_.Stats();
  return Reply(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* TaskServiceImpl::GetOutput(grpc::CallbackServerContext* ctx,
                                                     const v1::GetOutputRequest* req,
                                                     v1::GetOutputResponse* resp) {
  if (auto c = access_.Authorize(ctx, Scope::kRead, "task.output"); !c.ok()) return Reply(ctx, c.status());
  return Reply(ctx, registry_.GetOutput(*req), resp);
}

grpc::ServerUnaryReactor* TaskServiceImpl::ListAgents(grpc::CallbackServerContext* ctx,
                                                      const v1::ListAgentsRequest* req,
                                                      v1::ListAgentsResponse* resp) {
  if (auto c = access_.Authorize(ctx, Scope::kRead, "agent.list"); !c.ok()) return Reply(ctx, c.status());
  *resp = registry_.ListAgents();
  return Reply(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* TaskServiceImpl::ListAudit(grpc::CallbackServerContext* ctx,
                                                     const v1::ListAuditRequest* req,
                                                     v1::ListAuditResponse* resp) {
  if (auto c = access_.Authorize(ctx, Scope::kAdmin, "audit.list"); !c.ok()) return Reply(ctx, c.status());
  return Reply(ctx, registry_.ListAudit(*req), resp);
}

grpc::ServerUnaryReactor* TaskServiceImpl::SubmitRun(grpc::CallbackServerContext* ctx,
                                                     const v1::SubmitRunRequest* req,
                                                     v1::SubmitRunResponse* resp) {
  constexpr absl::string_view kAction = "run.submit";
  absl::StatusOr<Caller> caller = access_.Authorize(ctx, Scope::kSubmit, kAction);
  if (!caller.ok()) return Reply(ctx, caller.status());
  v1::SubmitRunRequest request = *req;
  // Without a template there is nothing for the key's policy to look at
  // (and mutable_task() would make an empty one).
  if (!request.spec().has_task()) return Reply(ctx, ValidateRunSpec(request.spec()));
  absl::StatusOr<SubmitLimits> limits =
      access_.AdmitSubmit(*caller, *request.mutable_spec()->mutable_task(), kAction);
  if (!limits.ok()) return Reply(ctx, InRunTemplate(limits.status()));
  if (absl::Status s = access_.TakeSubmits(*caller, 1, kAction); !s.ok()) return Reply(ctx, s);
  absl::StatusOr<v1::SubmitRunResponse> result = registry_.SubmitRun(request, *limits);
  access_.Record(*caller, kAction, result.ok() ? result->run().id() : "", result.status());
  return ReplyWhenDurable(ctx, registry_, std::move(result), resp);
}

grpc::ServerUnaryReactor* TaskServiceImpl::GetRun(grpc::CallbackServerContext* ctx,
                                                  const v1::GetRunRequest* req, v1::Run* resp) {
  if (auto c = access_.Authorize(ctx, Scope::kRead, "run.get"); !c.ok()) return Reply(ctx, c.status());
  return Reply(ctx, registry_.GetRun(req->run_id()), resp);
}

grpc::ServerUnaryReactor* TaskServiceImpl::ListRuns(grpc::CallbackServerContext* ctx,
                                                    const v1::ListRunsRequest* req,
                                                    v1::ListRunsResponse* resp) {
  if (auto c = access_.Authorize(ctx, Scope::kRead, "run.list"); !c.ok()) return Reply(ctx, c.status());
  return Reply(ctx, registry_.ListRuns(*req), resp);
}

grpc::ServerUnaryReactor* TaskServiceImpl::CancelRun(grpc::CallbackServerContext* ctx,
                                                     const v1::CancelRunRequest* req,
                                                     v1::Run* resp) {
  constexpr absl::string_view kAction = "run.cancel";
  absl::StatusOr<Caller> caller = access_.Authorize(ctx, Scope::kRead, kAction);
  if (!caller.ok()) return Reply(ctx, caller.status());
  absl::Status allowed = access_.MayChangeTask(*caller, "run_id", req->run_id(), kAction);
  if (!allowed.ok()) return Reply(ctx, allowed);  // Audited as refused.
  absl::StatusOr<v1::Run> result = registry_.CancelRun(req->run_id(), req->reason());
  access_.Record(*caller, kAction, req->run_id(), result.status());
  return ReplyWhenDurable(ctx, registry_, std::move(result), resp);
}

grpc::ServerWriteReactor<v1::WatchResponse>* TaskServiceImpl::Watch(
    grpc::CallbackServerContext* ctx, const v1::WatchRequest* req) {
  absl::StatusOr<Caller> caller = access_.Authorize(ctx, Scope::kRead, "task.watch");
  absl::Status s = caller.status();
  absl::StatusOr<std::shared_ptr<void>> ticket;
  if (s.ok()) s = (ticket = access_.OpenStream(*caller, "task.watch")).status();
  if (s.ok()) s = ValidateWatchRequest(*req);
  if (!s.ok()) {
    class Rejected final : public grpc::ServerWriteReactor<v1::WatchResponse> {
     public:
      explicit Rejected(const absl::Status& s) { Finish(ToGrpcStatus(s)); }
      void OnDone() override { delete this; }
    };
    return new Rejected(s);
  }
  auto reactor = std::make_shared<WatchReactor>(events_, *req, std::move(*ticket));
  reactor->Begin(reactor);
  return reactor.get();
}

}  // namespace taskgrid
