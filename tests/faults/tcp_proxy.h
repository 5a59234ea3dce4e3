// A loopback TCP proxy a fault test controls: it forwards every connection to
// an upstream port until Cut() closes them all and drops new ones at once, as
// a broken link would; Restore() forwards again. The listening port is kept
// throughout, so no other process can take it in between.
#ifndef TASKGRID_TESTS_FAULTS_TCP_PROXY_H_
#define TASKGRID_TESTS_FAULTS_TCP_PROXY_H_

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "services/common/testing/test_util.h"

namespace taskgrid {

class TcpProxy {
 public:
  explicit TcpProxy(int upstream_port) : upstream_port_(upstream_port) {
    Listen();
    accepter_ = std::thread([this] { AcceptLoop(); });
  }
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;
  ~TcpProxy() {
    stop_ = true;
    accepter_.join();
    Cut();
    close(listen_fd_);
  }

  int port() const { return port_; }
  int accepted() const { return accepted_; }

  // Closes every connection and drops new ones until Restore().
  void Cut() {
    std::vector<std::unique_ptr<Link>> links;
    {
      absl::MutexLock lock(&mu_);
      cut_ = true;
      links.swap(links_);
    }
    for (auto& l : links) {
      for (int fd : l->fd) shutdown(fd, SHUT_RDWR);
      for (std::thread& t : l->pumps) t.join();
      for (int fd : l->fd) close(fd);
    }
  }

  void Restore() {
    absl::MutexLock lock(&mu_);
    cut_ = false;
  }

  // While on, what the upstream sends is read and thrown away: messages
  // lost in a link that still looks up to both ends.
  void DropDownstream(bool on) { drop_downstream_ = on; }
  // Bytes thrown away so far.
  int64_t dropped_bytes() const { return dropped_bytes_; }

 private:
  struct Link {
    int fd[2];  // Client side, upstream side.
    std::thread pumps[2];
  };

  void Listen() {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr = LoopbackAddress(port_);
    socklen_t len = sizeof(addr);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(listen_fd_, 128);
  }

  void AcceptLoop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 5) != 1) continue;
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      absl::MutexLock lock(&mu_);
      if (cut_) {
        close(fd);  // A broken link: the peer sees its connection end at once.
      } else {
        Connect(fd);
      }
    }
  }

  void Connect(int client) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int upstream = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const sockaddr_in addr = LoopbackAddress(upstream_port_);
    if (connect(upstream, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(upstream);
      close(client);
      return;
    }
    const int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ++accepted_;
    auto link = std::make_unique<Link>();
    link->fd[0] = client;
    link->fd[1] = upstream;
    link->pumps[0] = std::thread([this, client, upstream] { Pump(client, upstream, nullptr); });
    link->pumps[1] = std::thread([this, client, upstream] {
      Pump(upstream, client, &drop_downstream_);
    });
    links_.push_back(std::move(link));
  }

  // Copies until either side fails; then ends both directions. Bytes read
  // while `*drop` holds are not passed on.
  void Pump(int from, int to, const std::atomic<bool>* drop) {
    char buf[64 << 10];
    for (;;) {
      const ssize_t n = read(from, buf, sizeof(buf));
      if (n <= 0) break;
      if (drop != nullptr && drop->load()) {
        dropped_bytes_ += n;
        continue;
      }
      for (ssize_t off = 0; off < n;) {
        // A Cut() may shut `to` down between the read and this write: that
        // must end the pump with EPIPE, not kill the test with SIGPIPE.
        const ssize_t w = send(to, buf + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
        if (w <= 0) {
          shutdown(from, SHUT_RDWR);
          return;
        }
        off += w;
      }
    }
    shutdown(to, SHUT_RDWR);
  }

  const int upstream_port_;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> drop_downstream_{false};
  std::atomic<int64_t> dropped_bytes_{0};
  std::atomic<int> accepted_{0};
  absl::Mutex mu_;
  int listen_fd_ = -1;  // Set before the accept thread starts, closed after it ends.
  bool cut_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::unique_ptr<Link>> links_ ABSL_GUARDED_BY(mu_);
  std::thread accepter_;
};

}  // namespace taskgrid

#endif  // TASKGRID_TESTS_FAULTS_TCP_PROXY_H_
