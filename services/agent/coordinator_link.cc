#include "services/agent/coordinator_link.h"

namespace taskgrid {

std::shared_ptr<CoordinatorLink> CoordinatorLink::Create(MessageHandler on_message,
                                                         DoneHandler on_done) {
  return std::shared_ptr<CoordinatorLink>(
      new CoordinatorLink(std::move(on_message), std::move(on_done)));
}

void CoordinatorLink::Start(v1::AgentService::Stub& stub, const v1::AgentMessage& hello) {
  stub.async()->Connect(&context_, this);
  StartRead(&in_);
  {
    absl::MutexLock lock(&mu_);
    outbox_.Add(hello);
    StartWrite(outbox_.StartNext());
  }
  // Writes also start outside reactions (from process threads): the hold
  // keeps the call open until we stop writing.
  AddHold();
  StartCall();
}

bool CoordinatorLink::Send(v1::AgentMessage message) {
  absl::MutexLock lock(&mu_);
  if (ending_) return false;
  outbox_.Add(std::move(message));
  if (const v1::AgentBatch* next = outbox_.StartNext()) StartWrite(next);
  return true;
}

void CoordinatorLink::StopWritingLocked() {
  ending_ = true;
  if (!outbox_.in_flight() && !hold_released_) {
    hold_released_ = true;
    RemoveHold();
  }
}

void CoordinatorLink::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  outbox_.Done();
  if (!ok) ending_ = true;
  if (ending_) {
    outbox_.Clear();
    StopWritingLocked();
  } else if (const v1::AgentBatch* next = outbox_.StartNext()) {
    StartWrite(next);
  }
}

void CoordinatorLink::OnReadDone(bool ok) {
  if (!ok) {
    absl::MutexLock lock(&mu_);
    StopWritingLocked();
    return;
  }
  for (const v1::CoordinatorMessage& m : in_.messages()) on_message_(this, m);
  StartRead(&in_);
}

void CoordinatorLink::OnDone(const grpc::Status& status) { on_done_(this, status); }

}  // namespace taskgrid
