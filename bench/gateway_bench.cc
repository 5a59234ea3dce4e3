// Gateway and streaming benchmarks against the real binaries on 127.0.0.1
// (coordinator, one agent, gateway):
//  - fan_out: N SSE clients on /api/events while a task emits R output
//    events per second: event-to-client latency p50/p99 (the event's
//    coordinator timestamp to its arrival), events delivered, gateway RSS,
//    beside the same client fed by one bare thread (FanOutCeiling);
//  - stream: one SSE client following a task that writes B bytes to stdout,
//    delivered MB/s beside the machine's `head -c B /dev/zero | cat` pipe
//    rate; and one gRPC Watch client doing the same, beside a loopback TCP
//    copy of B bytes;
//  - rest: GET /api/tasks/{id} under wrk beside the coordinator's own gRPC
//    Get from a closed loop of the same number of connections.
//
//   gateway_bench [--clients=1000] [--events_per_second=1000] [--seconds=10]
//                 [--stream_bytes=1073741824] [--connections=32]
#include <arpa/inet.h>
#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "taskgrid/v1/task_service.grpc.pb.h"
#include "tests/http_test_client.h"

ABSL_FLAG(int, clients, 1000, "SSE clients for the fan-out measurement.");
ABSL_FLAG(int, events_per_second, 1000, "Output events per second during fan-out.");
ABSL_FLAG(double, seconds, 10, "Length of the fan-out and REST measurements.");
ABSL_FLAG(int64_t, stream_bytes, int64_t{1} << 30, "Bytes the streaming task writes.");
ABSL_FLAG(int, connections, 32, "Concurrent connections for the REST measurement.");
ABSL_FLAG(int64_t, event_log_bytes, 64 << 20, "The coordinator's --event_log_bytes.");

extern char** environ;

namespace taskgrid {
namespace {

using bench::Percentile;
using bench::ReadPort;
using bench::RssBytes;
using bench::Spawn;

using testing_http::Connect;
using testing_http::ReadSome;
using testing_http::Request;
using testing_http::SendAll;

std::string SubmitJson(int port, const std::string& command) {
  auto r = testing_http::Fetch(port, "POST", "/api/tasks",
                               absl::StrCat(R"({"shell":{"command":")", command, R"("}})"));
  const size_t at = r.body.find(R"("id":")");
  if (r.status != 201 || at == std::string::npos) {
    std::fprintf(stderr, "submit failed: %d %s\n", r.status, r.body.c_str());
    std::exit(1);
  }
  return r.body.substr(at + 6, 36);
}

// Reads SSE frames from many sockets in one thread; records, for each
// task:log frame, now minus the event's coordinator time.
struct FanOut {
  std::vector<double> latencies_ms;
  int64_t events = 0;
  int open = 0;
};

// Reads every client's frames for `seconds`, starting now.
void Measure(const std::vector<int>& fds, double seconds, pid_t gateway, int64_t& rss,
             FanOut& result) {
  std::vector<std::string> bufs(fds.size());
  const absl::Time end = absl::Now() + absl::Seconds(seconds + 3);
  std::vector<pollfd> pfds;
  for (int fd : fds) pfds.push_back({fd, POLLIN, 0});
  char chunk[65536];
  absl::Time next_rss = absl::Now();
  while (absl::Now() < end) {
    if (poll(pfds.data(), pfds.size(), 100) <= 0) continue;
    const absl::Time now = absl::Now();
    for (size_t i = 0; i < pfds.size(); ++i) {
      if (!(pfds[i].revents & POLLIN)) continue;
      const ssize_t n = recv(pfds[i].fd, chunk, sizeof(chunk), 0);
      if (n <= 0) continue;
      std::string& buf = bufs[i];
      buf.append(chunk, static_cast<size_t>(n));
      // Frames are consumed by offset and the buffer trimmed once per read:
      // erasing each frame would cost the measuring client quadratic time
      // exactly when it falls behind.
      size_t begin = 0, frame_end;
      while ((frame_end = buf.find("\n\n", begin)) != std::string::npos) {
        // Only task:log frames are subscribed to. Timestamps are parsed for
        // one frame in 16 so the measuring client is not the bottleneck.
        const absl::string_view frame(buf.data() + begin, frame_end - begin);
        const size_t t = frame.find(R"("time":")");
        if (t != absl::string_view::npos && (result.events++ % 16) == 0) {
          absl::Time at;
          std::string err;
          if (absl::ParseTime(absl::RFC3339_full,
                              frame.substr(t + 8, frame.find('"', t + 8) - t - 8), &at, &err)) {
            result.latencies_ms.push_back(absl::ToDoubleMilliseconds(now - at));
          }
        }
        begin = frame_end + 2;
      }
      buf.erase(0, begin);
    }
    if (now >= next_rss) {
      if (gateway > 0) rss = std::max(rss, RssBytes(gateway));
      next_rss = now + absl::Milliseconds(100);
    }
  }
  for (int fd : fds) close(fd);
}

FanOut RunFanOut(int port, int clients, int rate, double seconds, pid_t gateway, int64_t& rss) {
  FanOut result;
  std::vector<int> fds;
  for (int i = 0; i < clients; ++i) {
    const int fd = Connect(port);
    if (fd < 0) continue;
    SendAll(fd,
            Request("GET", "/api/events?types=task:log", "", {{"Accept", "text/event-stream"}}));
    fds.push_back(fd);
  }
  result.open = static_cast<int>(fds.size());
  absl::SleepFor(absl::Milliseconds(500));  // Let every stream open.
  const int lines = static_cast<int>(rate * seconds);
  SubmitJson(port, absl::StrCat("python3 -c 'import time,sys\\nfor i in range(", lines,
                                "):\\n print(i, flush=True); time.sleep(", 1.0 / rate, ")'"));
  Measure(fds, seconds, gateway, rss, result);
  return result;
}

// A listening socket on 127.0.0.1 and a free port; `addr` is where it listens.
int ListenOnLoopback(int backlog, sockaddr_in& addr) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  bind(listener, reinterpret_cast<sockaddr*>(&addr), len);
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  listen(listener, backlog);
  return listener;
}

// The machine's own fan-out, read by the same client: one thread that, as
// fast as it can, writes every frame due since its last round to each of
// `clients` loopback sockets in one send. The frames are the size of the
// gateway's task:log frames.
FanOut FanOutCeiling(int clients, int rate, double seconds) {
  sockaddr_in addr{};
  const int listener = ListenOnLoopback(clients, addr);
  std::vector<int> fds, served;
  for (int i = 0; i < clients; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(fd);
      continue;
    }
    fds.push_back(fd);
    const int s = accept(listener, nullptr, nullptr);
    const int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    served.push_back(s);
  }
  close(listener);
  FanOut result;
  result.open = static_cast<int>(fds.size());
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    const absl::Time start = absl::Now();
    int64_t sent = 0;
    const int64_t total = static_cast<int64_t>(rate * seconds);
    while (!stop.load() && sent < total) {
      const absl::Time now = absl::Now();
      const int64_t due =
          std::min(total, static_cast<int64_t>(absl::ToDoubleSeconds(now - start) * rate));
      if (due <= sent) {
        absl::SleepFor(absl::Microseconds(200));
        continue;
      }
      const std::string time = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", now, absl::UTCTimeZone());
      std::string out;
      for (; sent < due; ++sent) {
        absl::StrAppend(&out, "id: ", sent, "\nevent: task:log\ndata: {\"cursor\":\"", sent,
                        R"(","type":"EVENT_TYPE_TASK_LOG","taskId":"00000000-0000-0000-0000-)",
                        R"(000000000000","agentId":"bench","time":")", time,
                        R"(","log":{"stream":"STDOUT","offset":"0","data":"MTIzNAo="}})",
                        "\n\n");
      }
      for (int s : served) SendAll(s, out);
    }
  });
  int64_t rss = 0;
  Measure(fds, seconds, 0, rss, result);
  stop = true;
  writer.join();
  for (int s : served) close(s);
  return result;
}

double RunStream(int port, int64_t bytes, double& seconds_out, int64_t& received, int& resyncs) {
  const std::string id = SubmitJson(port, absl::StrCat("head -c ", bytes, " /dev/zero"));
  testing_http::SseClient client(port, "/api/tasks/" + id + "/events");
  const auto start = std::chrono::steady_clock::now();
  testing_http::SseEvent e;
  while (client.Next(e, absl::Seconds(30))) {
    if (e.event == "task:log") {
      // Count decoded bytes from the base64 length: a full JSON parse here
      // would make the measuring client the bottleneck.
      const size_t at = e.data.find(R"("data":")");
      if (at != std::string::npos) {
        const size_t begin = at + 8, end = e.data.find('"', begin);
        const size_t n = end - begin;
        const size_t pad = (n > 0 && e.data[end - 1] == '=') + (n > 1 && e.data[end - 2] == '=');
        received += static_cast<int64_t>(n / 4 * 3 - pad);
      }
    }
    if (e.event == "resync") ++resyncs;
    if (e.event == "task:status" && e.data.find("TASK_STATUS_SUCCEEDED") != std::string::npos)
      break;
  }
  seconds_out = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return static_cast<double>(received) / 1e6 / seconds_out;
}

double PipeCeiling(int64_t bytes) {
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid =
      Spawn({"/bin/sh", "-c", absl::StrCat("head -c ", bytes, " /dev/zero | cat")}, "/dev/null");
  waitpid(pid, nullptr, 0);
  return static_cast<double>(bytes) / 1e6 /
         std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// A loopback TCP copy of `bytes`: one thread writes, this one reads.
double TcpCeiling(int64_t bytes) {
  sockaddr_in addr{};
  const int listener = ListenOnLoopback(1, addr);
  const auto start = std::chrono::steady_clock::now();
  std::thread writer([&] {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    const std::string block(64 << 10, 'x');
    for (int64_t sent = 0; sent < bytes;) {
      const ssize_t n = write(fd, block.data(), std::min<int64_t>(block.size(), bytes - sent));
      if (n <= 0) break;
      sent += n;
    }
    close(fd);
  });
  const int fd = accept(listener, nullptr, nullptr);
  std::vector<char> buf(64 << 10);
  int64_t received = 0;
  for (ssize_t n; (n = read(fd, buf.data(), buf.size())) > 0;) received += n;
  writer.join();
  close(fd);
  close(listener);
  return static_cast<double>(received) / 1e6 /
         std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// One gRPC Watch client following a task that writes `bytes`: MB/s.
double RunWatchStream(const std::string& address, int64_t bytes) {
  auto stub =
      v1::TaskService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  v1::SubmitRequest req;
  req.mutable_spec()->mutable_shell()->set_command(absl::StrCat("head -c ", bytes, " /dev/zero"));
  v1::SubmitResponse resp;
  grpc::ClientContext submit_ctx;
  if (!stub->Submit(&submit_ctx, req, &resp).ok()) return 0;
  const auto start = std::chrono::steady_clock::now();
  grpc::ClientContext ctx;
  v1::WatchRequest watch;
  watch.set_task_id(resp.task().id());
  watch.set_after_cursor(0);
  auto reader = stub->Watch(&ctx, watch);
  int64_t received = 0;
  bool done = false;
  v1::WatchResponse batch;
  while (!done && reader->Read(&batch)) {
    for (const v1::TaskEvent& e : batch.events()) {
      if (e.type() == v1::EVENT_TYPE_TASK_LOG) received += static_cast<int64_t>(e.output().data().size());
      if (e.type() == v1::EVENT_TYPE_TASK_STATUS && e.task().status() >= v1::TASK_STATUS_SUCCEEDED) {
        done = true;
      }
    }
  }
  ctx.TryCancel();
  reader->Finish().IgnoreError();
  if (received != bytes) std::fprintf(stderr, "watch received %ld of %ld bytes\n", received, bytes);
  return static_cast<double>(received) / 1e6 /
         std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double GrpcGetRate(const std::string& address, const std::string& id, int connections,
                   double seconds) {
  auto stub =
      v1::TaskService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  std::atomic<int64_t> done{0};
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::vector<std::thread> threads;
  for (int i = 0; i < connections; ++i) {
    threads.emplace_back([&] {
      v1::GetRequest req;
      req.set_task_id(id);
      while (std::chrono::steady_clock::now() < end) {
        grpc::ClientContext ctx;
        v1::Task t;
        if (stub->Get(&ctx, req, &t).ok()) ++done;
      }
    });
  }
  for (auto& t : threads) t.join();
  return static_cast<double>(done.load()) / seconds;
}

int Main() {
  char tmpl[] = "/tmp/taskgrid-gwbench-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const pid_t coordinator = Spawn(
      {TASKGRID_COORDINATOR_BIN, "--grpc_address=127.0.0.1:0",
       "--metrics_address=", "--log_level=error", "--port_file=" + dir + "/c", "--data_dir=" + dir,
       absl::StrCat("--event_log_bytes=", absl::GetFlag(FLAGS_event_log_bytes))});
  const std::string address = absl::StrCat("127.0.0.1:", ReadPort(dir + "/c"));
  const pid_t agent = Spawn({TASKGRID_AGENT_BIN, "--coordinator=" + address, "--agent_id=bench",
                             "--metrics_address=", "--log_level=error"});
  const pid_t gateway =
      Spawn({TASKGRID_GATEWAY_BIN, "--coordinator=" + address, "--http_address=127.0.0.1:0",
             "--metrics_address=", "--log_level=error", "--rate_limit=0",
             absl::StrCat("--max_streams_per_caller=", absl::GetFlag(FLAGS_clients) + 10),
             "--port_file=" + dir + "/g"});
  const int port = ReadPort(dir + "/g");
  absl::SleepFor(absl::Milliseconds(500));

  int64_t rss = 0;
  const double seconds = absl::GetFlag(FLAGS_seconds);
  FanOut fan = RunFanOut(port, absl::GetFlag(FLAGS_clients), absl::GetFlag(FLAGS_events_per_second),
                         seconds, gateway, rss);
  const FanOut bare =
      FanOutCeiling(absl::GetFlag(FLAGS_clients), absl::GetFlag(FLAGS_events_per_second), seconds);
  double stream_seconds = 0;
  int64_t stream_received = 0;
  int stream_resyncs = 0;
  const int64_t bytes = absl::GetFlag(FLAGS_stream_bytes);
  const double stream_mbps =
      RunStream(port, bytes, stream_seconds, stream_received, stream_resyncs);
  const double pipe_mbps = PipeCeiling(bytes);
  const double watch_mbps = RunWatchStream(address, bytes);
  const double tcp_mbps = TcpCeiling(bytes);

  const std::string id = SubmitJson(port, "true");
  const int conns = absl::GetFlag(FLAGS_connections);
  Spawn(
      {"wrk", "-t2", absl::StrCat("-c", conns), absl::StrCat("-d", static_cast<int>(seconds), "s"),
       "--latency", absl::StrCat("http://127.0.0.1:", port, "/api/tasks/", id)},
      dir + "/wrk.txt");
  int status = 0;
  wait(&status);
  std::ifstream wrk_in(dir + "/wrk.txt");
  std::string wrk((std::istreambuf_iterator<char>(wrk_in)), std::istreambuf_iterator<char>());
  double rest_rps = 0;
  std::string rest_p99 = "?";
  for (absl::string_view line : absl::StrSplit(wrk, '\n')) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.size() >= 2 && f[0] == "Requests/sec:") (void)absl::SimpleAtod(f[1], &rest_rps);
    if (f.size() >= 2 && f[0] == "99%") rest_p99 = std::string(f[1]);
  }
  const double grpc_rps = GrpcGetRate(address, id, conns, seconds);

  for (pid_t p : {gateway, agent, coordinator}) {
    kill(p, SIGTERM);
    waitpid(p, nullptr, 0);
  }
  std::filesystem::remove_all(dir);
  if (stream_received != bytes || stream_resyncs > 0) {
    std::fprintf(stderr, "SSE stream: %lld of %lld bytes, %d resyncs\n",
                 static_cast<long long>(stream_received), static_cast<long long>(bytes),
                 stream_resyncs);
  }
  double rest_p99_ms = 0;  // wrk prints "1.23ms" or "456.00us".
  if (absl::EndsWith(rest_p99, "us") && absl::SimpleAtod(rest_p99.substr(0, rest_p99.size() - 2), &rest_p99_ms)) {
    rest_p99_ms /= 1000;
  } else if (absl::EndsWith(rest_p99, "ms")) {
    (void)absl::SimpleAtod(rest_p99.substr(0, rest_p99.size() - 2), &rest_p99_ms);
  }
  bench::PrintFigures(
      "gateway",
      {{.name = "fan_out.sse_delivery_p50", .value = Percentile(fan.latencies_ms, 0.5),
        .unit = "ms", .ceiling = Percentile(bare.latencies_ms, 0.5), .lower_is_better = true},
       {.name = "fan_out.sse_delivery_p99", .value = Percentile(fan.latencies_ms, 0.99),
        .unit = "ms", .ceiling = Percentile(bare.latencies_ms, 0.99), .goal = 50,
        .lower_is_better = true},
       {.name = "fan_out.sse_clients", .value = static_cast<double>(fan.open), .unit = "clients",
        .goal = static_cast<double>(absl::GetFlag(FLAGS_clients))},
       {.name = "fan_out.gateway_rss", .value = static_cast<double>(rss) / 1e6, .unit = "MB",
        .lower_is_better = true},
       {.name = "stream.watch_client", .value = watch_mbps, .unit = "MB/s", .ceiling = tcp_mbps,
        .goal_ratio = 0.5},
       {.name = "stream.sse_client", .value = stream_mbps, .unit = "MB/s", .ceiling = pipe_mbps},
       {.name = "rest.get_per_second", .value = rest_rps, .unit = "req/s", .ceiling = grpc_rps},
       {.name = "rest.get_p99", .value = rest_p99_ms, .unit = "ms", .lower_is_better = true}});
  return 0;
}

}  // namespace
}  // namespace taskgrid

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return taskgrid::Main();
}
