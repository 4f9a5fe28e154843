#include "server/api/server.h"

#include <dlfcn.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/tools/cli_args.h"
#include "proto/wire.h"
#include "server/api/listen_address.h"

namespace stackproc::server {
namespace {

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const ServerOptions& options) {
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (options.tls_cert.empty()) {
    if (!options.tls_client_ca.empty()) {
      return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key");
    }
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions ssl(
      options.tls_client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                    : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  STACKPROC_ASSIGN_OR_RETURN(pair.private_key, core::ReadPemFile(options.tls_key, "tls-key"));
  STACKPROC_ASSIGN_OR_RETURN(pair.cert_chain, core::ReadPemFile(options.tls_cert, "tls-cert"));
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (!options.tls_client_ca.empty()) {
    STACKPROC_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                               core::ReadPemFile(options.tls_client_ca, "tls-client-ca"));
  }
  return grpc::SslServerCredentials(ssl);
}

// gRPC's reflection library adds itself to every server it is linked into (a static
// initializer): stackprocd does not link it, and loads it only when --reflection asks. It
// answers without asking for a token (it is gRPC's, not ours), so with tokens it is refused;
// under mutual TLS the handshake has already checked its callers.
absl::Status LoadReflection(const ServerOptions& options) {
  if (!options.auth_token_file.empty()) {
    return absl::InvalidArgumentError(
        "--reflection cannot check tokens (gRPC's reflection service answers every caller): "
        "leave it off with --auth-token-file, or use client certificates (--tls-client-ca)");
  }
  if (::dlopen(STACKPROC_REFLECTION_LIBRARY, RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("--reflection: cannot load gRPC's reflection library: ", ::dlerror()));
  }
  return absl::OkStatus();
}

// What the options ask for that cannot be served, before anything starts.
absl::Status CheckOptions(const ServerOptions& options) {
  // --admins names certificate callers: without client certificates it would be ignored (and
  // with tokens too, whose file marks its admins), leaving whoever set it believing otherwise.
  if (!options.admins.empty() &&
      (options.tls_client_ca.empty() || !options.auth_token_file.empty())) {
    return absl::InvalidArgumentError(
        options.tls_client_ca.empty()
            ? "--admins names client certificates (common names): it needs --tls-client-ca"
            : "--admins is for certificate callers; with --auth-token-file, mark admins in the "
              "token file (NAME TOKEN admin)");
  }
  // Every address checked before anything starts.
  if (!absl::StartsWith(options.listen, "unix:")) {
    STACKPROC_RETURN_IF_ERROR(ParseHostPort("listen", options.listen).status());
  }
  if (!options.http_listen.empty()) {
    STACKPROC_RETURN_IF_ERROR(ParseHostPort("http-listen", options.http_listen).status());
  }
  if (!options.metrics_listen.empty()) {
    STACKPROC_RETURN_IF_ERROR(ParseHostPort("metrics-listen", options.metrics_listen).status());
  }
  if (!options.http_listen.empty() && !options.tls_client_ca.empty() &&
      options.auth_token_file.empty()) {
    return absl::InvalidArgumentError(
        "--http-listen: the web page knows its callers by token, and this server by client "
        "certificate only: give --auth-token-file too");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options) {
  STACKPROC_RETURN_IF_ERROR(CheckOptions(options));
  auto server = std::unique_ptr<Server>(new Server);
  JobManagerOptions jobs = options.jobs;
  if (!options.metrics_listen.empty()) {
    server->metrics_ = std::make_unique<Metrics>();
    jobs.metrics = server->metrics_.get();
  }
  STACKPROC_ASSIGN_OR_RETURN(server->jobs_, JobManager::Create(jobs));
  if (server->metrics_) {
    JobManager* manager = server->jobs_.get();
    STACKPROC_RETURN_IF_ERROR(
        server->metrics_->Serve(options.metrics_listen, [manager] { return manager->Counts(); }));
  }
  Access access;
  if (!options.auth_token_file.empty()) {
    STACKPROC_ASSIGN_OR_RETURN(server->auth_, TokenAuth::Load(options.auth_token_file));
    access.tokens = &*server->auth_;
  }
  access.certificates = !options.tls_client_ca.empty();
  access.admins = {options.admins.begin(), options.admins.end()};
  STACKPROC_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                             Credentials(options));
  server->service_ = std::make_unique<StackProcessorService>(*server->jobs_, std::move(access));

  grpc::EnableDefaultHealthCheckService(true);
  if (options.reflection) STACKPROC_RETURN_IF_ERROR(LoadReflection(options));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, credentials, &server->port_);
  // gRPC sets SO_REUSEPORT by default: a second server on a taken port would start, and the
  // kernel would share the port's callers between the two.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(wire::kMaxMessageBytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, wire::kKeepaliveMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, wire::kKeepaliveTimeoutMs);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             wire::kMinPingIntervalMs);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  builder.RegisterService(server->service_.get());
  if (server->metrics_) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> counters;
    counters.push_back(server->metrics_->CallCounter());
    builder.experimental().SetInterceptorCreators(std::move(counters));
  }
  server->grpc_ = builder.BuildAndStart();
  // A unix socket has no port: gRPC reports none for it.
  const bool unix_socket = absl::StartsWith(options.listen, "unix:");
  if (server->grpc_ == nullptr || (server->port_ == 0 && !unix_socket)) {
    return unix_socket ? absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen))
                       : ListenFailed("listen", options.listen);
  }
  if (!options.http_listen.empty()) {
    WebOptions web{options.http_listen, server->auth_ ? &*server->auth_ : nullptr, options.tls_cert,
                   options.tls_key};
    STACKPROC_ASSIGN_OR_RETURN(server->web_, WebServer::Start(web, *server->jobs_));
  }
  // Probes ask for the server ("") or, as Kubernetes' and Envoy's may, for the service by name.
  server->grpc_->GetHealthCheckService()->SetServingStatus(true);
  server->grpc_->GetHealthCheckService()->SetServingStatus(
      std::string(v1::StackProcessor::service_full_name()), true);
  return server;
}

Server::~Server() { Shutdown(absl::ZeroDuration()); }

void Server::Shutdown(absl::Duration grace) {
  // A server that failed to start has some of its parts only.
  std::call_once(shutdown_once_, [&] {
    if (grpc_) grpc_->GetHealthCheckService()->SetServingStatus(false);
    // Streamed jobs waiting for a resume wait no more: none can come once the server has gone.
    if (service_) service_->EndWaitingStreams();
    if (jobs_) jobs_->Shutdown(grace);  // refuses new jobs at once; returns when none runs
    if (grpc_) grpc_->Shutdown(std::chrono::system_clock::now());  // cancels open streams
    if (service_) service_->EndWaitingStreams();                   // what their ends left waiting
    web_.reset();
  });
}

void Server::Wait() { grpc_->Wait(); }

}  // namespace stackproc::server
