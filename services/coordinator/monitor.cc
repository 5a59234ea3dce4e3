#include "services/coordinator/monitor.h"

#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "services/common/proto_time.h"

namespace taskgrid {
namespace {

constexpr double kNever = std::numeric_limits<double>::infinity();
constexpr size_t kMaxResolvedAlerts = 1000;

std::string AgentSource(const std::string& id) { return "agent/" + id; }

}  // namespace

absl::Status MonitorOptions::Validate() const {
  if (history_size == 0 || history_size > 1'000'000) {
    return absl::InvalidArgumentError("metrics_history: must be 1 to 1000000");
  }
  for (auto [name, warning, critical] :
       {std::tuple{"alert_cpu", cpu_warning, cpu_critical},
        std::tuple{"alert_memory", memory_warning, memory_critical},
        std::tuple{"alert_disk", disk_warning, disk_critical}}) {
    if (!(warning > 0 && warning <= critical && critical <= 100)) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, "_warning/", name, "_critical: need 0 < warning <= critical <= 100 percent"));
    }
  }
  if (!(hysteresis >= 0 && hysteresis < 50)) {
    return absl::InvalidArgumentError("alert_hysteresis: must be 0 to 50 percent points");
  }
  if (!(failure_rate > 0 && failure_rate <= 1)) {
    return absl::InvalidArgumentError("alert_failure_rate: must be in (0, 1]");
  }
  if (process_memory_bytes <= 0 || queue_depth <= 0 || failure_min_tasks <= 0) {
    return absl::InvalidArgumentError(
        "alert_process_memory_bytes, alert_queue_depth: must be positive");
  }
  return absl::OkStatus();
}

Monitor::Monitor(const Clock& clock, MonitorOptions options)
    : clock_(clock), options_(std::move(options)), started_(clock.Now()) {
  absl::MutexLock lock(&mu_);
  Service& self = ServiceLocked("coordinator", "coordinator");
  self.connected = true;
  self.last_seen = started_;
  *self.health.mutable_started_at() = ToProto(started_);
  self.health.set_status(v1::HEALTH_STATUS_HEALTHY);
}

v1::TaskEvent Monitor::Event(v1::EventType type) const {
  v1::TaskEvent e;
  e.set_type(type);
  *e.mutable_time() = ToProto(clock_.Now());
  return e;
}

Monitor::Verdict Monitor::Judge(double value, double warning, double critical, double margin,
                                v1::AlertSeverity active) const {
  Verdict v;
  if (value > critical) {
    v.severity = v1::ALERT_SEVERITY_CRITICAL;
    v.threshold = critical;
  } else if (value > warning) {
    v.severity = v1::ALERT_SEVERITY_WARNING;
    v.threshold = warning;
  }
  // Below the active alert's threshold, but not by the margin yet: hold.
  if (active != v1::ALERT_SEVERITY_UNSPECIFIED && v.severity < active) {
    const double active_threshold = active == v1::ALERT_SEVERITY_CRITICAL ? critical : warning;
    v.hold = value > active_threshold - margin;
  }
  return v;
}

v1::AlertSeverity Monitor::ActiveLocked(const std::string& rule, const std::string& source) const {
  auto it = active_.find(Key(rule, source));
  return it == active_.end() ? v1::ALERT_SEVERITY_UNSPECIFIED : alerts_.at(it->second).severity();
}

void Monitor::ApplyLocked(const std::string& rule, const std::string& source, double value,
                          const Verdict& v, const std::string& message,
                          std::vector<v1::TaskEvent>& events) {
  const std::string key = Key(rule, source);
  if (silenced_.contains(key)) {  // Resolved by hand: quiet until the condition clears.
    if (v.severity == v1::ALERT_SEVERITY_UNSPECIFIED) silenced_.erase(key);
    return;
  }
  if (auto it = active_.find(key); it != active_.end()) {
    v1::Alert& alert = alerts_[it->second];
    if (v.hold || v.severity == alert.severity()) return;  // Still so: no duplicate.
    ResolveLocked(alert, "auto", events);                   // Cleared, or a new severity.
  }
  if (v.severity == v1::ALERT_SEVERITY_UNSPECIFIED) return;
  const uint64_t number = next_alert_++;
  v1::Alert alert;
  alert.set_id(absl::StrCat("alert-", number));
  alert.set_severity(v.severity);
  alert.set_rule(rule);
  alert.set_source(source);
  alert.set_message(message);
  alert.set_value(value);
  alert.set_threshold(v.threshold);
  *alert.mutable_created_at() = ToProto(clock_.Now());
  active_[key] = number;
  v1::TaskEvent e = Event(v1::EVENT_TYPE_ALERT_CREATED);
  *e.mutable_alert() = alert;
  events.push_back(std::move(e));
  alerts_[number] = std::move(alert);
}

void Monitor::ResolveLocked(v1::Alert& alert, const std::string& by,
                            std::vector<v1::TaskEvent>& events) {
  *alert.mutable_resolved_at() = ToProto(clock_.Now());
  alert.set_resolved_by(by);
  auto it = active_.find(Key(alert.rule(), alert.source()));
  resolved_.push_back(it->second);
  active_.erase(it);
  v1::TaskEvent e = Event(v1::EVENT_TYPE_ALERT_RESOLVED);
  *e.mutable_alert() = alert;
  events.push_back(std::move(e));
  // Every active alert is kept, and the newest resolved ones.
  while (resolved_.size() > kMaxResolvedAlerts) {
    alerts_.erase(resolved_.front());
    resolved_.pop_front();
  }
}

Monitor::Service& Monitor::ServiceLocked(const std::string& name, const std::string& kind) {
  Service& s = services_[name];
  if (s.health.name().empty()) {
    s.health.set_name(name);
    s.health.set_kind(kind);
  }
  return s;
}

void Monitor::UpdateHealthLocked(Service& s, v1::HealthStatus status, const std::string& reason,
                                 std::vector<v1::TaskEvent>& events) {
  if (s.health.status() == status && s.health.reason() == reason) return;
  s.health.set_status(status);
  s.health.set_reason(reason);
  if (!running_) return;
  v1::TaskEvent e = Event(v1::EVENT_TYPE_SERVICE_HEALTH);
  *e.mutable_health() = SnapshotLocked(s);
  if (s.health.kind() == "agent") e.set_agent_id(s.health.name().substr(6));
  events.push_back(std::move(e));
}

v1::ServiceHealth Monitor::SnapshotLocked(const Service& s) const {
  v1::ServiceHealth h = s.health;
  if (h.has_started_at() && s.connected) {
    *h.mutable_uptime() = ToProto(clock_.Now() - FromProto(h.started_at()));
  }
  if (s.last_seen != absl::InfinitePast()) *h.mutable_last_seen() = ToProto(s.last_seen);
  if (h.kind() != "gateway") {  // Gateways count for themselves.
    h.set_requests(s.counters.requests);
    h.set_errors(s.counters.errors);
    h.set_mean_response_seconds(
        s.counters.requests ? absl::ToDoubleSeconds(s.counters.total) / s.counters.requests : 0);
  }
  return h;
}

std::vector<v1::TaskEvent> Monitor::OnHostMetrics(const std::string& agent_id,
                                                  v1::HostMetrics m) {
  std::vector<v1::TaskEvent> events;
  const absl::Time now = clock_.Now();
  m.set_source(agent_id);
  if (!m.has_time()) *m.mutable_time() = ToProto(now);
  absl::MutexLock lock(&mu_);
  std::deque<v1::HostMetrics>& h = history_[agent_id];
  h.push_back(m);
  while (h.size() > options_.history_size) h.pop_front();
  Service& s = ServiceLocked(AgentSource(agent_id), "agent");
  s.last_seen = now;
  if (!running_) return events;

  v1::TaskEvent e = Event(v1::EVENT_TYPE_SYSTEM_METRICS);
  e.set_agent_id(agent_id);
  *e.mutable_metrics() = m;
  events.push_back(std::move(e));

  const std::string source = AgentSource(agent_id);
  auto active = [&](const std::string& rule) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return ActiveLocked(rule, source);
  };
  auto percent_rule = [&](const std::string& rule, const char* what, double value, double warning,
                          double critical) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const Verdict v = Judge(value, warning, critical, options_.hysteresis, active(rule));
    ApplyLocked(rule, source, value, v,
                absl::StrFormat("%s at %.1f%% on agent %s (%s above %.0f%%)", what, value,
                                agent_id,
                                v.severity == v1::ALERT_SEVERITY_CRITICAL ? "critical" : "warning",
                                v.threshold),
                events);
  };
  percent_rule("cpu", "CPU", m.cpu_percent(), options_.cpu_warning, options_.cpu_critical);
  percent_rule("memory", "Memory", m.memory_percent(), options_.memory_warning,
               options_.memory_critical);
  if (m.disk_total_bytes() > 0) {
    percent_rule("disk", "Disk", m.disk_percent(), options_.disk_warning, options_.disk_critical);
  }
  const double rss = static_cast<double>(m.process_rss_bytes());
  const double limit = static_cast<double>(options_.process_memory_bytes);
  ApplyLocked("process_memory", source, rss,
              Judge(rss, limit, kNever, limit * options_.hysteresis / 100,
                    active("process_memory")),
              absl::StrFormat("agent %s process uses %.1f MB (warning above %.1f MB)", agent_id,
                              rss / 1e6, limit / 1e6),
              events);

  bool critical = false;
  for (const auto& [key, number] : active_) {
    const v1::Alert& a = alerts_[number];
    critical |= a.source() == source && a.severity() == v1::ALERT_SEVERITY_CRITICAL;
  }
  UpdateHealthLocked(s, critical ? v1::HEALTH_STATUS_DEGRADED : v1::HEALTH_STATUS_HEALTHY,
                     critical ? "a critical alert is active" : "", events);
  return events;
}

std::vector<v1::TaskEvent> Monitor::OnAgentConnected(const std::string& agent_id) {
  std::vector<v1::TaskEvent> events;
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  Service& s = ServiceLocked(AgentSource(agent_id), "agent");
  s.connected = true;
  s.last_seen = now;
  s.disconnected_at = absl::InfiniteFuture();
  *s.health.mutable_started_at() = ToProto(now);
  UpdateHealthLocked(s, v1::HEALTH_STATUS_HEALTHY, "", events);
  if (running_) ApplyLocked("agent_offline", AgentSource(agent_id), 0, Verdict(), "", events);
  return events;
}

std::vector<v1::TaskEvent> Monitor::OnAgentDisconnected(const std::string& agent_id) {
  std::vector<v1::TaskEvent> events;
  absl::MutexLock lock(&mu_);
  Service& s = ServiceLocked(AgentSource(agent_id), "agent");
  s.connected = false;
  s.disconnected_at = clock_.Now();
  UpdateHealthLocked(s, v1::HEALTH_STATUS_DOWN, "disconnected", events);
  return events;
}

std::vector<v1::TaskEvent> Monitor::ForgetAgent(const std::string& agent_id) {
  std::vector<v1::TaskEvent> events;
  const std::string source = AgentSource(agent_id);
  absl::MutexLock lock(&mu_);
  history_.erase(agent_id);
  services_.erase(source);
  std::vector<uint64_t> open;
  for (const auto& [key, number] : active_) {
    if (alerts_[number].source() == source) open.push_back(number);
  }
  for (uint64_t number : open) ResolveLocked(alerts_[number], "agent removed", events);
  for (auto it = silenced_.begin(); it != silenced_.end();) {
    auto cur = it++;
    if (absl::EndsWith(*cur, "|" + source)) silenced_.erase(cur);
  }
  return events;
}

void Monitor::OnTaskFinished(const std::string& agent_id, v1::TaskStatus status,
                             absl::Duration ran) {
  const bool failed = status == v1::TASK_STATUS_FAILED || status == v1::TASK_STATUS_TIMED_OUT ||
                      status == v1::TASK_STATUS_LOST;
  absl::MutexLock lock(&mu_);
  finished_.emplace_back(clock_.Now(), failed);
  if (agent_id.empty()) return;
  Counters& c = ServiceLocked(AgentSource(agent_id), "agent").counters;
  ++c.requests;
  c.errors += failed;
  c.total += ran;
}

std::vector<v1::TaskEvent> Monitor::OnHealthReport(v1::ServiceHealth report) {
  std::vector<v1::TaskEvent> events;
  absl::MutexLock lock(&mu_);
  Service& s = ServiceLocked(report.name(), report.kind());
  s.connected = true;
  s.last_seen = clock_.Now();
  const v1::HealthStatus status = report.status();
  const std::string reason = report.reason();
  report.set_status(s.health.status());  // UpdateHealthLocked tells a change.
  report.set_reason(s.health.reason());
  s.health = std::move(report);
  UpdateHealthLocked(s, status == v1::HEALTH_STATUS_UNSPECIFIED ? v1::HEALTH_STATUS_HEALTHY : status,
                     reason, events);
  return events;
}

void Monitor::OnRequest(bool failed, absl::Duration took) {
  absl::MutexLock lock(&mu_);
  Counters& c = services_["coordinator"].counters;
  ++c.requests;
  c.errors += failed;
  c.total += took;
}

std::vector<v1::TaskEvent> Monitor::Evaluate(int64_t queued) {
  std::vector<v1::TaskEvent> events;
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  if (!running_) return events;

  while (!finished_.empty() && finished_.front().first <= now - options_.failure_window) {
    finished_.pop_front();
  }
  int failed = 0;
  for (const auto& [t, f] : finished_) failed += f;
  const int n = static_cast<int>(finished_.size());
  const double rate = n > 0 ? 100.0 * failed / n : 0;
  Verdict v = Judge(rate, options_.failure_rate * 100, kNever, options_.hysteresis,
                    ActiveLocked("failure_rate", "coordinator"));
  if (n < options_.failure_min_tasks && !v.hold) v.severity = v1::ALERT_SEVERITY_UNSPECIFIED;
  ApplyLocked("failure_rate", "coordinator", rate, v,
              absl::StrFormat("%d of the %d tasks finished in the last %s failed (%.0f%%, warning "
                              "above %.0f%%)",
                              failed, n, absl::FormatDuration(options_.failure_window), rate,
                              options_.failure_rate * 100),
              events);

  const double depth = static_cast<double>(queued);
  const double most = static_cast<double>(options_.queue_depth);
  ApplyLocked("queue_depth", "coordinator", depth,
              Judge(depth, most, kNever, most / 10, ActiveLocked("queue_depth", "coordinator")),
              absl::StrFormat("%d tasks queued (warning above %d)", queued, options_.queue_depth),
              events);

  for (auto& [name, s] : services_) {
    if (s.health.kind() == "agent") {
      const std::string id = name.substr(6);
      Verdict offline;
      if (!s.connected && now - s.disconnected_at >= options_.agent_offline_after) {
        offline.severity = v1::ALERT_SEVERITY_WARNING;
      }
      ApplyLocked("agent_offline", name,
                  s.connected ? 0 : absl::ToDoubleSeconds(now - s.disconnected_at), offline,
                  absl::StrCat("agent ", id, " has been offline since ",
                               absl::FormatTime("%H:%M:%S UTC", s.disconnected_at,
                                                absl::UTCTimeZone())),
                  events);
      if (s.connected && s.health.status() == v1::HEALTH_STATUS_HEALTHY &&
          now - s.last_seen > 3 * options_.interval) {
        UpdateHealthLocked(s, v1::HEALTH_STATUS_DEGRADED,
                           absl::StrCat("no heartbeat for ",
                                        absl::FormatDuration(absl::Trunc(now - s.last_seen,
                                                                         absl::Seconds(1)))),
                           events);
      }
    } else if (s.health.kind() == "gateway" && s.connected &&
               now - s.last_seen > options_.gateway_silence) {
      s.connected = false;
      UpdateHealthLocked(s, v1::HEALTH_STATUS_DOWN, "no report", events);
    }
  }
  return events;
}

absl::StatusOr<std::vector<v1::TaskEvent>> Monitor::Resolve(const std::string& alert_id,
                                                            const std::string& by) {
  std::vector<v1::TaskEvent> events;
  absl::MutexLock lock(&mu_);
  absl::string_view digits = alert_id;
  uint64_t number = 0;
  auto it = absl::ConsumePrefix(&digits, "alert-") && absl::SimpleAtoi(digits, &number)
                ? alerts_.find(number)
                : alerts_.end();
  if (it == alerts_.end()) return absl::NotFoundError(absl::StrCat("alert ", alert_id, " not found"));
  if (it->second.has_resolved_at()) {
    return absl::FailedPreconditionError(absl::StrCat("alert ", alert_id, " is already resolved"));
  }
  silenced_.insert(Key(it->second.rule(), it->second.source()));
  ResolveLocked(it->second, by, events);
  return events;
}

void Monitor::SetRunning(bool running) {
  absl::MutexLock lock(&mu_);
  running_ = running;
}

std::vector<v1::HostMetrics> Monitor::Latest() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::HostMetrics> out;
  for (const auto& [id, h] : history_) {
    if (!h.empty()) out.push_back(h.back());
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.source() < b.source(); });
  return out;
}

absl::StatusOr<std::vector<v1::HostMetrics>> Monitor::History(const std::string& agent_id,
                                                              absl::Time since,
                                                              absl::Time until) const {
  absl::MutexLock lock(&mu_);
  auto it = history_.find(agent_id);
  if (it == history_.end()) {
    return absl::NotFoundError(absl::StrCat("agent ", agent_id, " has sent no metrics"));
  }
  std::vector<v1::HostMetrics> out;
  for (const v1::HostMetrics& m : it->second) {
    const absl::Time t = FromProto(m.time());
    if (t >= since && t < until) out.push_back(m);
  }
  return out;
}

std::vector<v1::ServiceHealth> Monitor::Services() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::ServiceHealth> out;
  for (const auto& [name, s] : services_) out.push_back(SnapshotLocked(s));
  return out;
}

std::vector<v1::Alert> Monitor::Alerts(bool active_only) const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Alert> out;
  for (auto it = alerts_.rbegin(); it != alerts_.rend(); ++it) {
    if (!active_only || !it->second.has_resolved_at()) out.push_back(it->second);
  }
  return out;
}

v1::MonitoringStatus Monitor::Status() const {
  absl::MutexLock lock(&mu_);
  v1::MonitoringStatus s;
  s.set_running(running_);
  *s.mutable_interval() = ToProto(options_.interval);
  s.set_history_size(static_cast<uint32_t>(options_.history_size));
  s.set_active_alerts(static_cast<int32_t>(active_.size()));
  s.set_agents_reporting(static_cast<int32_t>(history_.size()));
  auto& t = *s.mutable_thresholds();
  t["cpu.warning"] = options_.cpu_warning;
  t["cpu.critical"] = options_.cpu_critical;
  t["memory.warning"] = options_.memory_warning;
  t["memory.critical"] = options_.memory_critical;
  t["disk.warning"] = options_.disk_warning;
  t["disk.critical"] = options_.disk_critical;
  t["process_memory.warning"] = static_cast<double>(options_.process_memory_bytes);
  t["failure_rate.warning"] = options_.failure_rate;
  t["queue_depth.warning"] = static_cast<double>(options_.queue_depth);
  t["hysteresis"] = options_.hysteresis;
  return s;
}

}  // namespace taskgrid
