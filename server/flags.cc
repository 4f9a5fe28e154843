#include "server/flags.h"

#include <cctype>
#include <filesystem>
#include <functional>
#include <limits>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/base/status_macros.h"
#include "core/tools/cli_args.h"
#include "server/api/listen_address.h"

namespace stackproc::server {
namespace {

struct Flag {
  std::string name;   // "max-streams"
  std::string value;  // its value's form ("N", "SIZE"); empty: a switch
  std::string help;   // a sentence or more, wrapped when shown
  // Sets the flag's field from `text`; InvalidArgument naming the flag.
  std::function<absl::Status(const std::string& text, ServerOptions& o)> set;
  // The default, as the usage shows it: from ServerOptions as constructed, or said in words
  // where the field's value means "decided at start" (0 threads: every core).
  std::function<std::string(const ServerOptions& o)> shown;
};

absl::Status NotA(const std::string& flag, const std::string& text, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, "=", text, " is not ", what));
}

absl::StatusOr<uint64_t> ParseSize(const std::string& flag, const std::string& text) {
  static const std::pair<char, int> kUnits[] = {{'K', 10}, {'M', 20}, {'G', 30}, {'T', 40}};
  uint64_t multiplier = 1;
  std::string number = text;
  for (const auto& [unit, shift] : kUnits) {
    if (!number.empty() && std::toupper(number.back()) == unit) {
      multiplier = uint64_t{1} << shift;
      number.pop_back();
      break;
    }
  }
  double value = 0;
  if (!absl::SimpleAtod(number, &value) || value < 0) {
    return NotA(flag, text, "a size like 8G, 512M or 1073741824");
  }
  return static_cast<uint64_t>(value * static_cast<double>(multiplier));
}

// 268435456 -> "256M": the largest unit that divides it.
std::string SizeText(uint64_t bytes) {
  for (const auto& [unit, shift] : {std::pair{'T', 40}, {'G', 30}, {'M', 20}, {'K', 10}}) {
    if (bytes != 0 && bytes % (uint64_t{1} << shift) == 0) {
      return absl::StrCat(bytes >> shift, std::string(1, unit));
    }
  }
  return absl::StrCat(bytes);
}

// Rows by the kind of their field; `field` returns a reference to it in the options.
template <typename Field>
Flag Text(std::string name, std::string value, std::string help, Field field,
          std::string shown = "") {
  return {name, value, help,
          [field](const std::string& text, ServerOptions& o) {
            field(o) = text;
            return absl::OkStatus();
          },
          [field, shown](const ServerOptions& o) {
            ServerOptions copy = o;
            return shown.empty() ? field(copy) : shown;
          }};
}

template <typename Field>
Flag Count(std::string name, std::string help, Field field, int64_t least = 0,
           std::string shown = "") {
  ServerOptions defaults;
  const std::string left_out = shown.empty() ? absl::StrCat(field(defaults)) : shown;
  return {
      name, "N", help,
      [name, field, least, left_out](const std::string& text, ServerOptions& o) -> absl::Status {
        using Value = std::remove_reference_t<decltype(field(o))>;
        int64_t value = 0;
        const bool number = absl::SimpleAtoi(text, &value);
        if (!number || value < least || value > std::numeric_limits<Value>::max()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "--", name, " takes ",
              number && value > least ? absl::StrCat("at most ", std::numeric_limits<Value>::max())
                                      : absl::StrCat(least, " or more"),
              ", not \"", text, "\" (left out: ", left_out, ")"));
        }
        field(o) = static_cast<Value>(value);
        return absl::OkStatus();
      },
      [field, shown](const ServerOptions& o) {
        ServerOptions copy = o;
        return shown.empty() ? absl::StrCat(field(copy)) : shown;
      }};
}

template <typename Field>
Flag Size(std::string name, std::string help, Field field, std::string shown = "") {
  return {name, "SIZE", help,
          [name, field](const std::string& text, ServerOptions& o) -> absl::Status {
            STACKPROC_ASSIGN_OR_RETURN(field(o), ParseSize(name, text));
            return absl::OkStatus();
          },
          [field, shown](const ServerOptions& o) {
            ServerOptions copy = o;
            return shown.empty() ? SizeText(field(copy)) : shown;
          }};
}

template <typename Field>
Flag Seconds(std::string name, std::string help, Field field, int64_t least = 0) {
  return {name, "SECONDS", help,
          [name, field, least](const std::string& text, ServerOptions& o) -> absl::Status {
            int64_t value = 0;
            if (!absl::SimpleAtoi(text, &value) || value < least) {
              return NotA(name, text, absl::StrCat("a number of seconds, ", least, " or more"));
            }
            field(o) = absl::Seconds(value);
            return absl::OkStatus();
          },
          [field](const ServerOptions& o) {
            ServerOptions copy = o;
            return absl::StrCat(absl::ToInt64Seconds(field(copy)));
          }};
}

template <typename Field>
Flag Switch(std::string name, std::string help, Field field) {
  return {name, "", help,
          [name, field](const std::string& text, ServerOptions& o) -> absl::Status {
            if (text != "true" && text != "false") return NotA(name, text, "true or false");
            field(o) = text == "true";
            return absl::OkStatus();
          },
          [](const ServerOptions&) { return std::string(); }};
}

template <typename Field>
Flag List(std::string name, std::string value, std::string help, Field field, char separator) {
  return {name, value, help,
          [field, separator](const std::string& text, ServerOptions& o) {
            field(o) = absl::StrSplit(text, separator, absl::SkipEmpty());
            return absl::OkStatus();
          },
          [](const ServerOptions&) { return std::string(); }};
}

#define FIELD(path) \
  [](ServerOptions & o) -> auto& { return o.path; }

// Where the server listens.
std::vector<Flag> ServingFlags() {
  return {
      Text("listen", "HOST:PORT",
           "address to serve on; port 0 picks a free one (the default: this machine only); or "
           "unix:PATH, a socket for clients on this machine (who may connect is who may open "
           "PATH). Beyond loopback the server needs --auth-token-file or --tls-client-ca, or "
           "--allow-unauthenticated",
           FIELD(listen)),
      Switch("allow-unauthenticated",
             "serve beyond loopback without tokens or client certificates: anyone who reaches "
             "the port runs jobs on the data root (a trusted network only)",
             FIELD(allow_unauthenticated)),
  };
}

// What jobs may use: the data root, threads, memory, limits, the job table.
std::vector<Flag> JobFlags() {
  return {
      Text("data-root", "DIR", "directory every job path is resolved beneath (required)",
           FIELD(jobs.data_root)),
      Count("threads", "worker threads for processing", FIELD(jobs.threads), 1, "all cores"),
      Count("max-running-jobs", "jobs processed at once", FIELD(jobs.max_running_jobs), 1),
      Size("memory-budget", "memory for running jobs and held results, e.g. 8G, 512M",
           FIELD(jobs.memory_budget),
           "3/4 of physical memory, or of the container's memory limit when a cgroup sets one"),
      Seconds("result-ttl", "how long in-memory results are kept", FIELD(jobs.result_ttl)),
      Count("job-history",
            "ended jobs kept listed; the oldest beyond N are forgotten, with their in-memory "
            "results",
            FIELD(jobs.job_history)),
      Size("stream-window",
           "most memory for the slices in flight of one streaming job (the window; at least one "
           "slice, fewer when 2 slices per thread keep the threads busy); each thread's slices "
           "between the pipeline's steps come on top",
           FIELD(jobs.stream_window_bytes)),
      Seconds("stream-grace",
              absl::StrCat("how long a streamed job whose call broke (a cut link) waits for its "
                           "client to resume it (stackproc process resumes by itself); 0: it is "
                           "cancelled at once. Meanwhile it keeps the last ",
                           kStreamTailBytes >> 20, " MiB of results sent"),
              FIELD(jobs.stream_grace)),
      Count("max-jobs-per-caller", "jobs one caller may have queued or running",
            FIELD(jobs.max_jobs_per_caller)),
      Count("max-streams", "streamed jobs open at once", FIELD(jobs.max_streams)),
      Size("max-stack-bytes", "largest stack a job may read or stream",
           FIELD(jobs.limits.max_stack_bytes)),
      Count("max-slices", "most slices in a stack", FIELD(jobs.limits.max_pages), 1),
      Count("max-side", "most pixels along X or Y", FIELD(jobs.limits.max_side), 1),
      Seconds("shutdown-grace", "on SIGTERM/SIGINT, time running jobs get to finish",
              FIELD(shutdown_grace)),
      Text("state-dir", "DIR",
           "keep the job table in DIR/jobs.sqlite3, so that jobs are listed across restarts: "
           "queued jobs queue again, running ones a stop cut short are INTERRUPTED and can be "
           "resumed",
           FIELD(jobs.state_dir), "none, jobs live in memory"),
  };
}

// Who may call, and what else is served (metrics, the web page, reflection).
std::vector<Flag> AccessFlags() {
  return {
      Text("auth-token-file", "FILE",
           "callers and their tokens, one \"NAME TOKEN [admin]\" per line: every call but health "
           "needs \"authorization: Bearer TOKEN\", and a caller sees only its own jobs unless it "
           "is an admin",
           FIELD(auth_token_file), "none"),
      Text("tls-cert", "FILE", "serve TLS with this PEM certificate (chain) and --tls-key",
           FIELD(tls_cert), "plaintext"),
      Text("tls-key", "FILE", "the PEM private key of --tls-cert", FIELD(tls_key)),
      Text("tls-client-ca", "FILE",
           "mutual TLS: clients need a certificate this CA signed; without a token file a "
           "caller is its certificate's common name",
           FIELD(tls_client_ca)),
      List("admins", "NAME,NAME",
           "certificate common names that see every job (needs --tls-client-ca; with a token "
           "file, mark admins there)",
           FIELD(admins), ','),
      Text("metrics-listen", "HOST:PORT", "serve Prometheus metrics at http://HOST:PORT/metrics",
           FIELD(metrics_listen), "off"),
      Text("http-listen", "HOST:PORT",
           "serve a web page of the jobs (progress, cancel, previews of outputs) and its JSON at "
           "http://HOST:PORT/ (HTTPS with --tls-cert). Loopback by default as --listen is; "
           "beyond it, tokens (the page asks for one) or --allow-unauthenticated",
           FIELD(http_listen), "off"),
      Switch("reflection",
             "enable gRPC server reflection (not with --auth-token-file: it answers every "
             "caller; with client certificates it is fine)",
             FIELD(reflection)),
  };
}

// Where path jobs run, and the SLURM cluster's settings.
std::vector<Flag> ClusterFlags() {
  return {
      {"executor", "local|slurm",
       "where path jobs run: local, on this server's threads; slurm, large per-slice jobs with a "
       "TIFF output as z-range shards of a SLURM job array, put together here (needs "
       "--state-dir; the data root must be at the same path on the compute nodes)",
       [](const std::string& text, ServerOptions& o) -> absl::Status {
         absl::StatusOr<Executor> executor = ParseExecutor(text);
         if (!executor.ok()) return NotA("executor", text, "local or slurm");
         o.jobs.executor = *executor;
         return absl::OkStatus();
       },
       [](const ServerOptions& o) { return ExecutorName(o.jobs.executor); }},
      Text("slurm-partition", "NAME", "sbatch --partition", FIELD(jobs.slurm.partition),
           "the cluster's"),
      Text("slurm-account", "NAME", "sbatch --account", FIELD(jobs.slurm.account), "the user's"),
      Count("slurm-max-parallel", "shards of one job running at once (--array=...%N)",
            FIELD(jobs.slurm.max_parallel), 0, "no cap"),
      Count("slurm-cpus-per-shard", "sbatch --cpus-per-task; the shard uses that many threads",
            FIELD(jobs.slurm.cpus_per_shard), 0, "the cluster's"),
      Text("slurm-mem-per-shard", "SIZE", "sbatch --mem, e.g. 4G", FIELD(jobs.slurm.mem_per_shard),
           "the cluster's"),
      List("slurm-extra", "\"ARGS\"",
           "more sbatch arguments, split at spaces (e.g. \"--time=2:00:00 --qos=x\")",
           FIELD(jobs.slurm.extra), ' '),
      Seconds("slurm-poll",
              "how often squeue is asked about a job's shards (the controller is shared: keep it "
              "at 10 or more on a real cluster)",
              FIELD(jobs.slurm.poll), 1),
      Size("slurm-shard-size",
           "input per shard when a job leaves the count to the server (a job that gets fewer "
           "than 2 shards, by this and by --slurm-shard-seconds, runs here)",
           FIELD(jobs.slurm.shard_bytes)),
      Seconds("slurm-shard-seconds",
              "at least one shard per this much work on a shard's CPUs (the pipeline timed on "
              "one slice at submission)",
              FIELD(jobs.slurm.shard_seconds), 1),
      Count("slurm-retries", "a failed shard is submitted again, alone, N times",
            FIELD(jobs.slurm.retries)),
      Text("slurm-worker", "PATH", "the stackproc-local the shards run, as the nodes see it",
           FIELD(jobs.slurm.worker), "the one beside stackprocd"),
  };
}

// Every flag, in the order the usage lists them.
const std::vector<Flag>& Flags() {
  static const std::vector<Flag> kFlags = [] {
    std::vector<Flag> flags;
    for (auto part : {ServingFlags, JobFlags, AccessFlags, ClusterFlags}) {
      std::vector<Flag> more = part();
      flags.insert(flags.end(), more.begin(), more.end());
    }
    return flags;
  }();
  return kFlags;
}

#undef FIELD

// `text` in lines of at most `width` characters, each after `indent` spaces but the first.
std::string Wrapped(const std::string& text, size_t indent, size_t width) {
  std::string out, line;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (!line.empty() && indent + line.size() + 1 + word.size() > width) {
      absl::StrAppend(&out, line, "\n", std::string(indent, ' '));
      line.clear();
    }
    absl::StrAppend(&line, line.empty() ? "" : " ", word);
  }
  return out + line;
}

std::string EnvName(const std::string& flag) {
  std::string env = "STACKPROC_";
  for (char c : flag) env += c == '-' ? '_' : static_cast<char>(std::toupper(c));
  return env;
}

}  // namespace

bool IsLoopback(const std::string& address) {
  if (address.rfind("unix:", 0) == 0) return true;
  absl::StatusOr<HostPort> host = ParseHostPort("listen", address);
  return host.ok() &&
         (host->host == "localhost" || host->host == "::1" || host->host.rfind("127.", 0) == 0);
}

namespace {

// What no single flag decides: who may reach the server, where the shards' worker is.
absl::Status CheckTogether(ServerOptions& o) {
  // An address without a port is refused as such, not taken for one beyond this machine.
  if (o.listen.rfind("unix:", 0) != 0) {
    STACKPROC_RETURN_IF_ERROR(ParseHostPort("listen", o.listen).status());
  }
  if (!o.http_listen.empty()) {
    STACKPROC_RETURN_IF_ERROR(ParseHostPort("http-listen", o.http_listen).status());
  }
  if (!IsLoopback(o.listen) && o.auth_token_file.empty() && o.tls_client_ca.empty() &&
      !o.allow_unauthenticated) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen ", o.listen,
                     " reaches beyond this machine, and without --auth-token-file or "
                     "--tls-client-ca anyone who reaches the port could run jobs on files under ",
                     o.jobs.data_root,
                     " and read their results: give tokens or client certificates, or "
                     "--allow-unauthenticated on a trusted network"));
  }
  if (!o.http_listen.empty() && !IsLoopback(o.http_listen) && o.auth_token_file.empty() &&
      !o.allow_unauthenticated) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--http-listen ", o.http_listen,
        " reaches beyond this machine, and without --auth-token-file anyone who reaches it "
        "could see and cancel every job: give tokens, or --allow-unauthenticated on a trusted "
        "network"));
  }
  SlurmOptions& slurm = o.jobs.slurm;
  if (slurm.worker.find('/') != std::string::npos && slurm.worker.front() != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "--slurm-worker ", slurm.worker,
        ": give an absolute path, or a name on the nodes' PATH (tasks run in the data root)"));
  }
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
  return absl::OkStatus();
}

}  // namespace

const std::string& ServerUsage() {
  static const std::string kUsage = [] {
    const ServerOptions defaults;
    std::string usage = "usage: stackprocd [flags]\n";
    for (const Flag& flag : Flags()) {
      std::string head = absl::StrCat("  --", flag.name, flag.value.empty() ? "" : " ", flag.value);
      head += head.size() < 28 ? std::string(28 - head.size(), ' ') : "  ";
      const std::string shown = flag.shown(defaults);
      const std::string help =
          shown.empty() ? flag.help : absl::StrCat(flag.help, " (default: ", shown, ")");
      absl::StrAppend(&usage, head, Wrapped(help, 28, 96), "\n");
    }
    return usage + "Each flag FOO-BAR can be set by the environment variable STACKPROC_FOO_BAR.\n";
  }();
  return kUsage;
}

absl::StatusOr<ServerOptions> ParseServerFlags(int argc, char** argv) {
  std::vector<std::string> names, switches;
  for (const Flag& flag : Flags()) {
    names.push_back(flag.name);
    if (flag.value.empty()) switches.push_back(flag.name);
  }
  switches.push_back("help");
  STACKPROC_ASSIGN_OR_RETURN(core::CliArgs args, core::CliArgs::Parse(argc, argv, 1, switches));
  if (args.Has("help") || !args.positional.empty()) {
    return absl::InvalidArgumentError(ServerUsage());
  }
  STACKPROC_RETURN_IF_ERROR(args.CheckKnown(names, "stackprocd"));
  ServerOptions o;
  for (const Flag& flag : Flags()) {
    const std::string env = EnvName(flag.name);
    const char* from_env = std::getenv(env.c_str());
    if (!args.Has(flag.name) && (from_env == nullptr || *from_env == '\0')) continue;
    STACKPROC_RETURN_IF_ERROR(flag.set(args.Get(flag.name, "", env.c_str()), o));
  }
  STACKPROC_RETURN_IF_ERROR(CheckTogether(o));
  return o;
}

}  // namespace stackproc::server
