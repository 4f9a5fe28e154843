#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace stackproc::server {

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options) {
  auto server = std::unique_ptr<Server>(new Server);
  STACKPROC_ASSIGN_OR_RETURN(server->jobs_, JobManager::Create(options.jobs));
  if (!options.auth_token_file.empty()) {
    STACKPROC_ASSIGN_OR_RETURN(server->auth_, TokenAuth::Load(options.auth_token_file));
  }
  server->service_ = std::make_unique<StackProcessorService>(
      *server->jobs_, server->auth_ ? &*server->auth_ : nullptr);

  grpc::EnableDefaultHealthCheckService(true);
  if (options.reflection) grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &server->port_);
  builder.RegisterService(server->service_.get());
  server->grpc_ = builder.BuildAndStart();
  if (server->grpc_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  server->grpc_->GetHealthCheckService()->SetServingStatus(true);
  return server;
}

Server::~Server() { Shutdown(absl::ZeroDuration()); }

void Server::Shutdown(absl::Duration grace) {
  std::call_once(shutdown_once_, [&] {
    grpc_->GetHealthCheckService()->SetServingStatus(false);
    jobs_->Shutdown(grace);  // refuses new jobs at once; returns when none runs
    grpc_->Shutdown(std::chrono::system_clock::now());  // cancels open streams
  });
}

void Server::Wait() { grpc_->Wait(); }

}  // namespace stackproc::server
