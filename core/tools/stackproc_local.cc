// stackproc-local: runs pipelines on stacks in-process, with no server. Also generates sample
// stacks and lists the operations and the formats.
//
//   stackproc-local ops
//   stackproc-local formats
//   stackproc-local generate OUT [--shape 64x512x512] [--type uint16] [--seed 1] [write flags]
//   stackproc-local run --input IN [--op SPEC ...] --output OUT [write flags]
//                       [--threads N] [--mode auto|in-memory|streaming] [--window-mib N]
//                       [--z-range A:B | --shards N [--shard I]]
//                       [--stats FILE ...]
//   stackproc-local stats --input IN --op SPEC ... --output FILE.stats [--z-range | --shards]
//   stackproc-local preview INPUT --op SPEC ... -o OUT.png [-z Z,Z | --slices K] [--roi X,Y,W,H]
//   stackproc-local info OUTPUT [--json]
//   stackproc-local rerun OUTPUT --output NEW [--input IN]
//   stackproc-local assemble --output OUT.tif SHARD.tif...
#include <tbb/task_arena.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/base/cancel.h"
#include "core/base/status_macros.h"
#include "core/io/formats.h"
#include "core/io/sequence_io.h"
#include "core/io/tiff_io.h"
#include "core/pipeline/operation_registry.h"
#include "core/pipeline/pipeline.h"
#include "core/process/preview.h"
#include "core/process/process_file.h"
#include "core/process/shards.h"
#include "core/process/worker_protocol.h"
#include "core/tools/cli_args.h"
#include "core/tools/provenance_commands.h"
#include "core/tools/stackproc_local_usage.h"
#include "core/tools/synthetic.h"

namespace stackproc::core {
namespace {

using Args = CliArgs;

absl::Status ListOps() {
  for (const OperationInfo* info : OperationRegistry::Builtin().List()) {
    std::vector<absl::string_view> types;
    for (PixelType t : info->pixel_types) types.push_back(PixelTypeName(t));
    absl::PrintF("%s  (%s)\n    %s\n", info->name, absl::StrJoin(types, ", "), info->doc);
    for (const ParamSpec& p : info->params) {
      absl::PrintF("    %-12s %-30s default %-8s %s\n", p.name, p.AllowedText(),
                   p.default_value.empty() ? "none" : p.default_value, p.doc);
    }
  }
  return absl::OkStatus();
}

absl::Status ListFormats() {
  for (const FormatInfo& f : Formats()) {
    absl::PrintF("%s\n  named   %s\n  reads   %s\n  writes  %s\n  codecs  %s\n",
                 FormatName(f.format), f.named, f.reads, f.writes, f.compressions);
    if (!f.options.empty()) absl::PrintF("  options %s\n", f.options);
  }
  return absl::OkStatus();
}

// SIGINT and SIGTERM (Ctrl-C; scancel, a pod deleted) cancel a run or an assembly: it stops
// between slices and removes what it wrote, and the program exits 128 + the signal.
CancelToken g_cancel;
std::atomic<int> g_signal{0};

extern "C" void CancelOnSignal(int signal) {
  g_signal.store(signal);
  g_cancel.Cancel();
}

void CancelOnSignals() {
  struct sigaction action = {};
  action.sa_handler = CancelOnSignal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
}

// Puts the TIFF shards of a job cut in z-ranges together, their strips copied as they are.
absl::Status Assemble(const Args& args) {
  const std::string output = args.Get("output");
  if (output.empty() || args.positional.empty()) {
    return absl::InvalidArgumentError("assemble needs --output OUT.tif and the shards");
  }
  if (!IsTiffName(output)) {
    return absl::InvalidArgumentError(
        absl::StrCat(output, ": assemble writes a TIFF: name it NAME.tif or NAME.tiff"));
  }
  STACKPROC_ASSIGN_OR_RETURN(OutputTarget target, OutputTarget::ForPath(output));
  const absl::Time start = absl::Now();
  WriteOptions options;
  options.overwrite = args.Has("overwrite");
  options.cancel = &g_cancel;
  CancelOnSignals();
  STACKPROC_RETURN_IF_ERROR(AssembleTiff(LocalFiles(), args.positional, target, options));
  absl::PrintF("assembled %s from %d shards in %.2fs\n", output, args.positional.size(),
               absl::ToDoubleSeconds(absl::Now() - start));
  return absl::OkStatus();
}

absl::Status Generate(const Args& args) {
  if (args.positional.size() != 1) return absl::InvalidArgumentError("generate needs OUT");
  absl::StatusOr<StackShape> shape_or = ParseShape(args.Get("shape", "64x512x512"));
  if (!shape_or.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--shape ", shape_or.status().message()));
  }
  const StackShape shape = *shape_or;
  STACKPROC_ASSIGN_OR_RETURN(PixelType type, ParsePixelType(args.Get("type", "uint16")));
  uint32_t seed = 1;
  if (!absl::SimpleAtoi(args.Get("seed", "1"), &seed)) {
    return absl::InvalidArgumentError("--seed must be a non-negative integer");
  }
  WriteOptions write;
  STACKPROC_RETURN_IF_ERROR(ParseWriteFlags(args, write));
  // Plane by plane: the memory of a window of slices, whatever the stack's size.
  STACKPROC_ASSIGN_OR_RETURN(std::unique_ptr<SyntheticSource> source,
                             SyntheticSource::Create(shape, type, seed));
  STACKPROC_ASSIGN_OR_RETURN(std::unique_ptr<SliceSink> sink,
                             OpenOutput(args.positional[0], write));
  Pipeline none;
  RunOptions run;
  run.cancel = &g_cancel;
  CancelOnSignals();
  STACKPROC_RETURN_IF_ERROR(Run(*source, none, *sink, run));
  STACKPROC_ASSIGN_OR_RETURN(size_t bytes, StackBytes(shape, type));
  absl::PrintF("wrote %s: %s %s, %.1f MB\n", args.positional[0], ShapeString(shape),
               PixelTypeName(type), bytes / 1e6);
  return absl::OkStatus();
}

void ShowProgress(const Progress& p, bool terminal) {
  const double seconds = absl::ToDoubleSeconds(p.elapsed);
  const double mbps = seconds > 0 ? p.bytes_done / 1e6 / seconds : 0;
  const double eta = p.eta ? absl::ToDoubleSeconds(*p.eta) : 0;
  if (terminal) {
    constexpr int kWidth = 30;
    int filled = p.slices_total ? static_cast<int>(kWidth * p.slices_done / p.slices_total) : 0;
    std::fprintf(stderr, "\r[%s%s] %lld/%lld slices  %.0f MB/s  ETA %.1fs ",
                 std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(),
                 static_cast<long long>(p.slices_done), static_cast<long long>(p.slices_total),
                 mbps, eta);
    if (p.slices_done == p.slices_total) std::fputc('\n', stderr);
  } else {
    std::fprintf(stderr, "progress slices=%lld/%lld mb_per_s=%.0f eta_s=%.1f\n",
                 static_cast<long long>(p.slices_done), static_cast<long long>(p.slices_total),
                 mbps, eta);
  }
}

absl::StatusOr<int> ThreadsOf(const Args& args) {
  int threads = tbb::task_arena::automatic;
  if (std::string t = args.Get("threads");
      !t.empty() && (!absl::SimpleAtoi(t, &threads) || threads < 1)) {
    return absl::InvalidArgumentError("--threads must be a positive integer");
  }
  return threads;
}

// The progress on stderr (a bar on a terminal, else lines), and in --progress-file.
ProgressCallback ProgressOf(const Args& args) {
  const bool terminal = ::isatty(STDERR_FILENO);
  const std::string progress_file = args.Get(worker::kProgressFlag);
  return [terminal, progress_file](const Progress& p) {
    ShowProgress(p, terminal);
    if (!progress_file.empty()) worker::WriteProgressFile(progress_file, p);
  };
}

// The slices a run takes: --z-range A:B, or shard I of --shards N, I from --shard or else the
// index a job array gives its task (SLURM_ARRAY_TASK_ID; Kubernetes' JOB_COMPLETION_INDEX).
absl::StatusOr<std::optional<ZRange>> RangeOf(const Args& args, const ProcessRequest& request) {
  if (args.Has("z-range")) {
    if (args.Has(worker::kShardsFlag))
      return absl::InvalidArgumentError("--z-range or --shards, not both");
    return ParseZRange(args.Get("z-range"));
  }
  if (!args.Has(worker::kShardsFlag)) return std::nullopt;
  int64_t shards = 0;
  int64_t index = -1;
  const std::string shard = args.Get("shard", "", "SLURM_ARRAY_TASK_ID");
  const std::string which = shard.empty() ? args.Get("shard", "", "JOB_COMPLETION_INDEX") : shard;
  if (!absl::SimpleAtoi(args.Get(worker::kShardsFlag), &shards) ||
      !absl::SimpleAtoi(which, &index)) {
    return absl::InvalidArgumentError(
        "--shards N needs a shard index: --shard I, SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX");
  }
  STACKPROC_ASSIGN_OR_RETURN(std::shared_ptr<SliceSource> source, OpenRequestInput(request));
  // Shards filling one store start on whole files of it.
  int64_t align = 1;
  if (request.fill_store) {
    STACKPROC_ASSIGN_OR_RETURN(align, ShardAlignment(request));
  }
  return ShardRange(source->info().shape.depth, shards, index, align);
}

absl::Status Execute(ProcessRequest& request, const Args& args);

absl::Status Run(const Args& args) {
  ProcessRequest request;
  request.input_path = args.Get("input");
  request.output_path = args.Get("output");
  STACKPROC_ASSIGN_OR_RETURN(request.ops, ParseOpSpecs(args.All("op")));
  if (request.input_path.empty() || request.output_path.empty()) {
    return absl::InvalidArgumentError("run needs --input and --output");
  }
  if (args.Has("channels")) {
    STACKPROC_ASSIGN_OR_RETURN(request.channels, ParseChannelList(args.Get("channels")));
  }
  STACKPROC_RETURN_IF_ERROR(ParseWriteFlags(args, request.write));
  request.fill_store = args.Has(worker::kFillStoreFlag);
  STACKPROC_ASSIGN_OR_RETURN(request.z_range, RangeOf(args, request));
  if (request.fill_store && !request.z_range) {  // the store that ranges then fill
    STACKPROC_RETURN_IF_ERROR(CreateOutputStore(request));
    absl::PrintF("made %s: its metadata, for ranges to fill (--fill-store --shards N)\n",
                 request.output_path);
    return absl::OkStatus();
  }
  if (args.Has(worker::kStatsFlag)) {
    STACKPROC_ASSIGN_OR_RETURN(request.stack_stats, SumStatsFiles(args.All(worker::kStatsFlag)));
  }
  request.executor = ExecutorOfEnvironment();
  const std::string mode = args.Get("mode", "auto");
  if (mode == "in-memory") {
    request.mode = ProcessMode::kInMemory;
  } else if (mode == "streaming") {
    request.mode = ProcessMode::kStreaming;
  } else if (mode != "auto") {
    return absl::InvalidArgumentError("--mode must be auto, in-memory or streaming");
  }
  if (std::string w = args.Get("window-mib"); !w.empty()) {
    uint64_t mib = 0;
    if (!absl::SimpleAtoi(w, &mib) || mib < 1) {
      return absl::InvalidArgumentError("--window-mib must be a positive integer");
    }
    request.window_bytes = mib << 20;
  }
  return Execute(request, args);
}

// Runs `request` with the flags every run takes (--threads, --progress-file), Ctrl-C cancelling
// it, and says what it did.
absl::Status Execute(ProcessRequest& request, const Args& args) {
  STACKPROC_ASSIGN_OR_RETURN(int threads, ThreadsOf(args));
  tbb::task_arena arena(threads);
  request.arena = &arena;
  request.on_progress = ProgressOf(args);
  request.cancel = &g_cancel;
  CancelOnSignals();

  STACKPROC_ASSIGN_OR_RETURN(ProcessSummary s, ProcessFile(request));
  if (args.Has(worker::kDoneFlag)) worker::MarkDone(args.Get(worker::kDoneFlag));
  auto rate = [](uint64_t bytes, absl::Duration d) {
    return bytes / 1e6 / std::max(absl::ToDoubleSeconds(d), 1e-9);
  };
  absl::PrintF("done: %s (%s)\n  input  %s %s %s (%.1f MB)\n  output %s %s %s (%.1f MB, %s)\n",
               s.pipeline, ProcessModeName(s.mode), request.input_path, ShapeString(s.input_shape),
               PixelTypeName(s.input_type), s.input_bytes / 1e6, request.output_path,
               ShapeString(s.output_shape), PixelTypeName(s.output_type), s.output_bytes / 1e6,
               EffectiveCompression(*ParseOutputName(request.output_path), request.write));
  if (!s.input_dims.single()) {
    absl::PrintF("  planes %s\n", s.input_dims.Describe(s.input_shape.depth));
  }
  absl::PrintF("  read + process + write %.2fs (%.0f MB/s, %d threads)\n",
               absl::ToDoubleSeconds(s.elapsed), rate(s.input_bytes, s.elapsed),
               arena.max_concurrency());
  return absl::OkStatus();
}

// The statistics of the pipeline's whole-stack step over the input's slices, or a range of
// them (a cut job's first phase), into a file for `run --stats`.
absl::Status Stats(const Args& args) {
  const std::string input = args.Get("input"), output = args.Get("output");
  if (input.empty() || output.empty()) {
    return absl::InvalidArgumentError("stats needs --input and --output");
  }
  ProcessRequest request;  // what the run will read: the input, its channels, and its steps
  request.input_path = input;
  STACKPROC_ASSIGN_OR_RETURN(request.ops, ParseOpSpecs(args.All("op")));
  STACKPROC_ASSIGN_OR_RETURN(Pipeline pipeline, RequestPipeline(request));
  if (args.Has("channels")) {
    STACKPROC_ASSIGN_OR_RETURN(request.channels, ParseChannelList(args.Get("channels")));
  }
  STACKPROC_ASSIGN_OR_RETURN(std::shared_ptr<SliceSource> source, OpenRequestInput(request));
  STACKPROC_ASSIGN_OR_RETURN(std::optional<ZRange> range, RangeOf(args, request));
  if (range) {
    STACKPROC_ASSIGN_OR_RETURN(source, ZRangeSource::Create(source, *range, &pipeline));
  }
  STACKPROC_ASSIGN_OR_RETURN(int threads, ThreadsOf(args));
  tbb::task_arena arena(threads);
  RunOptions run;
  run.arena = &arena;
  run.cancel = &g_cancel;
  run.on_progress = ProgressOf(args);
  CancelOnSignals();
  STACKPROC_ASSIGN_OR_RETURN(std::vector<uint64_t> stats, GatherStats(*source, pipeline, run));
  STACKPROC_RETURN_IF_ERROR(WriteStatsFile(output, stats));
  absl::PrintF("gathered %s: %d slices of %s\n", output, source->info().shape.depth, input);
  return absl::OkStatus();
}

// The pipeline on a few slices: a montage PNG, or the processed slices' bytes.
absl::Status PreviewCommand(const Args& args) {
  if (args.positional.size() != 1) return absl::InvalidArgumentError("preview needs one INPUT");
  const std::string output = args.Get("o");
  if (output.empty()) return absl::InvalidArgumentError("preview needs -o OUT.png");
  STACKPROC_ASSIGN_OR_RETURN(
      PreviewRequest request,
      PreviewRequestOf(args.positional[0], args.All("op"), args.Get("z"), args.Get("slices"),
                       args.Get("roi"), args.Get("channels")));
  const std::string format = args.Get("format", "png");
  if (format != "png" && format != "raw") {
    return absl::InvalidArgumentError("--format is png or raw");
  }
  int side = 512;
  if (args.Has("max-side") && (!absl::SimpleAtoi(args.Get("max-side"), &side) || side < 32)) {
    return absl::InvalidArgumentError("--max-side takes a number of pixels, at least 32");
  }
  static const LocalFiles kLocal;
  STACKPROC_ASSIGN_OR_RETURN(Preview preview, RunPreview(kLocal, request));
  std::string bytes;
  if (format == "raw") {
    bytes = RawPreviewBytes(preview);
  } else {
    STACKPROC_ASSIGN_OR_RETURN(bytes, MontagePng(preview, side));
  }
  STACKPROC_RETURN_IF_ERROR(WritePreviewFile(output, bytes, args.Has("overwrite")));
  absl::PrintF("%s: %s\n", output,
               format == "raw"
                   ? RawPreviewLayout(preview)
                   : absl::StrCat(preview.z.size(), " slices (", absl::StrJoin(preview.where, ", "),
                                  "), ", preview.after.size(),
                                  preview.after.size() == 1 ? " variant" : " variants"));
  for (const std::string& note : preview.notes) absl::PrintF("note: %s\n", note);
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  const auto usage = [](FILE* out) {
    std::fputs(kUsage, out);
    std::fputs(std::string(FormatsHelp()).c_str(), out);
    return out == stdout ? 0 : 2;  // asked for (--help), or a usage error
  };
  if (argc < 2) return usage(stderr);
  const std::string command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") return usage(stdout);
  absl::StatusOr<Args> args =
      CliArgs::Parse(argc, argv, 2, {"overwrite", "json", worker::kFillStoreFlag});
  absl::Status status = args.status();
  // Each command's flags: any other is refused, naming these.
  const std::vector<std::string> range = {"z-range", worker::kShardsFlag, "shard",
                                          worker::kProgressFlag, "threads"};
  static const std::map<std::string, std::vector<std::string>> kFlags = {
      {"ops", {}},
      {"formats", {}},
      {"assemble", {"output", "overwrite"}},
      {"generate", Joined({"shape", "type", "seed"}, WriteFlags())},
      {"run", Joined(Joined({"input", "channels", "op", "output", "mode", "window-mib",
                             worker::kStatsFlag, worker::kFillStoreFlag, worker::kDoneFlag},
                            range),
                     WriteFlags())},
      {"stats", Joined({"input", "channels", "op", "output"}, range)},
      {"preview", PreviewFlags()},
      {"info", {"json"}},
      {"rerun", {"input", "output", "overwrite", "threads", worker::kProgressFlag}},
  };
  if (auto known = kFlags.find(command);
      status.ok() && known != kFlags.end() && args->Has("help")) {
    std::fputs(CommandUsage(kUsage, "stackproc-local", command).c_str(), stdout);
    if (command == "run" || command == "generate")
      std::fputs(std::string(FormatsHelp()).c_str(), stdout);
    return 0;
  }
  // Commands that take no word but their flags' values: a stray word is a mistake (a second
  // file after --stats, which takes one a time), never ignored.
  static const std::set<std::string> kNoWords = {"ops", "formats", "run", "stats"};
  if (status.ok() && kNoWords.count(command) != 0 && !args->positional.empty()) {
    std::fprintf(stderr,
                 "stackproc-local: %s takes no '%s' (a flag takes one value: repeat the flag "
                 "for another)\n",
                 command.c_str(), args->positional.front().c_str());
    return 2;
  }
  if (auto known = kFlags.find(command); status.ok() && known != kFlags.end()) {
    if (absl::Status flags = args->CheckKnown(known->second, "stackproc-local " + command);
        !flags.ok()) {
      std::fprintf(stderr, "stackproc-local: %s\n", std::string(flags.message()).c_str());
      return 2;  // a usage error, as for the other programs
    }
  }
  if (status.ok()) {
    if (command == "ops") {
      status = ListOps();
    } else if (command == "formats") {
      status = ListFormats();
    } else if (command == "assemble") {
      status = Assemble(*args);
    } else if (command == "generate") {
      status = Generate(*args);
    } else if (command == "stats") {
      status = Stats(*args);
    } else if (command == "run") {
      status = Run(*args);
    } else if (command == "preview") {
      status = PreviewCommand(*args);
    } else if (command == "info") {
      status = Info(*args);
    } else if (command == "rerun") {
      absl::StatusOr<ProcessRequest> request = RerunRequest(*args);
      status = request.ok() ? Execute(*request, *args) : request.status();
    } else {
      std::fprintf(stderr, "stackproc-local: unknown command '%s'\n", command.c_str());
      return usage(stderr);
    }
  }
  if (!status.ok()) {
    std::fprintf(stderr, "stackproc-local: %s\n", std::string(status.message()).c_str());
    return g_signal.load() != 0 ? 128 + g_signal.load() : 1;
  }
  return 0;
}

}  // namespace
}  // namespace stackproc::core

int main(int argc, char** argv) { return stackproc::core::Main(argc, argv); }
