#include "services/agent/docker_client.h"

#include <google/protobuf/util/json_util.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace taskgrid {
namespace {

namespace http = boost::beast::http;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

absl::Status ConnectError(const std::string& path, int err) {
  if (err == EACCES || err == EPERM) {
    return absl::PermissionDeniedError(
        absl::StrCat("permission denied on the Docker socket ", path,
                     ": the agent's user needs access to it (root or the docker group)"));
  }
  return absl::UnavailableError(absl::StrCat("Docker is not running: cannot connect to ", path,
                                             " (", std::strerror(err), ")"));
}

// Waits for `events` until `deadline`, waking every 100 ms to look at
// `abort`. False on timeout or abort.
bool PollUntil(int fd, short events, absl::Time deadline, const std::atomic<bool>* abort) {
  for (;;) {
    if (abort != nullptr && abort->load()) return false;
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd p{fd, events, 0};
    const int ms = static_cast<int>(absl::ToInt64Milliseconds(std::min(left, absl::Milliseconds(100))));
    const int n = poll(&p, 1, std::max(ms, 1));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return true;  // Let the read or write report it.
  }
}

}  // namespace

google::protobuf::Struct DockerResponse::Json() const {
  google::protobuf::Struct s;
  google::protobuf::util::JsonParseOptions o;
  o.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(body, &s, o).ok()) s.Clear();
  return s;
}

std::string DockerResponse::ErrorMessage() const {
  const google::protobuf::Struct j = Json();
  auto it = j.fields().find("message");
  if (it != j.fields().end() && it->second.has_string_value()) return it->second.string_value();
  std::string raw = body.substr(0, 512);
  while (!raw.empty() && (raw.back() == '\n' || raw.back() == '\r')) raw.pop_back();
  return raw.empty() ? absl::StrCat("HTTP ", status) : raw;
}

absl::StatusOr<DockerResponse> DockerClient::Call(absl::string_view method,
                                                  absl::string_view target,
                                                  const google::protobuf::Struct* body,
                                                  absl::Duration timeout) const {
  return Exchange(method, target, body, timeout > absl::ZeroDuration() ? timeout : timeout_,
                  nullptr, nullptr);
}

absl::StatusOr<DockerResponse> DockerClient::Stream(
    absl::string_view method, absl::string_view target,
    const std::function<bool(absl::string_view)>& on_data, const std::atomic<bool>& abort) const {
  return Exchange(method, target, nullptr, timeout_, &on_data, &abort);
}

absl::StatusOr<DockerResponse> DockerClient::Exchange(
    absl::string_view method, absl::string_view target, const google::protobuf::Struct* body,
    absl::Duration timeout, const std::function<bool(absl::string_view)>* on_data,
    const std::atomic<bool>* abort) const {
  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path_.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("docker socket path is too long: ", socket_path_));
  }
  std::memcpy(addr.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ConnectError(socket_path_, errno);
  }

  std::string json;
  if (body != nullptr) (void)google::protobuf::util::MessageToJsonString(*body, &json);
  std::string request =
      absl::StrCat(method, " /v1.41", target,
                   " HTTP/1.1\r\nHost: docker\r\nUser-Agent: taskgrid-agent\r\n"
                   "Connection: close\r\n");
  if (body != nullptr) {
    absl::StrAppend(&request, "Content-Type: application/json\r\nContent-Length: ", json.size(),
                    "\r\n");
  }
  absl::StrAppend(&request, "\r\n", json);

  const std::string what = absl::StrCat(method, " ", target);
  const absl::Time deadline = absl::Now() + timeout;
  auto timed_out = [&] {
    return absl::UnavailableError(absl::StrCat("Docker did not answer ", what, " within ",
                                               absl::FormatDuration(timeout)));
  };
  for (size_t sent = 0; sent < request.size();) {
    if (!PollUntil(fd.get(), POLLOUT, deadline, abort)) return timed_out();
    const ssize_t n = send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EINTR && errno != EAGAIN) {
      return absl::UnavailableError(
          absl::StrCat("Docker closed the connection: ", std::strerror(errno)));
    }
    if (n > 0) sent += static_cast<size_t>(n);
  }

  http::response_parser<http::string_body> parser;
  parser.body_limit(boost::none);
  parser.eager(true);
  DockerResponse response;
  std::string pending;  // Bytes not yet taken by the parser.
  char buf[64 << 10];
  bool eof = false;
  for (;;) {
    // Streaming bodies have no deadline once the headers are in.
    const bool streaming = on_data != nullptr && parser.is_header_done() &&
                           parser.get().result_int() / 100 == 2;
    if (!eof) {
      if (!PollUntil(fd.get(), POLLIN, streaming ? absl::InfiniteFuture() : deadline, abort)) {
        if (abort != nullptr && abort->load()) return response;
        return timed_out();
      }
      const ssize_t n = recv(fd.get(), buf, sizeof(buf), 0);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        return absl::UnavailableError(
            absl::StrCat("reading from Docker: ", std::strerror(errno)));
      }
      if (n == 0) {
        eof = true;
      } else {
        pending.append(buf, static_cast<size_t>(n));
      }
    }
    boost::beast::error_code ec;
    while (!pending.empty() && !parser.is_done()) {
      const size_t used = parser.put(boost::asio::buffer(pending), ec);
      pending.erase(0, used);
      if (ec == http::error::need_more) {
        ec = {};
        break;
      }
      if (ec) break;
    }
    if (eof && !parser.got_some()) {
      return absl::UnavailableError(absl::StrCat("Docker closed the connection without answering ", what));
    }
    if (eof && !ec && !parser.is_done()) parser.put_eof(ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("unreadable answer from Docker to ", what, ": ", ec.message()));
    }
    if (parser.is_header_done()) {
      response.status = static_cast<int>(parser.get().result_int());
      if (on_data != nullptr && response.ok() && !parser.get().body().empty()) {
        std::string chunk;
        chunk.swap(parser.get().body());
        if (!(*on_data)(chunk)) return response;
      }
    }
    if (parser.is_done()) {
      if (on_data == nullptr || !response.ok()) response.body = std::move(parser.get().body());
      return response;
    }
    if (eof) {
      return absl::UnavailableError(absl::StrCat("Docker closed the connection during ", what));
    }
  }
}

void DockerStreamDemuxer::Feed(absl::string_view data) {
  while (!data.empty()) {
    if (remaining_ == 0) {
      const size_t take = std::min(sizeof(header_) - header_len_, data.size());
      std::memcpy(header_ + header_len_, data.data(), take);
      header_len_ += take;
      data.remove_prefix(take);
      if (header_len_ < sizeof(header_)) return;
      header_len_ = 0;
      stream_ = header_[0] == 2 ? 2 : 1;
      remaining_ = (static_cast<uint32_t>(static_cast<unsigned char>(header_[4])) << 24) |
                   (static_cast<uint32_t>(static_cast<unsigned char>(header_[5])) << 16) |
                   (static_cast<uint32_t>(static_cast<unsigned char>(header_[6])) << 8) |
                   static_cast<uint32_t>(static_cast<unsigned char>(header_[7]));
      continue;
    }
    const size_t take = std::min<size_t>(remaining_, data.size());
    on_payload_(stream_, data.substr(0, take));
    remaining_ -= static_cast<uint32_t>(take);
    data.remove_prefix(take);
  }
}

}  // namespace taskgrid
