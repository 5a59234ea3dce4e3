#include "services/coordinator/agent_stream.h"

#include <spdlog/spdlog.h>

#include "services/common/status_util.h"

namespace taskgrid {

AgentStream* AgentStream::Create(TaskRegistry& registry, const AgentTokens& tokens) {
  auto stream = std::shared_ptr<AgentStream>(new AgentStream(registry, tokens));
  stream->self_ = stream;
  stream->StartRead(&stream->in_);
  return stream.get();
}

void AgentStream::Send(v1::CoordinatorMessage message) {
  absl::MutexLock lock(&mu_);
  if (finishing_) return;
  outbox_.push_back(std::move(message));
  MaybeWriteOrFinishLocked();
}

void AgentStream::Close(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  if (finishing_) return;
  finishing_ = true;
  finish_status_ = ToGrpcStatus(status);
  MaybeWriteOrFinishLocked();
}

void AgentStream::MaybeWriteOrFinishLocked() {
  if (write_in_flight_ || finished_) return;
  if (!outbox_.empty()) {
    write_in_flight_ = true;
    StartWrite(&outbox_.front());
  } else if (finishing_) {
    finished_ = true;
    Finish(finish_status_);
  }
}

void AgentStream::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  write_in_flight_ = false;
  outbox_.pop_front();
  if (!ok) {  // The peer is gone: nothing else will be written.
    outbox_.clear();
    finishing_ = true;
  }
  MaybeWriteOrFinishLocked();
}

void AgentStream::OnReadDone(bool ok) {
  if (!ok) {
    Close(absl::OkStatus());
    return;
  }
  if (agent_id_.empty()) {
    absl::Status s;
    if (in_.msg_case() != v1::AgentMessage::kHello) {
      s = absl::InvalidArgumentError("the first message must be hello");
    } else if (s = tokens_.Check(in_.hello().token()); s.ok()) {
      s = registry_.AgentConnected(in_.hello(), self_);
    }
    if (!s.ok()) {
      spdlog::warn("agent_rejected agent_id={} status=\"{}\"",
                   in_.has_hello() ? in_.hello().agent_id() : "", s.ToString());
      Close(s);
      return;
    }
    agent_id_ = in_.hello().agent_id();
  } else if (in_.msg_case() == v1::AgentMessage::kHello) {
    Close(absl::InvalidArgumentError("hello sent twice"));
    return;
  } else {
    registry_.HandleAgentMessage(agent_id_, this, in_);
  }
  StartRead(&in_);
}

void AgentStream::OnDone() {
  if (!agent_id_.empty()) registry_.AgentDisconnected(agent_id_, this);
  self_.reset();  // May delete this; nothing may follow.
}

grpc::ServerBidiReactor<v1::AgentMessage, v1::CoordinatorMessage>* AgentServiceImpl::Connect(
    grpc::CallbackServerContext* context) {
  return AgentStream::Create(registry_, tokens_);
}

}  // namespace taskgrid
