// Arbitrary bytes sent over a real TCP connection to a real gateway in front
// of a real coordinator: the HTTP parser, every route's query strings and
// bodies, event-stream and WebSocket upgrades. Any response is fine; a crash,
// a sanitizer report or a hang is not.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "absl/strings/str_cat.h"
#include "fuzz/fuzz_init.h"
#include "services/coordinator/coordinator.h"
#include "services/gateway/gateway.h"

namespace {

struct Cluster {
  Cluster() {
    taskgrid::CoordinatorOptions c;
    c.grpc_address = "127.0.0.1:0";
    c.metrics_address = "";
    coordinator = std::move(*taskgrid::Coordinator::Start(c));
    taskgrid::gateway::GatewayOptions g;
    g.http_address = "127.0.0.1:0";
    g.metrics_address = "";
    g.coordinator_address = absl::StrCat("127.0.0.1:", coordinator->grpc_port());
    g.rate_limit = 0;
    gateway = std::move(*taskgrid::gateway::Gateway::Start(g));
  }
  std::unique_ptr<taskgrid::Coordinator> coordinator;
  std::unique_ptr<taskgrid::gateway::Gateway> gateway;
};

// Sends `data`, half-closes, and reads until the gateway closes or goes
// quiet for 10 ms (an open event stream), at most 1 MiB.
void Exchange(int port, const uint8_t* data, size_t size) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) std::abort();
  for (size_t off = 0; off < size;) {
    const ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
    if (n <= 0) break;  // The gateway may close early on a bad request.
    off += static_cast<size_t>(n);
  }
  shutdown(fd, SHUT_WR);
  char buf[16 << 10];
  for (size_t total = 0; total < (1 << 20);) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 10) != 1) break;
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    total += static_cast<size_t>(n);
  }
  close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Cluster* cluster = new Cluster();  // Lives for the whole run.
  Exchange(cluster->gateway->http_port(), data, size);
  return 0;
}
