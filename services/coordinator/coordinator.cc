#include "services/coordinator/coordinator.h"

#include <google/protobuf/descriptor.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/common/status_util.h"
#include "services/coordinator/store/open_task_store.h"

namespace taskgrid {
namespace {

// The request type of each of our methods by path ("/taskgrid.v1.X/Y").
const absl::flat_hash_map<std::string, std::string>& RequestTypes() {
  static const auto* types = [] {
    auto* m = new absl::flat_hash_map<std::string, std::string>();
    for (const char* name :
         {"taskgrid.v1.TaskService", "taskgrid.v1.AgentService", "taskgrid.v1.MonitoringService"}) {
      const google::protobuf::ServiceDescriptor* service =
          google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(name);
      for (int i = 0; service != nullptr && i < service->method_count(); ++i) {
        (*m)[absl::StrCat("/", name, "/", service->method(i)->name())] =
            service->method(i)->input_type()->full_name();
      }
    }
    return m;
  }();
  return *types;
}

// Counts the unary calls the coordinator answers (requests, errors, time)
// for its own service health, and names what is wrong with a request that
// does not decode: gRPC answers it UNIMPLEMENTED, with no message, as if the
// method did not exist. Streams are left out: they last for hours, and an
// interceptor would touch every message they carry.
class RequestInterceptor final : public grpc::experimental::Interceptor {
 public:
  RequestInterceptor(TaskRegistry* registry, grpc::experimental::ServerRpcInfo* info)
      : registry_(registry), method_(info->method() != nullptr ? info->method() : "") {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using Hook = grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(Hook::POST_RECV_INITIAL_METADATA)) {
      start_ = absl::Now();
    }
    if (methods->QueryInterceptionHookPoint(Hook::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED && status.error_message().empty()) {
        if (auto it = RequestTypes().find(method_); it != RequestTypes().end()) {
          methods->ModifySendStatus(grpc::Status(
              grpc::StatusCode::INVALID_ARGUMENT,
              absl::StrCat("request: not a valid ", it->second, " message")));
        }
      }
      registry_->RecordRequest(!status.ok(), absl::Now() - start_);
    }
    methods->Proceed();
  }

 private:
  TaskRegistry* const registry_;
  const std::string method_;
  absl::Time start_ = absl::Now();
};

class RequestInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RequestInterceptorFactory(TaskRegistry* registry) : registry_(registry) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    if (info->type() != grpc::experimental::ServerRpcInfo::Type::UNARY) return nullptr;
    return new RequestInterceptor(registry_, info);
  }

 private:
  TaskRegistry* const registry_;
};

}  // namespace

absl::Status CoordinatorOptions::Validate() const {
  if (grpc_address.empty()) return absl::InvalidArgumentError("grpc_address: is required");
  if (tick_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("tick_interval: must not be negative");
  }
  TASKGRID_RETURN_IF_ERROR(registry.Validate());
  TASKGRID_ASSIGN_OR_RETURN(ApiKeys keys, ApiKeys::Load(api_keys, keys_file));
  TASKGRID_ASSIGN_OR_RETURN(AgentTokens tokens, AgentTokens::Load(agent_tokens, agent_tokens_file));
  TASKGRID_RETURN_IF_ERROR(tls.Validate());
  // Metrics carry no credentials either: the same guard as the gRPC address.
  for (const auto& [flag, address] : {std::pair<const char*, const std::string&>{"grpc_address", grpc_address},
                                      {"metrics_address", metrics_address}}) {
    if (!insecure && !address.empty() && !IsLoopbackAddress(address) &&
        (keys.empty() || tokens.empty())) {
      return absl::FailedPreconditionError(absl::StrCat(
          flag, " ", address,
          " is not loopback: configure --keys_file (or --api_keys) and --agent_tokens_file (or "
          "--agent_tokens), or pass --insecure"));
    }
  }
  return absl::OkStatus();
}

Coordinator::Coordinator(const CoordinatorOptions& options)
    : options_(options),
      prometheus_(std::make_shared<prometheus::Registry>()),
      metrics_set_(*prometheus_),
      events_(options.events) {}

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Start(
    const CoordinatorOptions& options, const Clock& clock, const std::function<bool()>& stopping) {
  TASKGRID_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<Coordinator> c(new Coordinator(options));
  // Metrics first: a standby reports that it is one.
  if (!options.metrics_address.empty()) {
    auto metrics = MetricsServer::Start(options.metrics_address, "coordinator", c->prometheus_);
    if (!metrics.ok()) return metrics.status();
    c->metrics_ = std::move(*metrics);
  }
  TASKGRID_ASSIGN_OR_RETURN(
      c->store_, OpenTaskStore(options.store, {c->metrics_set_.store(), options.lease_ttl}));
  TASKGRID_RETURN_IF_ERROR(
      c->store_->AwaitLeadership(stopping, [c = c.get()](const absl::Status& why) {
        c->metrics_set_.leader.Set(0);
        if (c->options_.on_leadership_lost) c->options_.on_leadership_lost(why);
      }));
  const TaskStore::LeaderInfo leader = c->store_->leader();
  c->metrics_set_.leader.Set(1);
  c->metrics_set_.term.Set(static_cast<double>(leader.term));
  if (leader.failover) c->metrics_set_.failovers.Increment();
  const absl::Time load_start = absl::Now();
  TASKGRID_ASSIGN_OR_RETURN(StoredState state, c->store_->Load());
  const absl::Time loaded = absl::Now();
  c->registry_ = std::make_unique<TaskRegistry>(clock, *c->store_, c->events_, &c->metrics_set_,
                                                options.registry);
  c->registry_->Recover(std::move(state));
  const absl::Time recovered = absl::Now();
  c->metrics_set_.recovery_seconds.Set(absl::ToDoubleSeconds(recovered - load_start));
  spdlog::info("store_loaded store={} load_seconds={:.3f} rebuild_seconds={:.3f}", options.store,
               absl::ToDoubleSeconds(loaded - load_start),
               absl::ToDoubleSeconds(recovered - loaded));
  if (leader.failover) {
    c->registry_->Audit({NewAuditEntry("coordinator", "coordinator.failover",
                                       absl::StrCat("term ", leader.term), "", absl::OkStatus())});
  }
  TASKGRID_ASSIGN_OR_RETURN(
      c->access_, AccessControl::Create(*c->registry_, clock, options.api_keys, options.keys_file));
  c->task_service_ = std::make_unique<TaskServiceImpl>(*c->registry_, c->events_, *c->access_);
  TASKGRID_ASSIGN_OR_RETURN(AgentTokens tokens,
                            AgentTokens::Load(options.agent_tokens, options.agent_tokens_file));
  if (const std::vector<std::string> unbound = tokens.Unbound(); !unbound.empty()) {
    spdlog::warn(
        "agent_tokens_unbound tokens={} (any holder may claim any agent id: bind each token to "
        "its agents in --agent_tokens_file)",
        absl::StrJoin(unbound, ","));
  }
  c->agent_service_ = std::make_unique<AgentServiceImpl>(*c->registry_, c->metrics_set_, std::move(tokens),
                                                         !options.tls.client_ca_file.empty());
  c->monitoring_service_ = std::make_unique<MonitoringServiceImpl>(
      *c->registry_, *c->access_,
      [agents = c->agent_service_.get()] { return agents->tokens_required(); });

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.grpc_address, GrpcServerCredentials(options.tls),
                           &c->grpc_port_);
  builder.RegisterService(c->task_service_.get());
  builder.RegisterService(c->agent_service_.get());
  builder.RegisterService(c->monitoring_service_.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<RequestInterceptorFactory>(c->registry_.get()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  // Agents keep one stream for days: detect dead peers within ~15 s.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  builder.SetMaxReceiveMessageSize(8 << 20);
  c->server_ = builder.BuildAndStart();
  if (c->server_ == nullptr || c->grpc_port_ == 0) {
    return absl::UnavailableError("grpc_address: cannot listen on " + options.grpc_address);
  }
  if (options.tick_interval > absl::ZeroDuration()) {
    Coordinator* self = c.get();
    c->ticker_ = std::thread([self] {
      while (!self->stop_.WaitForNotificationWithTimeout(self->options_.tick_interval)) {
        self->registry_->Tick();
      }
    });
  }
  spdlog::info("coordinator_started grpc_port={} metrics_port={} tls={} mtls={}", c->grpc_port_,
               c->metrics_port(), options.tls.enabled(), !options.tls.client_ca_file.empty());
  return c;
}

absl::Status Coordinator::ReloadKeys() {
  const absl::Status keys = access_->Reload();
  absl::StatusOr<AgentTokens> tokens =
      AgentTokens::Load(options_.agent_tokens, options_.agent_tokens_file);
  if (tokens.ok()) {
    const size_t count = tokens->size();
    agent_service_->ReplaceTokens(*std::move(tokens));
    registry_->Audit({NewAuditEntry("coordinator", "agent_tokens.reload",
                                    absl::StrCat(count, " agent tokens"), "", absl::OkStatus())});
  }
  return keys.ok() ? tokens.status() : keys;
}

void Coordinator::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  stop_.Notify();
  if (ticker_.joinable()) ticker_.join();
  if (server_ == nullptr) return;  // Start gave up (or a standby was stopped).
  // Open Watch and agent streams never end on their own: cancel them after
  // a short grace.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server_->Wait();
  spdlog::info("coordinator_stopped");
}

Coordinator::~Coordinator() { Shutdown(); }

}  // namespace taskgrid
