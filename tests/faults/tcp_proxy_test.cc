// The fault tests' proxy itself: cutting a link while bytes flow through it
// ends its connections and nothing else (a pump writing into a socket Cut()
// just shut down once killed the whole test process with SIGPIPE).
#include "tests/faults/tcp_proxy.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "absl/time/clock.h"

namespace taskgrid {
namespace {

// A loopback listener that reads and discards everything it is sent.
class Sink {
 public:
  Sink() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = LoopbackAddress(0);
    socklen_t len = sizeof(addr);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), len);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(fd_, 16);
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, 5) != 1) continue;
        const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        readers_.emplace_back([c] {
          char buf[64 << 10];
          while (read(c, buf, sizeof(buf)) > 0) {
          }
          close(c);
        });
      }
    });
  }
  ~Sink() {
    stop_ = true;
    thread_.join();
    for (std::thread& r : readers_) r.join();
    close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<std::thread> readers_;  // Touched by thread_ only until it is joined.
};

TEST(TcpProxyTest, CuttingWhileBytesFlowEndsOnlyTheConnections) {
  Sink sink;
  TcpProxy proxy(sink.port());
  std::atomic<bool> stop{false};
  std::atomic<int> connections{0};
  std::thread writer([&] {
    const std::string block(64 << 10, 'x');
    // A send into a link cut with its window full waits for TCP to give up
    // (about 100 s of zero-window probes): the writer must see `stop` sooner.
    const timeval send_timeout{0, 50'000};
    while (!stop) {
      const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout));
      const sockaddr_in addr = LoopbackAddress(proxy.port());
      if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) {
        ++connections;
        while (!stop && send(fd, block.data(), block.size(), MSG_NOSIGNAL) > 0) {
        }
      }
      close(fd);
    }
  });
  for (int cut = 0; cut < 200; ++cut) {
    absl::SleepFor(absl::Milliseconds(2));
    proxy.Cut();
    proxy.Restore();
  }
  stop = true;
  writer.join();
  EXPECT_GT(connections.load(), 0);  // Bytes flowed through the links it cut.
}

}  // namespace
}  // namespace taskgrid
