#include "services/common/coordinator_channel.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace taskgrid {

std::string CoordinatorTarget(const std::string& addresses) {
  if (!absl::StrContains(addresses, ',')) return addresses;
  std::vector<std::string> list = absl::StrSplit(addresses, ',', absl::SkipWhitespace());
  const bool v6 = absl::StartsWith(list.front(), "[");
  for (std::string& a : list) a = std::string(absl::StripAsciiWhitespace(a));
  return absl::StrCat(v6 ? "ipv6:" : "ipv4:", absl::StrJoin(list, ","));
}

std::shared_ptr<grpc::Channel> CoordinatorChannel(const std::string& addresses,
                                                  const ChannelTlsOptions& tls) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetMaxReceiveMessageSize(8 << 20);
  if (tls.enabled()) {
    std::string name = tls.server_name;
    // A list target has no single authority: expect the first host's name.
    if (name.empty() && absl::StrContains(addresses, ',')) {
      const std::string first(absl::StripAsciiWhitespace(addresses.substr(0, addresses.find(','))));
      name = first.substr(0, first.rfind(':'));
      if (absl::StartsWith(name, "[")) name = name.substr(1, name.size() - 2);
    }
    if (!name.empty()) args.SetSslTargetNameOverride(name);
  }
  return grpc::CreateCustomChannel(CoordinatorTarget(addresses), GrpcChannelCredentials(tls), args);
}

}  // namespace taskgrid
