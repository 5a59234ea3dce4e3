#include "services/coordinator/agent_stream.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/common/auth.h"
#include "services/common/status_util.h"
#include "services/common/tls.h"

namespace taskgrid {

AgentStream* AgentStream::Create(TaskRegistry& registry, const AgentServiceImpl& service,
                                 std::string peer, std::optional<std::vector<std::string>> cert_names) {
  auto stream = std::shared_ptr<AgentStream>(
      new AgentStream(registry, service, std::move(peer), std::move(cert_names)));
  stream->self_ = stream;
  stream->StartRead(&stream->in_);
  return stream.get();
}

namespace {

// Acknowledgements are cumulative: a newer one of the same attempt, still
// queued, replaces the older instead of travelling beside it.
bool FoldAck(v1::CoordinatorMessage& queued, const v1::CoordinatorMessage& next) {
  if (!queued.has_ack() || queued.ack().task_id() != next.ack().task_id() ||
      queued.ack().attempt() != next.ack().attempt()) {
    return false;
  }
  v1::Ack& a = *queued.mutable_ack();
  a.set_stdout_offset(std::max(a.stdout_offset(), next.ack().stdout_offset()));
  a.set_stderr_offset(std::max(a.stderr_offset(), next.ack().stderr_offset()));
  a.set_finished(a.finished() || next.ack().finished());
  return true;
}

}  // namespace

void AgentStream::Send(v1::CoordinatorMessage message) {
  absl::MutexLock lock(&mu_);
  if (finishing_) return;
  if (message.has_ack()) {
    outbox_.AddOrFold(std::move(message), FoldAck);
  } else {
    outbox_.Add(std::move(message));
  }
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
  if (outbox_.in_flight() || finished_) return;
  if (const v1::CoordinatorBatch* next = outbox_.StartNext()) {
    service_.metrics().agent_batches_sent.Increment();
    service_.metrics().agent_messages_sent.Increment(next->messages_size());
    StartWrite(next);
  } else if (finishing_) {
    finished_ = true;
    Finish(finish_status_);
  }
}

void AgentStream::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  outbox_.Done();
  if (!ok) {  // The peer is gone: nothing else will be written.
    outbox_.Clear();
    finishing_ = true;
  }
  MaybeWriteOrFinishLocked();
}

void AgentStream::OnReadDone(bool ok) {
  if (!ok) {
    Close(absl::OkStatus());
    return;
  }
  service_.metrics().agent_batches_received.Increment();
  service_.metrics().agent_messages_received.Increment(in_.messages_size());
  for (const v1::AgentMessage& message : in_.messages()) {
    if (!Handle(message)) return;
  }
  StartRead(&in_);
}

bool AgentStream::Handle(const v1::AgentMessage& message) {
  if (!agent_id_.empty()) {
    if (message.msg_case() == v1::AgentMessage::kHello) {
      Close(absl::InvalidArgumentError("hello sent twice"));
      return false;
    }
    registry_.HandleAgentMessage(agent_id_, this, message);
    return true;
  }
  absl::Status s;
  if (message.msg_case() != v1::AgentMessage::kHello) {
    s = absl::InvalidArgumentError("the first message must be hello");
  } else {
    s = CheckIdentity(message.hello().agent_id());
    if (s.ok()) s = Admit(message.hello());
  }
  if (!s.ok()) {
    spdlog::warn("agent_rejected agent_id={} status=\"{}\"",
                 message.has_hello() ? message.hello().agent_id() : "", s.ToString());
    registry_.Audit({NewAuditEntry("agent:" + message.hello().agent_id(), "agent.connect",
                                   message.hello().agent_id(), peer_, s)});
    Close(s);
    return false;
  }
  agent_id_ = message.hello().agent_id();
  return true;
}

absl::Status AgentStream::Admit(const v1::Hello& hello) {
  const std::map<std::string, std::string> labels(hello.labels().begin(), hello.labels().end());
  const std::shared_ptr<const AgentTokens> tokens = service_.tokens();
  absl::StatusOr<const AgentToken*> token = tokens->Admit(hello.token(), hello.agent_id(), labels);
  TASKGRID_RETURN_IF_ERROR(token.status());
  TASKGRID_RETURN_IF_ERROR(registry_.AgentConnected(hello, self_, peer_, *token));
  // Tokens replaced while it was being admitted: their sweep may have missed
  // it, so it answers to them itself.
  if (const std::shared_ptr<const AgentTokens> now = service_.tokens(); now != tokens) {
    absl::StatusOr<const AgentToken*> again =
        now->AdmitHash(*token ? (*token)->sha256 : Sha256Hex(hello.token()), hello.agent_id(),
                       labels);
    if (!again.ok()) {
      registry_.AgentDisconnected(hello.agent_id(), this);
      return again.status();
    }
  }
  return absl::OkStatus();
}

absl::Status AgentStream::CheckIdentity(const std::string& agent_id) const {
  if (!cert_names_) return absl::OkStatus();
  if (cert_names_->empty()) {
    return absl::PermissionDeniedError("agents must present a TLS client certificate");
  }
  for (const std::string& name : *cert_names_) {
    if (name == agent_id) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat("agent_id ", agent_id,
                                                  " is not the client certificate's (",
                                                  absl::StrJoin(*cert_names_, ", "), ")"));
}

void AgentStream::OnDone() {
  if (!agent_id_.empty()) registry_.AgentDisconnected(agent_id_, this);
  self_.reset();  // May delete this; nothing may follow.
}

grpc::ServerBidiReactor<v1::AgentBatch, v1::CoordinatorBatch>* AgentServiceImpl::Connect(
    grpc::CallbackServerContext* context) {
  std::optional<std::vector<std::string>> cert_names;
  if (require_client_cert_) cert_names = PeerCertificateNames(*context->auth_context());
  return AgentStream::Create(registry_, *this, context->peer(), std::move(cert_names));
}

std::shared_ptr<const AgentTokens> AgentServiceImpl::tokens() const {
  absl::MutexLock lock(&mu_);
  return tokens_;
}

void AgentServiceImpl::ReplaceTokens(AgentTokens tokens) {
  auto next = std::make_shared<const AgentTokens>(std::move(tokens));
  {
    absl::MutexLock lock(&mu_);
    tokens_ = next;
  }
  registry_.DisconnectAgents([&next](const v1::Agent& agent, const std::string& sha256) {
    const std::map<std::string, std::string> labels(agent.labels().begin(), agent.labels().end());
    absl::Status s = next->AdmitHash(sha256, agent.agent_id(), labels).status();
    if (s.ok()) return s;
    return absl::PermissionDeniedError(
        absl::StrCat("the agent tokens were reloaded and no longer admit this agent: ", s.message()));
  });
}

}  // namespace taskgrid
