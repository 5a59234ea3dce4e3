// The agent API: connections and their reconciliation, reports (start,
// output, progress, finish, heartbeats) under attempt fencing, and agents
// going offline.
#include "services/coordinator/task_registry.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "services/common/auth.h"
#include "services/common/proto_time.h"
#include "services/common/status_util.h"
#include "services/coordinator/task_registry_util.h"
#include "services/coordinator/task_validation.h"

namespace taskgrid {

using registry::StreamIndex;

absl::Status TaskRegistry::AgentConnected(const v1::Hello& hello, std::shared_ptr<AgentLink> link,
                                          const std::string& peer, const AgentToken* token) {
  TASKGRID_RETURN_IF_ERROR(ValidateId("hello.agent_id", hello.agent_id(), true));
  if (hello.slots() == 0 || hello.slots() > 4096) {
    return absl::InvalidArgumentError("hello.slots: must be 1 to 4096");
  }
  // Only a fingerprint is kept (and listed): the instance id itself proves
  // that a hello comes from the process that holds it.
  const std::string instance =
      hello.instance_id().empty() ? "" : Sha256Hex(hello.instance_id()).substr(0, 16);
  WriteLock lock(this);
  TASKGRID_ASSIGN_OR_RETURN(
      const AgentDirectory::Connection connection,
      agents_.Connect(hello, instance, std::move(link), token, clock_.Now()));
  AgentEntry& a = *connection.agent;
  const bool same_process = connection.same_process;
  AuditLocked(NewAuditEntry("agent:" + hello.agent_id(), "agent.connect", hello.agent_id(), peer,
                            absl::OkStatus()));
  if (metrics_) metrics_->agent_connects.Increment();

  // Reconcile: keep what both sides agree is running; kill what the agent
  // holds that is final or unknown here; what only we think runs is lost.
  v1::CoordinatorMessage welcome;
  v1::Welcome* w = welcome.mutable_welcome();
  *w->mutable_heartbeat_interval() = ToProto(options_.heartbeat_interval);
  absl::flat_hash_set<std::string> held;
  for (const v1::HeldTask& h : hello.held_tasks()) {
    v1::Resume* r = w->add_resume();
    r->set_task_id(h.task_id());
    r->set_attempt(h.attempt());
    TaskEntry* t = FindLocked(h.task_id());
    const bool ours =
        t != nullptr && t->state.agent_id == hello.agent_id() && t->state.attempt == h.attempt();
    // A container found after the agent restarted has lost its redactor's
    // state: a task with secrets is not resumed from it.
    if (!ours || (IsFinal(t->state.status) && !h.finished()) ||
        (h.adopted() && !t->spec->secret_env().empty())) {
      r->set_keep(false);
      continue;
    }
    r->set_keep(true);
    r->set_stdout_offset(t->out[0].total());
    r->set_stderr_offset(t->out[1].total());
    held.insert(h.task_id());
    a.assigned.insert(h.task_id());
  }
  std::vector<std::string> gone;
  for (const std::string& id : a.assigned) {
    if (!held.contains(id)) gone.push_back(id);
  }
  SendLocked(a.link, std::move(welcome));
  for (const std::string& id : gone) {
    a.assigned.erase(id);
    TaskEntry* t = FindLocked(id);
    if (t == nullptr || IsFinal(t->state.status)) continue;
    // The same process keeps every task it was given until its end is
    // acknowledged: one it does not hold never reached it, so never ran.
    if (same_process && t->state.status == v1::TASK_STATUS_DISPATCHED) {
      RequeueUndeliveredLocked(*t);
    } else {
      EndAttemptLocked(*t, v1::TASK_STATUS_LOST,
                       absl::StrCat("agent ", hello.agent_id(), " reconnected without the task"));
    }
  }
  // After those ends, so a journal cut short never records this process's
  // instance without them (it would requeue a task an older one may have run).
  store_.PutAgent(a.info);
  spdlog::info("agent_connected agent_id={} slots={} held_tasks={} version={}", hello.agent_id(),
               hello.slots(), hello.held_tasks_size(), hello.version());
  EmitLocked(v1::EVENT_TYPE_AGENT_CONNECTED, nullptr, hello.agent_id());
  PublishLocked(monitor_.OnAgentConnected(hello.agent_id()));
  for (auto& [seq, r] : open_runs_) {
    if (r->held > 0) ReleaseTargetsLocked(*r);
  }
  DispatchLocked();
  return absl::OkStatus();
}

void TaskRegistry::DisconnectAgents(
    const std::function<absl::Status(const v1::Agent&, const std::string&)>& refusal) {
  std::vector<std::pair<std::shared_ptr<AgentLink>, absl::Status>> links;
  {
    WriteLock lock(this);
    for (const auto& [id, a] : agents_.connected()) {
      if (!a->connected()) continue;
      if (absl::Status s = refusal(a->info, a->token_sha256); !s.ok()) {
        links.emplace_back(a->link, std::move(s));
      }
    }
  }
  // Outside the lock: a link's Close may come back to AgentDisconnected.
  for (auto& [link, status] : links) link->Close(status);
}

void TaskRegistry::AgentDisconnected(const std::string& agent_id, const AgentLink* link) {
  WriteLock lock(this);
  const AgentEntry* a = agents_.Disconnect(agent_id, link);
  if (a == nullptr) return;  // Already replaced.
  spdlog::info("agent_disconnected agent_id={} running_tasks={}", agent_id, a->assigned.size());
  EmitDisconnectedLocked(agent_id);
  HoldTargetsOfLocked(agent_id);
  DispatchLocked();
}

void TaskRegistry::EmitDisconnectedLocked(const std::string& agent_id) {
  AuditLocked(NewAuditEntry("agent:" + agent_id, "agent.disconnect", agent_id, "",
                            absl::OkStatus()));
  EmitLocked(v1::EVENT_TYPE_AGENT_DISCONNECTED, nullptr, agent_id);
  PublishLocked(monitor_.OnAgentDisconnected(agent_id));
}

void TaskRegistry::HandleAgentMessage(const std::string& agent_id, const AgentLink* link,
                                      const v1::AgentMessage& message) {
  WriteLock lock(this);
  AgentEntry* found = agents_.FindByLink(agent_id, link);
  if (found == nullptr) return;
  AgentEntry& a = *found;
  a.last_seen = clock_.Now();
  switch (message.msg_case()) {
    case v1::AgentMessage::kStarted: {
      const v1::Started& m = message.started();
      TaskEntry* t = FenceLocked(a, m.task_id(), m.attempt());
      if (t == nullptr || t->state.status != v1::TASK_STATUS_DISPATCHED) return;
      t->state.started_at = a.last_seen;
      t->state.pid = m.pid();
      if (metrics_) {
        metrics_->start_latency_seconds.Observe(absl::ToDoubleSeconds(a.last_seen - t->state.created_at));
      }
      TransitionLocked(*t, v1::TASK_STATUS_RUNNING, "");
      FlushRunsLocked();
      return;
    }
    case v1::AgentMessage::kOutput:
      // Only the output limit ending a run's target can free a place.
      if (ApplyOutputLocked(a, message.output())) DispatchLocked();
      return;
    case v1::AgentMessage::kProgress: {
      const v1::ProgressReport& m = message.progress();
      TaskEntry* t = FenceLocked(a, m.task_id(), m.attempt());
      if (t == nullptr || IsFinal(t->state.status)) return;
      t->state.progress = std::clamp(m.progress().percent(), 0, 100);
      t->state.progress_message = m.progress().message();
      PersistLocked(*t);
      EmitLocked(v1::EVENT_TYPE_TASK_PROGRESS, t, agent_id);
      return;
    }
    case v1::AgentMessage::kFinished:
      ApplyFinishedLocked(a, message.finished());
      DispatchLocked();
      return;
    case v1::AgentMessage::kHeartbeat: {
      const v1::Heartbeat& h = message.heartbeat();
      a.info.set_load1(h.load1());
      a.info.set_memory_total_bytes(h.memory_total_bytes());
      a.info.set_memory_available_bytes(h.memory_available_bytes());
      v1::HostMetrics host = h.host();
      if (!h.has_host()) {  // An agent from before host sampling: what it does send.
        host.set_memory_total_bytes(h.memory_total_bytes());
        host.set_memory_available_bytes(h.memory_available_bytes());
        host.set_memory_used_bytes(h.memory_total_bytes() - h.memory_available_bytes());
        if (h.memory_total_bytes() > 0) {
          host.set_memory_percent(100.0 * host.memory_used_bytes() / h.memory_total_bytes());
        }
        host.set_load1(h.load1());
        host.set_running_tasks(h.running_tasks());
      }
      PublishLocked(monitor_.OnHostMetrics(agent_id, std::move(host)));
      return;
    }
    default:
      spdlog::warn("agent_message_unexpected agent_id={} case={}", agent_id,
                   static_cast<int>(message.msg_case()));
  }
}

bool TaskRegistry::ApplyOutputLocked(AgentEntry& a, const v1::Output& m) {
  const v1::OutputChunk& chunk = m.chunk();
  const int64_t end = chunk.offset() + static_cast<int64_t>(chunk.data().size());
  v1::CoordinatorMessage ack;
  v1::Ack* ack_msg = ack.mutable_ack();
  ack_msg->set_task_id(m.task_id());
  ack_msg->set_attempt(m.attempt());
  TaskEntry* t = FenceLocked(a, m.task_id(), m.attempt());
  if (t == nullptr ||
      (chunk.stream() != v1::OUTPUT_STREAM_STDOUT && chunk.stream() != v1::OUTPUT_STREAM_STDERR)) {
    // Acknowledge everything so the agent frees what nobody will read.
    ack_msg->set_stdout_offset(INT64_MAX);
    ack_msg->set_stderr_offset(INT64_MAX);
    SendLocked(a.link, std::move(ack));
    return false;
  }
  OutputBuffer& buf = t->out[StreamIndex(chunk.stream())];
  bool ended = false;
  auto log_event = [&] {
    v1::TaskEvent e;
    e.set_type(v1::EVENT_TYPE_TASK_LOG);
    *e.mutable_time() = ToProto(a.last_seen);
    e.set_task_id(m.task_id());
    e.set_run_id(t->state.run_id);
    e.set_agent_id(a.info.agent_id());
    e.set_attempt(m.attempt());
    e.mutable_output()->set_stream(chunk.stream());
    e.mutable_output()->set_offset(buf.total());
    return e;
  };
  if (chunk.offset() > buf.total() && buf.head_full()) {
    // Past the head the agent resends from what it was told is settled; a
    // restart lost the tail committed before that, and the middle it left
    // behind is dropped anyway. Readers are told which bytes they miss.
    v1::TaskEvent marker = log_event();
    marker.mutable_output()->set_dropped_bytes(chunk.offset() - buf.total());
    buf.Skip(chunk.offset() - buf.total());
    AppendEventLocked(std::move(marker));
  }
  if (chunk.offset() > buf.total()) {
    // A gap means the agent lost bytes we never acknowledged; this cannot
    // happen on an ordered stream, so refuse rather than store a hole.
    spdlog::error("output_gap task_id={} expected={} got={}", m.task_id(), buf.total(),
                  chunk.offset());
  } else if (end > buf.total()) {
    const absl::string_view fresh =
        absl::string_view(chunk.data()).substr(static_cast<size_t>(buf.total() - chunk.offset()));
    v1::TaskEvent e = log_event();
    e.mutable_output()->set_data(fresh.data(), fresh.size());
    store_.AppendOutput(m.task_id(), chunk.stream(), buf.total(), fresh);
    buf.Append(fresh);
    if (buf.dropped() > 0) {
      store_.TrimOutput(m.task_id(), chunk.stream(), buf.head_end(), buf.tail_start());
    }
    if (std::shared_ptr<std::atomic<bool>> head = buf.WatchHead()) {
      store_.WhenDurable([head] { head->store(true); });
    }
    if (metrics_) metrics_->output_bytes.Increment(static_cast<double>(fresh.size()));
    AppendEventLocked(std::move(e));
    const int64_t limit = t->spec->max_output_bytes();
    if (limit > 0 && t->out[0].total() + t->out[1].total() > limit &&
        !IsFinal(t->state.status)) {
      const std::string why =
          absl::StrCat("output limit: wrote more than ", limit, " bytes (max_output_bytes)");
      TransitionLocked(*t, v1::TASK_STATUS_FAILED, why);
      SendCancelLocked(*t, why);
      ended = true;
    }
  }
  if (const int64_t settled = buf.settled(); settled > 0) {
    // A long stream: what the tail left behind is acknowledged now, so the
    // agent's window does not wait on commits of bytes nobody keeps. The
    // tail is acknowledged as ever, once durable.
    v1::CoordinatorMessage early = ack;
    if (chunk.stream() == v1::OUTPUT_STREAM_STDOUT) {
      early.mutable_ack()->set_stdout_offset(settled);
    } else {
      early.mutable_ack()->set_stderr_offset(settled);
    }
    a.link->Send(std::move(early));
  }
  ack_msg->set_stdout_offset(t->out[0].total());
  ack_msg->set_stderr_offset(t->out[1].total());
  SendLocked(a.link, std::move(ack));
  return ended;
}

void TaskRegistry::ApplyFinishedLocked(AgentEntry& a, const v1::Finished& m) {
  v1::CoordinatorMessage ack;
  ack.mutable_ack()->set_task_id(m.task_id());
  ack.mutable_ack()->set_attempt(m.attempt());
  ack.mutable_ack()->set_finished(true);
  TaskEntry* t = FenceLocked(a, m.task_id(), m.attempt());
  a.assigned.erase(m.task_id());
  if (t != nullptr) {
    ack.mutable_ack()->set_stdout_offset(t->out[0].total());
    ack.mutable_ack()->set_stderr_offset(t->out[1].total());
    if (!t->state.exit.has_value()) t->state.exit = ExitFromProto(m.exit());
    if (!IsFinal(t->state.status)) {
      const v1::ExitInfo& e = m.exit();
      if (!TaskState::IsSet(t->state.started_at)) t->state.started_at = a.last_seen;
      if (e.exit_code() == 0 && e.signal() == 0 && e.error().empty()) {
        TransitionLocked(*t, v1::TASK_STATUS_SUCCEEDED, "exit code 0");
      } else {
        EndAttemptLocked(*t, v1::TASK_STATUS_FAILED,
                         !e.error().empty() ? e.error()
                         : e.signal() != 0  ? absl::StrCat("killed by signal ", e.signal())
                                            : absl::StrCat("exit code ", e.exit_code()));
      }
    } else {
      PersistLocked(*t);
    }
  }
  SendLocked(a.link, std::move(ack));
}

void TaskRegistry::AgentOfflineLocked(AgentEntry& a, const std::string& reason) {
  if (std::shared_ptr<AgentLink> link = agents_.TakeOffline(a, clock_.Now())) {
    link->Close(absl::DeadlineExceededError(reason));
    EmitDisconnectedLocked(a.info.agent_id());
  }
  HoldTargetsOfLocked(a.info.agent_id());
  spdlog::warn("agent_offline agent_id={} lost_tasks={} reason=\"{}\"", a.info.agent_id(),
               a.assigned.size(), reason);
  for (const std::string& id : a.assigned) {
    TaskEntry* t = FindLocked(id);
    if (t != nullptr && !IsFinal(t->state.status))
      EndAttemptLocked(*t, v1::TASK_STATUS_LOST, reason);
  }
  a.assigned.clear();
}

}  // namespace taskgrid
