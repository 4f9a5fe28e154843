// stackprocd: the stackproc gRPC server. Its flags: flags.h.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/base/status_macros.h"
#include "core/tools/cli_args.h"
#include "server/api/server.h"
#include "server/flags.h"

namespace stackproc::server {
namespace {

// Where the server listens, how it is reached, and what an open address exposes (stdout, then
// warnings on stderr).
void Announce(const ServerOptions& options, Server& server) {
  const bool unix_socket = options.listen.rfind("unix:", 0) == 0;
  const std::string where =
      unix_socket
          ? options.listen
          : absl::StrCat(options.listen.substr(0, options.listen.rfind(':')), ":", server.port());
  const char* access = !options.auth_token_file.empty() ? "tokens"
                       : !options.tls_client_ca.empty() ? "certificates"
                                                        : "open";
  std::printf(
      "stackprocd listening on %s data-root=%s memory-budget=%.2fGiB tls=%s access=%s "
      "executor=%s\n",
      where.c_str(), options.jobs.data_root.c_str(),
      static_cast<double>(server.jobs().memory_budget()) / (uint64_t{1} << 30),
      options.tls_cert.empty() ? "off" : "on", access, ExecutorName(options.jobs.executor).c_str());
  if (server.metrics_port() != 0) {
    std::printf("stackprocd metrics on http://%s:%d/metrics\n",
                options.metrics_listen.substr(0, options.metrics_listen.rfind(':')).c_str(),
                server.metrics_port());
  }
  if (server.http_port() != 0) {
    std::printf("stackprocd web page on %s://%s:%d/\n", options.tls_cert.empty() ? "http" : "https",
                options.http_listen.substr(0, options.http_listen.rfind(':')).c_str(),
                server.http_port());
  }
  std::fflush(stdout);
  if (!IsLoopback(options.listen)) {
    if (options.auth_token_file.empty() && options.tls_client_ca.empty()) {
      std::fprintf(stderr,
                   "stackprocd: warning: listening on %s without --auth-token-file or "
                   "--tls-client-ca: anyone who can reach this port can run jobs on files "
                   "under %s and read their results\n",
                   options.listen.c_str(), options.jobs.data_root.c_str());
    } else if (options.tls_cert.empty()) {
      std::fprintf(stderr,
                   "stackprocd: warning: listening on %s without TLS: tokens and pixels "
                   "cross the network in the clear (--tls-cert, --tls-key)\n",
                   options.listen.c_str());
    }
  }
}

int Main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::fputs(ServerUsage().c_str(), stdout);
      return 0;
    }
  }
  core::KeepMessageBuffersInTheHeap();
  absl::StatusOr<ServerOptions> options = ParseServerFlags(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "stackprocd: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  // Signals are taken by a waiting thread, not a handler: block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (!options->auth_token_file.empty()) {
    if (std::string warning = TokenAuth::ExposureWarning(options->auth_token_file);
        !warning.empty()) {
      std::fprintf(stderr, "stackprocd: warning: %s\n", warning.c_str());
    }
  }
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(*options);
  if (!server.ok()) {
    std::fprintf(stderr, "stackprocd: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  Announce(*options, **server);

  std::thread signal_waiter([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    std::fprintf(stderr, "stackprocd: signal %d, shutting down (grace %llds)\n", signal,
                 static_cast<long long>(absl::ToInt64Seconds(options->shutdown_grace)));
    (*server)->Shutdown(options->shutdown_grace);
  });
  (*server)->Wait();
  signal_waiter.join();
  return 0;
}

}  // namespace
}  // namespace stackproc::server

int main(int argc, char** argv) { return stackproc::server::Main(argc, argv); }
