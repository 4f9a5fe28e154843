// stackprocd: the stackproc gRPC server. Every flag can also be set by the environment
// variable named after it (--data-root <-> STACKPROC_DATA_ROOT).
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

namespace stackproc::server {
namespace {

constexpr char kUsage[] = R"(usage: stackprocd [flags]
  --listen HOST:PORT        address to serve on; port 0 picks a free one (default
                            127.0.0.1:50051: this machine only); or unix:PATH, a socket for
                            clients on this machine (who may connect is who may open PATH).
                            Beyond loopback the server needs --auth-token-file or
                            --tls-client-ca, or --allow-unauthenticated
  --allow-unauthenticated   serve beyond loopback without tokens or client certificates:
                            anyone who reaches the port runs jobs on the data root (a trusted
                            network only)
  --data-root DIR           directory every job path is resolved beneath (required)
  --threads N               worker threads for processing (default: all cores)
  --max-running-jobs N      jobs processed at once (default 1)
  --memory-budget SIZE      memory for running jobs and held results, e.g. 8G, 512M
                            (default: 3/4 of physical memory, or of the container's
                            memory limit when a cgroup sets one)
  --result-ttl SECONDS      how long in-memory results are kept (default 3600)
  --job-history N           ended jobs kept listed; the oldest beyond N are forgotten, with
                            their in-memory results (default 10000)
  --stream-window SIZE      most memory for the slices in flight of one streaming job (the
                            window; at least one slice, fewer when 2 slices per thread keep the
                            threads busy); each thread's slices between the pipeline's steps
                            come on top (default 256M)
  --max-jobs-per-caller N   jobs one caller may have queued or running (default 32)
  --max-streams N           streamed jobs open at once (default 16)
  --max-stack-bytes SIZE    largest stack a job may read or stream (default 1T)
  --max-slices N            most slices in a stack (default 100000)
  --max-side N              most pixels along X or Y (default 131072)
  --shutdown-grace SECONDS  on SIGTERM/SIGINT, time running jobs get to finish (default 30)
  --state-dir DIR           keep the job table in DIR/jobs.sqlite3, so that jobs are listed
                            across restarts: queued jobs queue again, running ones a stop cut
                            short are INTERRUPTED and can be resumed (default: none, jobs
                            live in memory)
  --auth-token-file FILE    callers and their tokens, one "NAME TOKEN [admin]" per line: every
                            call but health needs "authorization: Bearer TOKEN", and a caller
                            sees only its own jobs unless it is an admin (default: none)
  --tls-cert FILE           serve TLS with this PEM certificate (chain) ...
  --tls-key FILE            ... and its PEM private key (default: plaintext)
  --tls-client-ca FILE      mutual TLS: clients need a certificate this CA signed; without a
                            token file a caller is its certificate's common name
  --admins NAME,NAME        certificate common names that see every job (needs
                            --tls-client-ca; with a token file, mark admins there)
  --metrics-listen HOST:PORT  serve Prometheus metrics at http://HOST:PORT/metrics (default: off)
  --http-listen HOST:PORT   serve a web page of the jobs (progress, cancel, previews of
                            outputs) and its JSON at http://HOST:PORT/ (default: off; HTTPS
                            with --tls-cert). Loopback by default as --listen is; beyond it,
                            tokens (the page asks for one) or --allow-unauthenticated
  --reflection              enable gRPC server reflection (not with --auth-token-file: it
                            answers every caller; with client certificates it is fine)
  --executor local|slurm    where path jobs run: local, on this server's threads (default);
                            slurm, large per-slice jobs with a TIFF output as z-range shards of
                            a SLURM job array, put together here (needs --state-dir; the data
                            root must be at the same path on the compute nodes)
  --slurm-partition NAME    sbatch --partition (default: the cluster's)
  --slurm-account NAME      sbatch --account (default: the user's)
  --slurm-max-parallel P    shards of one job running at once (--array=...%P; default: no cap)
  --slurm-cpus-per-shard N  sbatch --cpus-per-task; the shard uses that many threads
  --slurm-mem-per-shard SIZE  sbatch --mem, e.g. 4G
  --slurm-extra "ARGS"      more sbatch arguments, split at spaces (e.g. "--time=2:00:00 --qos=x")
  --slurm-poll SECONDS      how often squeue is asked about a job's shards (default 10; the
                            controller is shared: keep it at 10 or more on a real cluster)
  --slurm-shard-size SIZE   input per shard when a job leaves the count to the server ...
  --slurm-shard-seconds S   ... or at least one shard per S seconds of work on a shard's CPUs
                            (the pipeline timed on one slice at submission); a job that gets
                            fewer than 2 shards runs here (defaults 1G, 300)
  --slurm-retries N         a failed shard is submitted again, alone, N times (default 2)
  --slurm-worker PATH       the stackproc-local the shards run, as the nodes see it (default:
                            the one beside stackprocd)
Each flag FOO-BAR can be set by the environment variable STACKPROC_FOO_BAR.
)";

// Whether only this machine can reach `host` (a unix socket: whoever may open its file).
bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "[::1]" || host.rfind("127.", 0) == 0 ||
         host.rfind("unix:", 0) == 0;
}

std::string EnvName(const std::string& flag) {
  std::string env = "STACKPROC_";
  for (char c : flag) env += c == '-' ? '_' : static_cast<char>(std::toupper(c));
  return env;
}

absl::StatusOr<uint64_t> ParseSize(const std::string& flag, const std::string& text) {
  uint64_t multiplier = 1;
  std::string number = text;
  if (!number.empty()) {
    switch (std::toupper(number.back())) {
      case 'K':
        multiplier = uint64_t{1} << 10;
        break;
      case 'M':
        multiplier = uint64_t{1} << 20;
        break;
      case 'G':
        multiplier = uint64_t{1} << 30;
        break;
      case 'T':
        multiplier = uint64_t{1} << 40;
        break;
      default:
        break;
    }
    if (multiplier != 1) number.pop_back();
  }
  double value = 0;
  if (!absl::SimpleAtod(number, &value) || value < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, "=", text, " is not a size like 8G, 512M or 1073741824"));
  }
  return static_cast<uint64_t>(value * static_cast<double>(multiplier));
}

absl::StatusOr<ServerOptions> ParseOptions(int argc, char** argv) {
  STACKPROC_ASSIGN_OR_RETURN(
      core::CliArgs args,
      core::CliArgs::Parse(argc, argv, 1, {"reflection", "allow-unauthenticated", "help"}));
  if (args.Has("help") || !args.positional.empty()) {
    return absl::InvalidArgumentError(kUsage);
  }
  STACKPROC_RETURN_IF_ERROR(args.CheckKnown(core::FlagsInUsage(kUsage), "stackprocd"));
  auto get = [&](const std::string& flag, const std::string& fallback) {
    std::string env = EnvName(flag);
    return args.Get(flag, fallback, env.c_str());
  };
  auto get_int = [&](const std::string& flag, int fallback) -> absl::StatusOr<int> {
    int value = 0;
    std::string text = get(flag, std::to_string(fallback));
    if (!absl::SimpleAtoi(text, &value) || value < 0) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, "=", text, " is not a count"));
    }
    return value;
  };
  ServerOptions o;
  o.listen = get("listen", o.listen);
  o.jobs.data_root = get("data-root", "");
  o.jobs.state_dir = get("state-dir", "");
  STACKPROC_ASSIGN_OR_RETURN(o.jobs.threads, get_int("threads", 0));
  if (!get("threads", "").empty() && o.jobs.threads == 0) {
    return absl::InvalidArgumentError("--threads takes 1 or more (left out: every core)");
  }
  STACKPROC_ASSIGN_OR_RETURN(o.jobs.max_running_jobs, get_int("max-running-jobs", 1));
  STACKPROC_ASSIGN_OR_RETURN(o.jobs.memory_budget,
                             ParseSize("memory-budget", get("memory-budget", "0")));
  STACKPROC_ASSIGN_OR_RETURN(o.jobs.stream_window_bytes,
                             ParseSize("stream-window", get("stream-window", "256M")));
  STACKPROC_ASSIGN_OR_RETURN(o.jobs.max_jobs_per_caller,
                             get_int("max-jobs-per-caller", o.jobs.max_jobs_per_caller));
  STACKPROC_ASSIGN_OR_RETURN(o.jobs.max_streams, get_int("max-streams", o.jobs.max_streams));
  STACKPROC_ASSIGN_OR_RETURN(o.jobs.limits.max_stack_bytes,
                             ParseSize("max-stack-bytes", get("max-stack-bytes", "1T")));
  STACKPROC_ASSIGN_OR_RETURN(int max_slices,
                             get_int("max-slices", static_cast<int>(o.jobs.limits.max_pages)));
  STACKPROC_ASSIGN_OR_RETURN(int max_side,
                             get_int("max-side", static_cast<int>(o.jobs.limits.max_side)));
  o.jobs.limits.max_pages = max_slices;
  o.jobs.limits.max_side = max_side;
  STACKPROC_ASSIGN_OR_RETURN(o.jobs.job_history, get_int("job-history", o.jobs.job_history));
  STACKPROC_ASSIGN_OR_RETURN(int ttl, get_int("result-ttl", 3600));
  o.jobs.result_ttl = absl::Seconds(ttl);
  STACKPROC_ASSIGN_OR_RETURN(int grace, get_int("shutdown-grace", 30));
  o.shutdown_grace = absl::Seconds(grace);
  o.reflection = get("reflection", "false") == "true";
  o.auth_token_file = get("auth-token-file", "");
  o.metrics_listen = get("metrics-listen", "");
  o.http_listen = get("http-listen", "");
  o.tls_cert = get("tls-cert", "");
  o.tls_key = get("tls-key", "");
  o.tls_client_ca = get("tls-client-ca", "");
  o.admins = absl::StrSplit(get("admins", ""), ',', absl::SkipEmpty());
  const std::string host =
      o.listen.rfind("unix:", 0) == 0 ? o.listen : o.listen.substr(0, o.listen.rfind(':'));
  if (!IsLoopback(host) && o.auth_token_file.empty() && o.tls_client_ca.empty() &&
      get("allow-unauthenticated", "false") != "true") {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen ", o.listen,
                     " reaches beyond this machine, and without --auth-token-file or "
                     "--tls-client-ca anyone who reaches the port could run jobs on files under ",
                     o.jobs.data_root,
                     " and read their results: give tokens or client certificates, or "
                     "--allow-unauthenticated on a trusted network"));
  }
  if (!o.http_listen.empty() && !IsLoopback(o.http_listen.substr(0, o.http_listen.rfind(':'))) &&
      o.auth_token_file.empty() && get("allow-unauthenticated", "false") != "true") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--http-listen ", o.http_listen,
        " reaches beyond this machine, and without --auth-token-file anyone who reaches it "
        "could see and cancel every job: give tokens, or --allow-unauthenticated on a trusted "
        "network"));
  }
  absl::StatusOr<Executor> executor = ParseExecutor(get("executor", "local"));
  if (!executor.ok())
    return absl::InvalidArgumentError(absl::StrCat("--", executor.status().message()));
  o.jobs.executor = *executor;
  SlurmOptions& slurm = o.jobs.slurm;
  slurm.partition = get("slurm-partition", "");
  slurm.account = get("slurm-account", "");
  STACKPROC_ASSIGN_OR_RETURN(slurm.max_parallel, get_int("slurm-max-parallel", 0));
  STACKPROC_ASSIGN_OR_RETURN(slurm.cpus_per_shard, get_int("slurm-cpus-per-shard", 0));
  slurm.mem_per_shard = get("slurm-mem-per-shard", "");
  slurm.extra = absl::StrSplit(get("slurm-extra", ""), ' ', absl::SkipEmpty());
  STACKPROC_ASSIGN_OR_RETURN(int poll, get_int("slurm-poll", 10));
  if (poll < 1) return absl::InvalidArgumentError("--slurm-poll must be at least 1 second");
  slurm.poll = absl::Seconds(poll);
  STACKPROC_ASSIGN_OR_RETURN(slurm.retries, get_int("slurm-retries", slurm.retries));
  STACKPROC_ASSIGN_OR_RETURN(slurm.shard_bytes,
                             ParseSize("slurm-shard-size", get("slurm-shard-size", "1G")));
  STACKPROC_ASSIGN_OR_RETURN(int shard_seconds, get_int("slurm-shard-seconds", 300));
  if (shard_seconds < 1) return absl::InvalidArgumentError("--slurm-shard-seconds must be >= 1");
  slurm.shard_seconds = absl::Seconds(shard_seconds);
  slurm.worker = get("slurm-worker", "");
  if (slurm.worker.empty() && o.jobs.executor == Executor::kSlurm) {
    std::error_code error;
    const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
    slurm.worker = (self.parent_path() / "stackproc-local").string();
    if (error || !std::filesystem::exists(slurm.worker)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--executor slurm: no stackproc-local beside stackprocd (", slurm.worker,
                       "): give the one the compute nodes run with --slurm-worker"));
    }
  }
  return o;
}

int Main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  core::KeepMessageBuffersInTheHeap();
  absl::StatusOr<ServerOptions> options = ParseOptions(argc, argv);
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
  const bool unix_socket = options->listen.rfind("unix:", 0) == 0;
  const std::string host =
      unix_socket ? options->listen : options->listen.substr(0, options->listen.rfind(':'));
  const std::string where =
      unix_socket ? options->listen : absl::StrCat(host, ":", (*server)->port());
  const char* access = !options->auth_token_file.empty() ? "tokens"
                       : !options->tls_client_ca.empty() ? "certificates"
                                                         : "open";
  std::printf(
      "stackprocd listening on %s data-root=%s memory-budget=%.2fGiB tls=%s access=%s "
      "executor=%s\n",
      where.c_str(), options->jobs.data_root.c_str(),
      static_cast<double>((*server)->jobs().memory_budget()) / (uint64_t{1} << 30),
      options->tls_cert.empty() ? "off" : "on", access,
      ExecutorName(options->jobs.executor).c_str());
  if ((*server)->metrics_port() != 0) {
    std::printf("stackprocd metrics on http://%s:%d/metrics\n",
                options->metrics_listen.substr(0, options->metrics_listen.rfind(':')).c_str(),
                (*server)->metrics_port());
  }
  if ((*server)->http_port() != 0) {
    std::printf("stackprocd web page on %s://%s:%d/\n",
                options->tls_cert.empty() ? "http" : "https",
                options->http_listen.substr(0, options->http_listen.rfind(':')).c_str(),
                (*server)->http_port());
  }
  std::fflush(stdout);
  if (!IsLoopback(host)) {
    if (options->auth_token_file.empty() && options->tls_client_ca.empty()) {
      std::fprintf(stderr,
                   "stackprocd: warning: listening on %s without --auth-token-file or "
                   "--tls-client-ca: anyone who can reach this port can run jobs on files "
                   "under %s and read their results\n",
                   options->listen.c_str(), options->jobs.data_root.c_str());
    } else if (options->tls_cert.empty()) {
      std::fprintf(stderr,
                   "stackprocd: warning: listening on %s without TLS: tokens and pixels "
                   "cross the network in the clear (--tls-cert, --tls-key)\n",
                   options->listen.c_str());
    }
  }

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
