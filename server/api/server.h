// stackprocd as a library: an Options struct, Start, port, Shutdown, Wait.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/api/auth.h"
#include "server/api/metrics.h"
#include "server/api/service.h"
#include "server/api/web.h"
#include "server/jobs/job_manager.h"

namespace stackproc::server {

struct ServerOptions {
  std::string listen = "127.0.0.1:50051";  // port 0 picks a free port
  // Whether listening beyond loopback without tokens or client certificates was asked for (the
  // flags refuse it otherwise).
  bool allow_unauthenticated = false;
  JobManagerOptions jobs;
  bool reflection = false;
  // TokenAuth's file (server/api/auth.h); empty: no tokens.
  std::string auth_token_file;
  // TLS: PEM files of the server's certificate and key; empty: plaintext. With a client CA it
  // is mutual TLS: clients without a certificate that CA signed are refused, and (without a
  // token file) a caller is the common name of its certificate, an admin when listed in
  // `admins`.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  std::vector<std::string> admins;
  // Prometheus metrics (server/api/metrics.h) on HOST:PORT (port 0 picks one); empty: none.
  std::string metrics_listen;
  // The web page (server/api/web.h) on HOST:PORT (port 0 picks one); empty: none. It knows its
  // callers by token only: with client certificates and no token file it is refused.
  std::string http_listen;
  absl::Duration shutdown_grace = absl::Seconds(30);
};

class Server {
 public:
  // Starts serving; the health service reports SERVING.
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options);
  ~Server();

  int port() const { return port_; }
  int metrics_port() const { return metrics_ ? metrics_->port() : 0; }
  int http_port() const { return web_ ? web_->port() : 0; }
  JobManager& jobs() { return *jobs_; }

  // Health goes NOT_SERVING and new jobs are refused; queued jobs end INTERRUPTED, running jobs
  // get `grace` to finish and are then INTERRUPTED too (an unfinished output never appears under
  // its final name); streams are cancelled and the server stops. Idempotent.
  void Shutdown(absl::Duration grace);
  // Blocks until the server has shut down.
  void Wait();

 private:
  Server() = default;
  std::unique_ptr<Metrics> metrics_;  // before jobs_: the job manager reports to it
  std::unique_ptr<JobManager> jobs_;
  std::optional<TokenAuth> auth_;
  std::unique_ptr<StackProcessorService> service_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<WebServer> web_;
  int port_ = 0;
  std::once_flag shutdown_once_;
};

}  // namespace stackproc::server
