#include "services/common/tls.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace taskgrid {
namespace {

// Both or neither of a certificate and its key.
absl::Status CheckPair(absl::string_view prefix, const std::string& cert, const std::string& key) {
  if (!cert.empty() && key.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "key: is required with --", prefix, "cert"));
  }
  if (cert.empty() && !key.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "cert: is required with --", prefix, "key"));
  }
  return absl::OkStatus();
}

unsigned RefreshSeconds(absl::Duration d) {
  return static_cast<unsigned>(std::max<int64_t>(1, absl::ToInt64Seconds(d)));
}

}  // namespace

absl::Status CheckPemFile(absl::string_view flag, const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read ", path, ": ", std::strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (!absl::StrContains(text.str(), "-----BEGIN ")) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " is not a PEM file"));
  }
  return absl::OkStatus();
}

absl::Status ServerTlsOptions::Validate(absl::string_view prefix) const {
  if (absl::Status s = CheckPair(prefix, cert_file, key_file); !s.ok()) return s;
  if (!client_ca_file.empty() && cert_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "client_ca: needs --", prefix, "cert and --", prefix, "key"));
  }
  if (!enabled()) return absl::OkStatus();
  if (reload_interval < absl::Seconds(1)) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "reload_interval: at least 1s"));
  }
  for (const auto& [name, path] : {std::pair<const char*, const std::string&>{"cert", cert_file},
                                   {"key", key_file},
                                   {"client_ca", client_ca_file}}) {
    if (path.empty()) continue;
    if (absl::Status s = CheckPemFile(absl::StrCat(prefix, name), path); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ChannelTlsOptions::Validate(absl::string_view prefix) const {
  if (absl::Status s = CheckPair(prefix, cert_file, key_file); !s.ok()) return s;
  if (!enabled()) {
    if (!cert_file.empty() || !server_name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(prefix, "ca: is required for a TLS connection to the coordinator"));
    }
    return absl::OkStatus();
  }
  if (reload_interval < absl::Seconds(1)) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "reload_interval: at least 1s"));
  }
  for (const auto& [name, path] : {std::pair<const char*, const std::string&>{"ca", ca_file},
                                   {"cert", cert_file},
                                   {"key", key_file}}) {
    if (path.empty()) continue;
    if (absl::Status s = CheckPemFile(absl::StrCat(prefix, name), path); !s.ok()) return s;
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::ServerCredentials> GrpcServerCredentials(const ServerTlsOptions& options) {
  if (!options.enabled()) return grpc::InsecureServerCredentials();
  using grpc::experimental::FileWatcherCertificateProvider;
  auto provider = std::make_shared<FileWatcherCertificateProvider>(
      options.key_file, options.cert_file, options.client_ca_file,
      RefreshSeconds(options.reload_interval));
  grpc::experimental::TlsServerCredentialsOptions tls(provider);
  tls.watch_identity_key_cert_pairs();
  if (!options.client_ca_file.empty()) {
    tls.watch_root_certs();
    // Request, and verify when presented, but do not require: clients of the
    // task API authenticate with keys; the agent stream insists on a
    // certificate itself.
    tls.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(tls);
}

std::shared_ptr<grpc::ChannelCredentials> GrpcChannelCredentials(const ChannelTlsOptions& options) {
  if (!options.enabled()) return grpc::InsecureChannelCredentials();
  using grpc::experimental::FileWatcherCertificateProvider;
  auto provider = std::make_shared<FileWatcherCertificateProvider>(
      options.key_file, options.cert_file, options.ca_file,
      RefreshSeconds(options.reload_interval));
  grpc::experimental::TlsChannelCredentialsOptions tls;
  tls.set_certificate_provider(provider);
  tls.watch_root_certs();
  if (!options.cert_file.empty()) tls.watch_identity_key_cert_pairs();
  tls.set_verify_server_certs(true);
  tls.set_certificate_verifier(std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
  return grpc::experimental::TlsCredentials(tls);
}

std::vector<std::string> PeerCertificateNames(const grpc::AuthContext& context) {
  std::vector<std::string> names;
  for (const char* property : {"x509_common_name", "x509_subject_alternative_name"}) {
    for (const grpc::string_ref& v : context.FindPropertyValues(property)) {
      std::string name(v.data(), v.size());
      // The common name is usually repeated as a SAN.
      if (std::find(names.begin(), names.end(), name) == names.end()) {
        names.push_back(std::move(name));
      }
    }
  }
  return names;
}

}  // namespace taskgrid
