// A small HTTP/1.1 client for the Docker Engine API over its unix socket
// (API version 1.41, Docker 20.10 and later): one connection per request,
// Beast's parser for the responses, every wait bounded. Errors name the cause
// a person can act on: Docker not running, no access to the socket, a daemon
// that does not answer.
#ifndef TASKGRID_SERVICES_AGENT_DOCKER_CLIENT_H_
#define TASKGRID_SERVICES_AGENT_DOCKER_CLIENT_H_

#include <google/protobuf/struct.pb.h>

#include <atomic>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace taskgrid {

struct DockerResponse {
  int status = 0;
  std::string body;

  bool ok() const { return status >= 200 && status < 300; }
  // The body as JSON (an empty Struct when it is not an object).
  google::protobuf::Struct Json() const;
  // The Engine's {"message": ...} of an error, or the raw body.
  std::string ErrorMessage() const;
};

// Stateless and thread-safe: each call opens its own connection.
class DockerClient {
 public:
  explicit DockerClient(std::string socket_path, absl::Duration timeout = absl::Seconds(60))
      : socket_path_(std::move(socket_path)), timeout_(timeout) {}

  const std::string& socket_path() const { return socket_path_; }

  // Sends METHOD /v1.41TARGET with `body` as JSON (none when null) and reads
  // the whole response. kUnavailable when the daemon cannot be reached or
  // does not answer within `timeout` (the client's when zero),
  // kPermissionDenied when the socket may not be opened. HTTP errors are
  // returned as responses.
  absl::StatusOr<DockerResponse> Call(absl::string_view method, absl::string_view target,
                                      const google::protobuf::Struct* body = nullptr,
                                      absl::Duration timeout = absl::ZeroDuration()) const;

  absl::Duration timeout() const { return timeout_; }

  // Like Call, but a 2xx body is handed to `on_data` as it arrives, without a
  // timeout (a followed container may be silent for hours); the response then
  // holds the status only. Returns early, with the status read so far, once
  // `abort` is set (checked at least every 100 ms) or `on_data` returns false.
  absl::StatusOr<DockerResponse> Stream(absl::string_view method, absl::string_view target,
                                        const std::function<bool(absl::string_view)>& on_data,
                                        const std::atomic<bool>& abort) const;

 private:
  absl::StatusOr<DockerResponse> Exchange(absl::string_view method, absl::string_view target,
                                          const google::protobuf::Struct* body,
                                          absl::Duration timeout,
                                          const std::function<bool(absl::string_view)>* on_data,
                                          const std::atomic<bool>* abort) const;

  const std::string socket_path_;
  const absl::Duration timeout_;
};

// Docker's multiplexed stream format (a container without a TTY): 8-byte
// frame headers [stream, 0, 0, 0, size as big-endian uint32] before each
// payload. Not thread-safe.
class DockerStreamDemuxer {
 public:
  // `on_payload(stream, bytes)` with stream 1 (stdout) or 2 (stderr).
  using PayloadCallback = std::function<void(int stream, absl::string_view data)>;
  explicit DockerStreamDemuxer(PayloadCallback on_payload) : on_payload_(std::move(on_payload)) {}
  // Any split of the stream is fine: headers and payloads may straddle calls.
  void Feed(absl::string_view data);

 private:
  PayloadCallback on_payload_;
  char header_[8];
  size_t header_len_ = 0;
  int stream_ = 0;
  uint32_t remaining_ = 0;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_AGENT_DOCKER_CLIENT_H_
