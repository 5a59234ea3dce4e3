// TLS for the coordinator's gRPC links: which files a server or a client
// uses, their start-up checks, and the gRPC credentials built from them.
// Certificate files are watched (gRPC's FileWatcherCertificateProvider), so a
// renewed certificate is taken without a restart and without dropping live
// streams; replace files by rename so a reader never sees half a file.
#ifndef TASKGRID_SERVICES_COMMON_TLS_H_
#define TASKGRID_SERVICES_COMMON_TLS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace grpc {
class AuthContext;
class ChannelCredentials;
class ServerCredentials;
}  // namespace grpc

namespace taskgrid {

// A server's TLS identity (the coordinator's gRPC, the gateway's HTTPS).
// Empty cert_file means plaintext.
struct ServerTlsOptions {
  // PEM certificate chain and private key; both or neither.
  std::string cert_file;
  std::string key_file;
  // PEM CA bundle: when set, clients are asked for a certificate and one that
  // is presented must chain to this CA (mutual TLS). Clients without one may
  // still connect; callers that need an identity check for it themselves.
  std::string client_ca_file;
  // How often the files are re-read.
  absl::Duration reload_interval = absl::Seconds(60);

  bool enabled() const { return !cert_file.empty(); }
  // kInvalidArgument naming the flag (`prefix` + "cert", "key",
  // "client_ca", "reload_interval") for a missing partner file, an unreadable
  // or non-PEM file, or a reload interval under a second.
  absl::Status Validate(absl::string_view prefix = "tls_") const;
};

// What a client trusts and presents. Empty ca_file means plaintext.
struct ChannelTlsOptions {
  // PEM CA bundle the server's certificate must chain to.
  std::string ca_file;
  // Client certificate chain and key for mutual TLS; both or neither.
  std::string cert_file;
  std::string key_file;
  // Name the server's certificate must carry instead of the target's host
  // (for addresses that are IPs not in the certificate).
  std::string server_name;
  // How often the files are re-read.
  absl::Duration reload_interval = absl::Seconds(60);

  bool enabled() const { return !ca_file.empty(); }
  // kInvalidArgument naming the flag (`prefix` + "ca", "cert", "key") for a
  // client certificate without CA, a missing partner file or an unreadable
  // or non-PEM file.
  absl::Status Validate(absl::string_view prefix = "tls_") const;
};

// kInvalidArgument "FLAG: cannot read PATH: REASON" unless `path` is a
// readable PEM file.
absl::Status CheckPemFile(absl::string_view flag, const std::string& path);

// Insecure credentials when !options.enabled(). Call Validate() first.
std::shared_ptr<grpc::ServerCredentials> GrpcServerCredentials(const ServerTlsOptions& options);
std::shared_ptr<grpc::ChannelCredentials> GrpcChannelCredentials(const ChannelTlsOptions& options);

// The names in a verified peer certificate: its common name, then its
// subject alternative names. Empty when the peer presented none.
std::vector<std::string> PeerCertificateNames(const grpc::AuthContext& context);

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_TLS_H_
