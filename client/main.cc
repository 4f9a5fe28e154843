// stackproc: the command-line client of stackprocd.
#include <grpc/grpc.h>
#include <pthread.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/commands.h"
#include "core/io/formats.h"
#include "proto/wire.h"

namespace {

constexpr char kUsage[] = R"(usage: stackproc [--server HOST:PORT] [--token TOKEN]
                 [--tls-ca CA.pem [--client-cert CERT.pem --client-key KEY.pem]] COMMAND [args]
  Each also comes from the environment: STACKPROC_SERVER (default 127.0.0.1:50051, where
  stackprocd listens by default), STACKPROC_TOKEN (for a server with --auth-token-file; better
  than --token, which ps shows),
  STACKPROC_TLS_CA (the CA of a TLS server's certificate), STACKPROC_CLIENT_CERT and
  STACKPROC_CLIENT_KEY (the client's own, for a server that wants mutual TLS).
commands:
  ops                                   operations and their parameters
  submit --input PATH --op SPEC [--op SPEC ...] (--output PATH | --in-memory [--retention S])
         [--compression C] [--chunks DxHxW] [--pyramid N] [--overwrite] [--request-id ID]
         [--shards N] [--channels 0+2] [--wait]
                                        queue a job (paths relative to the server's data root);
                                        --shards: z-ranges on a server's SLURM cluster (0: the
                                        server decides, 1: run on the server); --channels: only
                                        these channels (from 0), in this order
  process INPUT -o OUTPUT --op SPEC [--op SPEC ...] [--compression C] [--chunks DxHxW]
         [--pyramid N] [--channels 0+2] [--wire-compression auto|none|lz4|zstd] [--overwrite]
                                        stream a local stack through the server and write the
                                        result locally as it comes back; --channels: only
                                        these channels are sent, in this order;
                                        --wire-compression: the pixels compressed both ways
                                        (auto: lz4 unless the server is on this machine; zstd
                                        for links of 100 Mbit/s and less)
  process --resume JOB                  take up a streamed job to a TIFF output whose process
                                        ended (SIGKILL, a crash, its terminal closed) while the
                                        server keeps the job (stackprocd --stream-grace)
  watch JOB                             follow a job to its end
  status JOB                            one job in detail
  list                                  all jobs
  cancel JOB                            stop a queued or running job
  resume JOB [JOB ...] [--wait]         run interrupted jobs again (the server stopped
                                        while they were running)
  delete JOB                            forget a finished job and free its result
  download JOB -o LOCAL [--compression C] [--chunks DxHxW] [--pyramid N] [--overwrite]
                                        save an in-memory result locally
  (OME-Zarr outputs are NGFF 0.5 on Zarr v3, their chunks packed in shards: --zarr-shards
   DxHxW, default 16 slices by the plane up to 2048x2048; --zarr-format 2 writes NGFF 0.4.
   Every command with --chunks takes both.)
  health                                SERVING or NOT_SERVING
  info                                  the server's version, limits, message sizes, formats
  preview INPUT --op SPEC [--op SPEC ...] -o OUT.png [-z Z,Z,... | --slices K] [--roi X,Y,W,H]
         [--format png|raw] [--max-side N] [--overwrite] [--channels 0+2]
                                        the pipeline on a few slices of a stack under the data
                                        root (K evenly spaced, default 3), read alone: before |
                                        after, labelled; --op clahe:clip=1,2,4 shows one column
                                        per value; 16-bit and float stretched for the eye
SPEC is name:key=value,... e.g. gaussian:ksize=5 or resize:scale=0.5,interp=area. With no
--op a job is a conversion: to the output's format and codec (and its type, with convert).
)";

// What a person can do when no server answered: gRPC's own words ("failed to connect to all
// addresses ... Socket closed") say neither whether a server runs nor what to change.
std::string ConnectionHint(const absl::Status& status, const std::string& target, bool tls) {
  if (status.code() != absl::StatusCode::kUnavailable) return "";
  const absl::string_view message = status.message();
  if (absl::StrContains(message, "resumes of job")) {
    return absl::StrCat("\n  the connection to ", target,
                        " broke and could not be made again while the server kept the job "
                        "(its --stream-grace): the job is cancelled there; send it again");
  }
  if (absl::StrContains(message, "timed out") || absl::StrContains(message, "keepalive")) {
    return absl::StrCat(
        "\n  the connection to ", target, " went silent (no answer to keepalive pings for ",
        stackproc::wire::kKeepaliveTimeoutMs / 1000, " s): the link or the server went away");
  }
  if (absl::StrContains(message, "Connection refused")) {
    return absl::StrCat("\n  no stackprocd answers at ", target,
                        ": start one (stackprocd --data-root DIR), or point --server or "
                        "STACKPROC_SERVER at yours");
  }
  if (!tls && absl::StrContains(message, "Socket closed")) {
    return absl::StrCat("\n  ", target,
                        " closed the connection: a server with TLS (--tls-cert) wants --tls-ca "
                        "CA.pem (or STACKPROC_TLS_CA), the CA of its certificate");
  }
  if (tls && (absl::StrContains(message, "handshake") || absl::StrContains(message, "SSL") ||
              absl::StrContains(message, "Socket closed"))) {
    return absl::StrCat("\n  the TLS handshake with ", target,
                        " failed: a server without TLS wants no --tls-ca; else check that the "
                        "CA signed its certificate and that the certificate names ",
                        target);
  }
  return "";
}

// What became of the job a command was following when Ctrl-C (or SIGTERM) stopped it.
std::string AfterInterrupt(const std::string& command, const stackproc::core::CliArgs& args) {
  if (command == "process") return ": the job was cancelled and nothing was written";
  if (command != "watch" && command != "submit" && command != "resume") return "";
  const std::string job = command == "watch" && !args.positional.empty() ? args.positional.front()
                                                                         : "JOB (its id above)";
  return absl::StrCat(": the job goes on on the server; stackproc watch ", job,
                      " follows it again, stackproc cancel ", job, " stops it");
}

// gRPC shuts down when its last user goes (the client's channel), and its shutdown waits up to
// 10 s for its sockets to be torn down, which over a real link it sometimes waits whole (a
// 134 MB job over a 1 Gbit/s namespace link: 1 run in 3 took 11.1 s instead of 1.2, the 9.9 s
// after the job was done). So the program holds gRPC open itself and leaves without its
// shutdown, once everything the command makes is made (outputs synced and renamed, results
// printed). Sanitizer builds shut down as usual: LeakSanitizer checks at exit.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kLeaveWithoutShutdown = false;
#else
constexpr bool kLeaveWithoutShutdown = true;
#endif

int Main(int argc, char** argv) {
  stackproc::core::KeepMessageBuffersInTheHeap();
  using stackproc::core::CliArgs;
  absl::StatusOr<CliArgs> args = CliArgs::Parse(argc, argv, 1, stackproc::client::Switches());
  const std::string first = args.ok() && !args->positional.empty() ? args->positional[0] : "";
  const bool asked = args.ok() && (args->Has("help") || first == "help");
  if (asked && stackproc::client::IsCommand(first)) {  // one command's usage: stackproc CMD -h
    std::string usage = stackproc::core::CommandUsage(kUsage, "", first);  // "usage: CMD ..."
    if (usage.rfind("usage: ", 0) == 0) usage.insert(7, "stackproc ");
    std::fputs(usage.c_str(), stdout);
    if (first == "submit" || first == "process" || first == "download") {
      std::fputs(std::string(stackproc::core::FormatsHelp()).c_str(), stdout);
    }
    return 0;
  }
  if (!args.ok() || asked || !stackproc::client::IsCommand(first)) {
    // Asked for: on stdout, success; else a usage error (an unknown command named first).
    if (args.ok() && !asked && !first.empty()) {
      std::fprintf(stderr, "stackproc: unknown command '%s'\n", args->positional.front().c_str());
    }
    std::fputs(kUsage, asked ? stdout : stderr);
    std::fputs(std::string(stackproc::core::FormatsHelp()).c_str(), asked ? stdout : stderr);
    return asked ? 0 : 2;
  }
  const std::string command = args->positional.front();
  args->positional.erase(args->positional.begin());
  if (absl::Status flags = stackproc::client::CheckFlags(command, *args); !flags.ok()) {
    std::fprintf(stderr, "stackproc: %s\n", std::string(flags.message()).c_str());
    return 2;
  }
  // SIGINT and SIGTERM are taken by a thread of their own (blocked here, before any thread
  // starts), which ends the client's calls: a streamed job is cancelled and its local output
  // removed, a watch stops (the job goes on), and the program exits 128 + the signal.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  if (kLeaveWithoutShutdown) grpc_init();  // never shut down: main leaves without it
  stackproc::client::ClientOptions options;
  options.token = args->Get("token", "", "STACKPROC_TOKEN");
  options.tls_ca = args->Get("tls-ca", "", "STACKPROC_TLS_CA");
  // Not STACKPROC_TLS_CERT/KEY: those are the server's own certificate, set beside the CLI in
  // the server's container.
  options.tls_cert = args->Get("client-cert", "", "STACKPROC_CLIENT_CERT");
  options.tls_key = args->Get("client-key", "", "STACKPROC_CLIENT_KEY");
  const std::string target = args->Get("server", "127.0.0.1:50051", "STACKPROC_SERVER");
  absl::StatusOr<std::unique_ptr<stackproc::client::Client>> client =
      stackproc::client::Client::Create(target, options);
  if (!client.ok()) {
    std::fprintf(stderr, "stackproc: %s\n", std::string(client.status().message()).c_str());
    return 2;
  }
  // The signal thread may reach the client until the program ends: where the program leaves
  // without gRPC's shutdown (main) it is never destroyed; sanitizer builds destroy it as Main
  // returns, shutting gRPC down for LeakSanitizer.
  std::unique_ptr<stackproc::client::Client> owned = *std::move(client);
  stackproc::client::Client* const kept = owned.get();
  if (kLeaveWithoutShutdown) (void)owned.release();
  static std::atomic<int> interrupted{0};
  std::thread([signals, c = kept] {
    int signal = 0;
    if (sigwait(&signals, &signal) != 0) return;
    interrupted = signal;
    c->CancelCalls();
  }).detach();
  absl::StatusOr<int> code = stackproc::client::RunCommand(command, *args, *kept);
  if (interrupted != 0) {
    std::fprintf(stderr, "stackproc %s: interrupted%s\n", command.c_str(),
                 AfterInterrupt(command, *args).c_str());
    return 128 + interrupted;
  }
  if (!code.ok()) {
    std::fprintf(stderr, "stackproc %s: %s%s\n", command.c_str(),
                 std::string(code.status().message()).c_str(),
                 ConnectionHint(code.status(), target, !options.tls_ca.empty()).c_str());
    return 1;
  }
  return *code;
}

}  // namespace

int main(int argc, char** argv) {
  const int code = Main(argc, argv);
  if (!kLeaveWithoutShutdown) return code;
  std::fflush(nullptr);
  std::_Exit(code);
}
