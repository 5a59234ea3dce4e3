#include "services/gateway/event_stream.h"

#include <spdlog/spdlog.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "services/common/proto_time.h"
#include "services/common/task_status.h"
#include "services/gateway/json.h"

namespace taskgrid::gateway {
namespace {

// data: lines may not contain raw newlines; proto JSON never does.
std::string Frame(uint64_t id, absl::string_view event, absl::string_view data) {
  return absl::StrCat("id: ", id, "\nevent: ", event, "\ndata: ", data, "\n\n");
}

// A chunk as formats that carry output as text show it: a marker of
// dropped bytes becomes a line saying so.
std::string OutputText(const v1::OutputChunk& c) {
  if (c.dropped_bytes() == 0) return c.data();
  return absl::StrCat("\n[taskgrid: ", c.dropped_bytes(), " bytes of output dropped at offset ",
                      c.offset(), "]\n");
}

// nodelink's documented response frame.
std::string NodelinkFrame(const v1::TaskEvent& e, int64_t sequence) {
  std::string status = "SUCCESS", output, type = "stdout";
  bool final = false;
  int exit_code = 0;
  if (e.type() == v1::EVENT_TYPE_TASK_LOG) {
    output = OutputText(e.output());
    if (e.output().stream() == v1::OUTPUT_STREAM_STDERR) type = "stderr";
  } else {
    final = true;
    type = "exit";
    exit_code =
        e.task().exit().signal() ? 128 + e.task().exit().signal() : e.task().exit().exit_code();
    if (e.task().status() != v1::TASK_STATUS_SUCCEEDED) {
      status = absl::AsciiStrToUpper(NodelinkStatus(e.task().status()));
      output = e.task().status_reason();
    }
  }
  const int64_t ms = absl::ToUnixMillis(FromProto(e.time()));
  const std::string data = absl::StrCat(
      R"({"event_response":{"event_ref":)", JsonString(e.task_id()), R"(,"status":)",
      JsonString(status), R"(,"result":{"data":{"output":)", JsonString(output), R"(,"type":)",
      JsonString(type), R"(,"timestamp":)", ms, R"(,"sequence":)", sequence, R"(,"is_final":)",
      final ? "true" : "false", R"(,"exit_code":)", exit_code, "}}}}");
  return Frame(e.cursor(), "response", data);
}

std::string RedisSreMessage(const v1::TaskEvent& e) {
  const std::string head =
      absl::StrCat(R"({"thread_id":)", JsonString(e.task_id()), R"(,"cursor":)", e.cursor(),
                   R"(,"timestamp":)", JsonString(Rfc3339(e.time())));
  switch (e.type()) {
    case v1::EVENT_TYPE_TASK_STATUS: {
      const std::string status = NodelinkStatus(e.task().status());
      return absl::StrCat(head, R"(,"update_type":"status_change","status":)", JsonString(status),
                          R"(,"message":)", JsonString("Status changed to " + status), "}");
    }
    case v1::EVENT_TYPE_TASK_PROGRESS:
      return absl::StrCat(head, R"(,"update_type":"progress","progress":)", e.progress().percent(),
                          R"(,"message":)", JsonString(e.progress().message()), "}");
    case v1::EVENT_TYPE_TASK_LOG:
      return absl::StrCat(
          head, R"(,"update_type":"output","stream":)",
          e.output().stream() == v1::OUTPUT_STREAM_STDERR ? R"("stderr")" : R"("stdout")",
          R"(,"offset":)", e.output().offset(), R"(,"dropped_bytes":)",
          e.output().dropped_bytes(), R"(,"message":)",
          JsonString(OutputText(e.output())), "}");
    case v1::EVENT_TYPE_RESYNC:
      return absl::StrCat(head, R"(,"update_type":"resync"})");
    default:
      return "";
  }
}

}  // namespace

std::string SseEventName(v1::EventType type) {
  if (type == v1::EVENT_TYPE_RESYNC) return "resync";
  // EVENT_TYPE_TASK_STATUS -> task:status; EVENT_TYPE_AGENT_CONNECTED -> agent:connected.
  std::string name =
      absl::AsciiStrToLower(v1::EventType_Name(type).substr(sizeof("EVENT_TYPE_") - 1));
  const size_t underscore = name.find('_');
  if (underscore != std::string::npos) name[underscore] = ':';
  return name;
}

std::string SseFrame(const v1::TaskEvent& e) {
  return Frame(e.cursor(), SseEventName(e.type()), EventToJson(e));
}

std::weak_ptr<EventStream> EventStream::Start(
    v1::TaskService::Stub& stub, const v1::WatchRequest& watch, const std::string& api_key,
    std::shared_ptr<EventStreamWriter> writer, StreamFormat format,
    std::vector<std::string> initial, GatewayMetrics& metrics, std::function<void()> on_end) {
  auto stream = std::shared_ptr<EventStream>(new EventStream(writer, format, metrics));
  stream->self_ = stream;
  stream->request_ = watch;
  stream->on_end_ = std::move(on_end);
  if (!api_key.empty()) stream->context_.AddMetadata("x-api-key", api_key);
  for (auto& frame : initial) writer->Write(std::move(frame));
  const bool sse = format == StreamFormat::kTaskEvents || format == StreamFormat::kNodelink;
  if (sse) writer->Write("retry: 2000\n\n");
  metrics.sse_clients.Increment();
  // The client leaving ends the Watch; the weak pointer tolerates the Watch
  // having ended first.
  std::weak_ptr<EventStream> weak = stream;
  writer->OnClose([weak] {
    if (auto s = weak.lock()) s->context_.TryCancel();
  });
  stub.async()->Watch(&stream->context_, &stream->request_, stream.get());
  stream->StartRead(&stream->batch_);
  stream->StartCall();
  return stream;
}

bool EventStream::Deliver(const v1::TaskEvent& e) {
  std::string frame;
  bool last = false;
  switch (format_) {
    case StreamFormat::kNodelink: {
      const bool final_status =
          e.type() == v1::EVENT_TYPE_TASK_STATUS && IsFinal(e.task().status());
      if (e.type() != v1::EVENT_TYPE_TASK_LOG && !final_status) return true;
      frame = NodelinkFrame(e, ++sequence_);
      last = final_status;
      break;
    }
    case StreamFormat::kTaskEvents:
      frame = SseFrame(e);
      break;
    case StreamFormat::kWebSocketEvents:
      frame = absl::StrCat(R"({"type":)", JsonString(SseEventName(e.type())), R"(,"cursor":)",
                           e.cursor(), R"(,"event":)", EventToJson(e), "}");
      break;
    case StreamFormat::kRedisSre:
      frame = RedisSreMessage(e);
      if (frame.empty()) return true;
      break;
  }
  if (!writer_->Write(std::move(frame))) {
    metrics_.events_dropped.Increment();
    return false;
  }
  metrics_.events_delivered.Increment();
  return !last;
}

void EventStream::OnReadDone(bool ok) {
  if (!ok) return;  // OnDone follows.
  for (const v1::TaskEvent& e : batch_.events()) {
    if (!Deliver(e)) {
      writer_->Close();
      context_.TryCancel();
      return;
    }
  }
  if (writer_->queued_bytes() <= kHighWaterBytes) {
    StartRead(&batch_);
    return;
  }
  // Backpressure: stop reading the Watch (the coordinator keeps only our
  // cursor) until the client has taken most of what is queued. The hold
  // keeps the call open while no read is outstanding.
  AddHold();
  writer_->WhenDrained(kLowWaterBytes, [self = self_] {
    if (self->writer_->closed()) self->context_.TryCancel();
    self->StartRead(&self->batch_);
    self->RemoveHold();
  });
}

void EventStream::OnDone(const grpc::Status& status) {
  const bool sse = format_ == StreamFormat::kTaskEvents || format_ == StreamFormat::kNodelink;
  if (sse && !status.ok() && status.error_code() != grpc::StatusCode::CANCELLED &&
      !writer_->closed()) {
    // Logged: the client sees only the error frame and the close.
    spdlog::warn("event_stream_failed code={} message=\"{}\"",
                 static_cast<int>(status.error_code()), status.error_message());
    const HttpResponse error = ErrorResponse(status);
    writer_->Write(absl::StrCat("event: error\ndata: ", error.body, "\n\n"));
  }
  writer_->Close();
  metrics_.sse_clients.Decrement();
  if (on_end_) on_end_();
  self_.reset();  // May delete this.
}

}  // namespace taskgrid::gateway
