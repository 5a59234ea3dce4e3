#include "services/gateway/event_hub.h"

#include <spdlog/spdlog.h>

#include "absl/synchronization/notification.h"
#include "services/gateway/event_stream.h"

namespace taskgrid::gateway {
namespace {

// Small per-client queues keep a thousand clients within tens of MB: the
// ring, shared by all, holds the backlog.
constexpr size_t kHighWaterBytes = 64 << 10;
constexpr size_t kLowWaterBytes = 16 << 10;
// Rounds start at least this far apart, so events arriving together go out
// in one write per client.
constexpr absl::Duration kMinRoundInterval = absl::Milliseconds(5);
// A round costs a write per client: with many clients rounds are spaced so
// the gateway makes at most this many writes a second. Beyond it each write
// costs a strand hop and a system call that the machine's cores share with
// everything else, and a saturated gateway queues seconds of events.
constexpr double kMaxWritesPerSecond = 50'000;

bool Matches(const v1::WatchRequest& f, v1::EventType type, const std::string& task,
             const std::string& agent, const std::string& run) {
  if (!f.task_id().empty() && f.task_id() != task) return false;
  if (!f.agent_id().empty() && f.agent_id() != agent) return false;
  if (!f.run_id().empty() && f.run_id() != run) return false;
  return f.types_size() == 0 ||
         std::find(f.types().begin(), f.types().end(), type) != f.types().end();
}

}  // namespace

// The shared coordinator Watch. Owns itself until OnDone.
class EventHub::Feed final : public grpc::ClientReadReactor<v1::WatchResponse> {
 public:
  static std::shared_ptr<Feed> Start(EventHub& hub, uint64_t after) {
    auto feed = std::shared_ptr<Feed>(new Feed(hub));
    feed->self_ = feed;
    feed->request_.set_after_cursor(after);
    if (!hub.api_key_.empty()) feed->context_.AddMetadata("x-api-key", hub.api_key_);
    hub.stub_.async()->Watch(&feed->context_, &feed->request_, feed.get());
    feed->StartRead(&feed->batch_);
    feed->StartCall();
    return feed;
  }
  void Cancel() { context_.TryCancel(); }
  bool WaitDone(absl::Duration timeout) { return done_.WaitForNotificationWithTimeout(timeout); }

 private:
  explicit Feed(EventHub& hub) : hub_(hub) {}
  void OnReadDone(bool ok) override {
    if (!ok) return;
    hub_.OnEvents(batch_);
    StartRead(&batch_);
  }
  void OnDone(const grpc::Status& status) override {
    if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      spdlog::warn("event_hub_feed_ended code={} message=\"{}\"",
                   static_cast<int>(status.error_code()), status.error_message());
    }
    hub_.OnFeedEnded();
    done_.Notify();
    self_.reset();  // May delete this.
  }

  EventHub& hub_;
  grpc::ClientContext context_;
  v1::WatchRequest request_;
  v1::WatchResponse batch_;
  absl::Notification done_;
  std::shared_ptr<Feed> self_;
};

EventHub::EventHub(v1::TaskService::Stub& stub, GatewayMetrics& metrics, std::string api_key,
                   size_t max_bytes)
    : stub_(stub), metrics_(metrics), api_key_(std::move(api_key)), max_bytes_(max_bytes) {
  flusher_ = std::thread([this] { FlushLoop(); });
}

EventHub::~EventHub() { Shutdown(); }

bool EventHub::Subscribe(std::shared_ptr<EventStreamWriter> writer, const v1::WatchRequest& filter,
                         uint64_t after, std::function<void()> on_end) {
  auto sub = std::make_shared<Subscriber>();
  sub->writer = writer;
  sub->filter = filter;
  sub->cursor = after;
  sub->on_end = std::move(on_end);
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return false;
    if (!live_) {
      // The first subscriber's cursor is where the shared feed starts.
      entries_.clear();
      bytes_ = 0;
      base_ = after;
      live_ = true;
      feed_ = Feed::Start(*this, after);
    } else if (after < base_) {
      return false;  // Older than the ring: a dedicated Watch replays it.
    }
    subscribers_.push_back(sub);
    metrics_.sse_clients.Increment();
    PumpLocked(sub);
  }
  std::weak_ptr<Subscriber> weak = sub;
  writer->OnClose([this, weak] {
    auto s = weak.lock();
    if (!s) return;
    std::vector<std::function<void()>> ended;
    {
      absl::MutexLock lock(&mu_);
      EndLocked(s, ended);
    }
    for (auto& f : ended) f();
  });
  return true;
}

void EventHub::OnEvents(const v1::WatchResponse& batch) {
  {
    absl::MutexLock lock(&mu_);
    for (const v1::TaskEvent& e : batch.events()) {
      if (e.type() == v1::EVENT_TYPE_RESYNC) {
        // The feed itself fell behind the coordinator: restart the ring there
        // and tell every subscriber to resync.
        entries_.clear();
        bytes_ = 0;
        base_ = e.cursor();
        for (auto& sub : subscribers_) sub->cursor = 0;  // Below base_: resync on next pump.
        continue;
      }
      auto frame = std::make_shared<const std::string>(SseFrame(e));
      bytes_ += frame->size();
      entries_.push_back(
          {e.cursor(), e.type(), e.task_id(), e.agent_id(), e.run_id(), std::move(frame)});
      while (bytes_ > max_bytes_ && entries_.size() > 1) {
        bytes_ -= entries_.front().frame->size();
        entries_.pop_front();
        ++base_;
      }
    }
    dirty_ = true;
  }
  wake_.Signal();
}

void EventHub::FlushLoop() {
  absl::Time last_round = absl::InfinitePast();
  for (;;) {
    size_t clients;
    {
      absl::MutexLock lock(&mu_);
      while (!dirty_ && !shut_down_) wake_.Wait(&mu_);
      if (shut_down_) return;
      clients = subscribers_.size();
    }
    const absl::Duration interval = std::max(
        kMinRoundInterval, absl::Seconds(static_cast<double>(clients) / kMaxWritesPerSecond));
    absl::SleepFor(last_round + interval - absl::Now());
    last_round = absl::Now();
    std::vector<std::function<void()>> ended;
    {
      absl::MutexLock lock(&mu_);
      dirty_ = false;
      for (size_t i = 0; i < subscribers_.size(); ++i) PumpLocked(subscribers_[i]);
      for (auto it = subscribers_.begin(); it != subscribers_.end();) {
        if ((*it)->done) {
          ended.push_back(std::move((*it)->on_end));
          it = subscribers_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& f : ended) {
      metrics_.sse_clients.Decrement();
      if (f) f();
    }
  }
}

void EventHub::PumpLocked(const std::shared_ptr<Subscriber>& sub) {
  if (sub->done || sub->paused) return;
  const uint64_t end = base_ + entries_.size();
  if (sub->cursor < base_) {
    if (!sub->writer->Write("event: resync\ndata: {\"reason\":\"cursor no longer held\"}\n\n")) {
      sub->done = true;
      sub->writer->Close();
      return;
    }
    sub->cursor = end;
  }
  // Everything this client can take now goes out as one write.
  std::string out;
  int events = 0;
  uint64_t c = sub->cursor + 1;
  for (; c <= end; ++c) {
    const Entry& e = entries_[c - base_ - 1];
    if (!Matches(sub->filter, e.type, e.task_id, e.agent_id, e.run_id)) continue;
    if (sub->writer->queued_bytes() + out.size() > kHighWaterBytes) break;
    out += *e.frame;
    ++events;
  }
  sub->cursor = c - 1;
  if (!out.empty() && !sub->writer->Write(std::move(out))) {
    metrics_.events_dropped.Increment(events);
    sub->done = true;
    sub->writer->Close();
    return;
  }
  metrics_.events_delivered.Increment(events);
  if (c <= end) {
    // Let the client drain; the ring keeps what it has not taken yet.
    sub->paused = true;
    std::weak_ptr<Subscriber> weak = sub;
    sub->writer->WhenDrained(kLowWaterBytes, [this, weak] {
      if (auto s = weak.lock()) Pump(s);
    });
  }
}

void EventHub::Pump(const std::shared_ptr<Subscriber>& sub) {
  std::vector<std::function<void()>> ended;
  {
    absl::MutexLock lock(&mu_);
    sub->paused = false;
    if (sub->writer->closed()) {
      EndLocked(sub, ended);
    } else {
      PumpLocked(sub);
      if (sub->done) EndLocked(sub, ended);
    }
  }
  for (auto& f : ended) f();
}

void EventHub::EndLocked(const std::shared_ptr<Subscriber>& sub,
                         std::vector<std::function<void()>>& ended) {
  auto it = std::find(subscribers_.begin(), subscribers_.end(), sub);
  if (it == subscribers_.end()) return;  // Already ended.
  sub->done = true;
  subscribers_.erase(it);
  sub->writer->Close();
  metrics_.sse_clients.Decrement();
  if (sub->on_end) ended.push_back(std::move(sub->on_end));
}

void EventHub::OnFeedEnded() {
  std::vector<std::function<void()>> ended;
  {
    absl::MutexLock lock(&mu_);
    live_ = false;
    feed_.reset();
    // Clients reconnect with their Last-Event-ID and resume from the
    // coordinator; nothing is lost.
    // A copy: EndLocked erases the vector's own pointer, which may be the
    // subscriber's last owner.
    while (!subscribers_.empty()) EndLocked(std::shared_ptr<Subscriber>(subscribers_.back()), ended);
  }
  for (auto& f : ended) f();
}

void EventHub::Shutdown() {
  std::shared_ptr<Feed> feed;
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    feed = feed_;
  }
  wake_.Signal();
  if (flusher_.joinable()) flusher_.join();
  if (feed) {
    feed->Cancel();
    feed->WaitDone(absl::Seconds(5));
  }
}

}  // namespace taskgrid::gateway
