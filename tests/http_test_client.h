// A deliberately small, independent HTTP/1.1 client for tests: blocking
// sockets, Content-Length bodies, and a Server-Sent Events reader that parses
// the wire format itself. Every wait is bounded.
#ifndef TASKGRID_TESTS_HTTP_TEST_CLIENT_H_
#define TASKGRID_TESTS_HTTP_TEST_CLIENT_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace taskgrid::testing_http {

inline int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

inline bool SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// Reads what is available within `timeout`; false on EOF, error or timeout.
inline bool ReadSome(int fd, std::string& buf, absl::Duration timeout) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) <= 0) return false;
  char chunk[65536];
  const ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
  if (n <= 0) return false;
  buf.append(chunk, static_cast<size_t>(n));
  return true;
}

inline std::string Request(const std::string& method, const std::string& path,
                           const std::string& body,
                           const std::map<std::string, std::string>& headers) {
  // Host is 127.0.0.1 unless `headers` name one.
  std::string req = absl::StrCat(method, " ", path, " HTTP/1.1\r\n");
  if (!headers.count("Host")) absl::StrAppend(&req, "Host: 127.0.0.1\r\n");
  for (const auto& [k, v] : headers) absl::StrAppend(&req, k, ": ", v, "\r\n");
  if (!body.empty() || method == "POST")
    absl::StrAppend(&req, "Content-Length: ", body.size(), "\r\n");
  return absl::StrCat(req, "Connection: close\r\n\r\n", body);
}

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // Lower-case names.
  std::string body;
};

inline Response Fetch(int port, const std::string& method, const std::string& path,
                      const std::string& body = "",
                      std::map<std::string, std::string> headers = {}) {
  Response r;
  if (!body.empty() && !headers.count("Content-Type")) headers["Content-Type"] = "application/json";
  const int fd = Connect(port);
  if (fd < 0 || !SendAll(fd, Request(method, path, body, headers))) return r;
  std::string raw;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline && ReadSome(fd, raw, absl::Seconds(10))) {
  }
  close(fd);
  const size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos) return r;
  std::vector<std::string> lines = absl::StrSplit(raw.substr(0, head_end), "\r\n");
  std::vector<std::string> status_line = absl::StrSplit(lines[0], ' ');
  if (status_line.size() > 1) (void)absl::SimpleAtoi(status_line[1], &r.status);
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    r.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  r.body = raw.substr(head_end + 4);
  return r;
}

// Sends `raw` bytes as they are and returns the status of the answer (0
// when the connection closed without one).
inline int RawStatus(int port, const std::string& raw) {
  const int fd = Connect(port);
  if (fd < 0 || !SendAll(fd, raw)) return 0;
  std::string got;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (got.find("\r\n") == std::string::npos && absl::Now() < deadline &&
         ReadSome(fd, got, absl::Seconds(10))) {
  }
  close(fd);
  int status = 0;
  if (got.size() >= 12) (void)absl::SimpleAtoi(got.substr(9, 3), &status);
  return status;
}

struct SseEvent {
  std::string id, event, data;
};

// Reads an event stream frame by frame.
class SseClient {
 public:
  SseClient(int port, const std::string& path, std::map<std::string, std::string> headers = {}) {
    fd_ = Connect(port);
    headers["Accept"] = "text/event-stream";
    if (fd_ >= 0) SendAll(fd_, Request("GET", path, "", headers));
  }
  ~SseClient() { Close(); }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  int status() {
    ReadHead();
    return status_;
  }
  // The next event (comments and retry lines skipped); false on end of
  // stream or when nothing arrives within `timeout`.
  bool Next(SseEvent& out, absl::Duration timeout = absl::Seconds(10)) {
    if (!ReadHead()) return false;
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      size_t end;
      while ((end = buf_.find("\n\n")) != std::string::npos) {
        const std::string frame = buf_.substr(0, end);
        buf_.erase(0, end + 2);
        SseEvent e;
        bool any = false;
        for (absl::string_view line : absl::StrSplit(frame, '\n')) {
          if (absl::ConsumePrefix(&line, "id: "))
            e.id = std::string(line), any = true;
          else if (absl::ConsumePrefix(&line, "event: "))
            e.event = std::string(line), any = true;
          else if (absl::ConsumePrefix(&line, "data: "))
            e.data += std::string(line), any = true;
        }
        if (any && (!e.event.empty() || !e.data.empty())) {
          out = std::move(e);
          return true;
        }
      }
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration() || !ReadSome(fd_, buf_, left)) return false;
    }
  }

 private:
  bool ReadHead() {
    if (status_ != 0) return true;
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (buf_.find("\r\n\r\n") == std::string::npos) {
      if (absl::Now() > deadline || !ReadSome(fd_, buf_, absl::Seconds(10))) return false;
    }
    const size_t end = buf_.find("\r\n\r\n");
    const std::string head = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    (void)absl::SimpleAtoi(head.substr(9, 3), &status_);
    return true;
  }

  int fd_ = -1;
  int status_ = 0;
  std::string buf_;
};

}  // namespace taskgrid::testing_http

#endif  // TASKGRID_TESTS_HTTP_TEST_CLIENT_H_
