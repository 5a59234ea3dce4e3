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
    outbox_.push_back(hello);
    write_in_flight_ = true;
    StartWrite(&outbox_.front());
  }
  // Writes also start outside reactions (from process threads): the hold
  // keeps the call open until we stop writing.
  AddHold();
  StartCall();
}

bool CoordinatorLink::Send(v1::AgentMessage message) {
  absl::MutexLock lock(&mu_);
  if (ending_) return false;
  outbox_.push_back(std::move(message));
  if (!write_in_flight_) {
    write_in_flight_ = true;
    StartWrite(&outbox_.front());
  }
  return true;
}

void CoordinatorLink::StopWritingLocked() {
  ending_ = true;
  if (!write_in_flight_ && !hold_released_) {
    hold_released_ = true;
    RemoveHold();
  }
}

void CoordinatorLink::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  write_in_flight_ = false;
  outbox_.pop_front();
  if (!ok) ending_ = true;
  if (!ending_ && !outbox_.empty()) {
    write_in_flight_ = true;
    StartWrite(&outbox_.front());
    return;
  }
  if (ending_) StopWritingLocked();
}

void CoordinatorLink::OnReadDone(bool ok) {
  if (!ok) {
    absl::MutexLock lock(&mu_);
    StopWritingLocked();
    return;
  }
  on_message_(this, in_);
  StartRead(&in_);
}

void CoordinatorLink::OnDone(const grpc::Status& status) { on_done_(this, status); }

}  // namespace taskgrid
