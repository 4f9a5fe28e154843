#include "core/process/process_file.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "core/io/formats.h"
#include "core/io/plane_map.h"
#include "core/io/stack_io.h"
#include "core/io/tiff_io.h"
#include "core/io/zarr_sink.h"

namespace stackproc::core {
namespace {

int Concurrency(const ProcessRequest& request) {
  return request.arena != nullptr ? request.arena->max_concurrency()
                                  : tbb::this_task_arena::max_concurrency();
}

// The file's pages through the plan's pipeline into `sink`. In memory, a per-slice pipeline
// still holds its whole input first (what kInMemory asks for: the stack read once, then
// processed from memory); a whole-stack pipeline holds it by itself (the engine's barrier).
absl::Status RunPlan(const ProcessRequest& request, ProcessPlan& plan, SliceSink& sink) {
  RunOptions run;
  run.arena = request.arena;
  run.cancel = request.cancel;
  run.on_progress = request.on_progress;
  run.window_bytes = request.window_bytes;
  if (request.stack_stats) run.stack_stats = &*request.stack_stats;
  run.provenance = RunProvenance(request, plan.pipeline, plan.file);
  SliceSource& source = *plan.source;
  // (A range whose z-neighbourhoods read planes around it streams: held, it would have none.)
  const SourceTraits traits = source.traits();
  if (plan.mode == ProcessMode::kStreaming || plan.pipeline.NeedsWholeStack() ||
      request.output_path.empty() || traits.context_before + traits.context_after > 0) {
    return Run(source, plan.pipeline, sink, run);
  }
  StackSink held;
  Pipeline none;
  RunOptions read = run;
  read.on_progress = nullptr;
  STACKPROC_RETURN_IF_ERROR(Run(source, none, held, read));
  StackSource stack(held.Take(), /*writable=*/true);
  return Run(stack, plan.pipeline, sink, run);
}

// How the request reaches its files.
const Files& FilesOf(const ProcessRequest& request) {
  static const LocalFiles kLocal;
  return request.files != nullptr ? *request.files : kLocal;
}

}  // namespace

absl::StatusOr<Pipeline> RequestPipeline(const ProcessRequest& request) {
  return Pipeline::Create(request.ops, OperationRegistry::Builtin(),
                          ImagesIn(FilesOf(request), request.limits));
}

absl::StatusOr<std::shared_ptr<SliceSource>> OpenRequestInput(const ProcessRequest& request) {
  STACKPROC_ASSIGN_OR_RETURN(std::shared_ptr<SliceSource> source,
                             OpenInput(FilesOf(request), request.input_path, request.limits));
  if (!request.channels.empty()) {
    STACKPROC_ASSIGN_OR_RETURN(source, PlaneMapSource::Channels(source, request.channels));
  }
  if (!request.output_path.empty()) {
    absl::StatusOr<OutputName> output = ParseOutputName(request.output_path);
    if (output.ok() && output->format == Format::kOmeZarr) {
      STACKPROC_ASSIGN_OR_RETURN(source, PlaneMapSource::InZctOrder(source));
    }
  }
  return source;
}

absl::string_view ProcessModeName(ProcessMode mode) {
  switch (mode) {
    case ProcessMode::kAuto:
      return "auto";
    case ProcessMode::kInMemory:
      return "in-memory";
    case ProcessMode::kStreaming:
      return "streaming";
  }
  return "auto";
}

absl::StatusOr<ProcessPlan> PlanSource(std::shared_ptr<SliceSource> source,
                                       const ProcessRequest& request,
                                       std::optional<SinkTraits> sink, int concurrency) {
  ProcessPlan plan;
  STACKPROC_ASSIGN_OR_RETURN(plan.pipeline, RequestPipeline(request));
  plan.source = std::move(source);
  plan.input = plan.source->info();
  plan.file = PlaneMapSource::UnmappedInfo(*plan.source);
  plan.source_depth = plan.input.shape.depth;
  STACKPROC_ASSIGN_OR_RETURN(
      plan.formats, plan.pipeline.Plan(SliceFormat::Of(plan.input.shape, plan.input.type)));
  // A step naming a channel the stack lacks is refused now, before anything is read.
  STACKPROC_RETURN_IF_ERROR(plan.pipeline.Bind(plan.input));
  plan.output_shape = {plan.input.shape.depth, plan.formats.back().height,
                       plan.formats.back().width};
  plan.output_type = plan.formats.back().type;
  if (request.stack_stats) {
    STACKPROC_RETURN_IF_ERROR(StatsStep(plan.pipeline, plan.formats).status());
  }
  // A whole-stack step with its statistics given runs like a per-slice one.
  const bool whole_stack = plan.pipeline.NeedsWholeStack() && !request.stack_stats;
  const bool can_stream = sink.has_value() && !whole_stack;
  if (request.mode == ProcessMode::kStreaming && !can_stream) {
    return absl::InvalidArgumentError(
        !sink ? "streaming needs an output file: a result kept in memory is the whole stack"
              : absl::StrCat(plan.pipeline.ToString(),
                             " needs the whole stack: it cannot run page by page"));
  }
  // Streaming whenever the job allows: it reuses a window of buffers instead of faulting in a
  // stack's worth of fresh memory, overlaps reading and writing with processing, and its
  // memory does not grow with the stack.
  plan.mode = request.mode == ProcessMode::kInMemory || !can_stream ? ProcessMode::kInMemory
                                                                    : ProcessMode::kStreaming;
  const SourceTraits traits = plan.source->traits();
  const int64_t depth = plan.input.shape.depth;
  // z-neighbourhoods' rings: counted, and refused now when a pass's do not fit the window.
  for (const auto& [first, last] : PassesOf(plan.pipeline, request.stack_stats.has_value())) {
    const std::vector<SliceFormat> formats(plan.formats.begin() + static_cast<ptrdiff_t>(first),
                                           plan.formats.begin() + static_cast<ptrdiff_t>(last) + 1);
    STACKPROC_RETURN_IF_ERROR(
        CheckHaloFits(plan.pipeline,
                      PlanWindow(formats, depth, request.window_bytes, concurrency, traits,
                                 sink.value_or(SinkTraits{}), plan.pipeline.Halos(first, last)),
                      request.window_bytes));
  }
  const WindowPlan window =
      PlanWindow(plan.formats, depth, request.window_bytes, concurrency, traits,
                 sink.value_or(SinkTraits{}), plan.pipeline.Halos(0, plan.pipeline.size()));
  if (plan.mode == ProcessMode::kStreaming) {
    plan.memory_bytes = window.memory_bytes;
  } else if (traits.fed) {
    STACKPROC_ASSIGN_OR_RETURN(
        plan.memory_bytes, PlanRunMemory(plan.pipeline, plan.formats, depth, request.window_bytes,
                                         concurrency, traits, sink.value_or(SinkTraits{})));
  } else {
    STACKPROC_ASSIGN_OR_RETURN(plan.memory_bytes, StackPeakBytes(plan.input.shape, plan.formats));
    if (plan.pipeline.HaloOf(0, plan.pipeline.size()) > 0) plan.memory_bytes += window.memory_bytes;
  }
  return plan;
}

Provenance::Input RecordedInput(std::string name, const StackInfo& file) {
  const Dimensions& dims = file.metadata.dims;
  Provenance::Input in;
  in.name = std::move(name);
  in.t = dims.times;
  in.c = dims.channels;
  in.z = dims.Slices(file.shape.depth);
  in.y = file.shape.height;
  in.x = file.shape.width;
  in.type = std::string(PixelTypeName(file.type));
  in.bytes = static_cast<uint64_t>(dims.Whole(file.shape.depth) * in.y * in.x) *
             BytesPerPixel(file.type);
  return in;
}

Provenance RunProvenance(const ProcessRequest& request, const Pipeline& pipeline,
                         const StackInfo& file) {
  Provenance p;
  p.version = std::string(StackprocVersion());
  p.pipeline = pipeline.Resolved();
  p.channels = absl::StrJoin(request.channels, "+");
  if (request.z_range) p.z_range = absl::StrCat(request.z_range->begin, ":", request.z_range->end);
  RecordWrite(request.output_path, request.write, p);
  p.input = RecordedInput(request.input_name.empty() ? request.input_path : request.input_name,
                          file);
  p.time = ProvenanceTime(request.started.value_or(absl::Now()));
  p.executor = request.executor;
  return p;
}

absl::Status CreateOutputStore(const ProcessRequest& request) {
  ProcessRequest whole = request;
  whole.z_range.reset();
  STACKPROC_ASSIGN_OR_RETURN(ProcessPlan plan, PlanProcess(whole, 1));
  STACKPROC_ASSIGN_OR_RETURN(StackInfo out, OutputInfoOf(plan.input, plan.pipeline));
  out.metadata.provenance = RunProvenance(whole, plan.pipeline, plan.file);
  STACKPROC_ASSIGN_OR_RETURN(OutputTarget target,
                             request.output_target
                                 ? absl::StatusOr<OutputTarget>(*request.output_target)
                                 : OutputTarget::ForPath(request.output_path));
  return CreateZarrStore(target, out, request.write);
}

absl::StatusOr<int64_t> ShardAlignment(const ProcessRequest& request) {
  absl::StatusOr<OutputName> output = ParseOutputName(request.output_path);
  if (!output.ok() || output->format != Format::kOmeZarr) return 1;
  ProcessRequest whole = request;
  whole.z_range.reset();
  STACKPROC_ASSIGN_OR_RETURN(ProcessPlan plan, PlanProcess(whole, 1));
  STACKPROC_ASSIGN_OR_RETURN(StackInfo out, OutputInfoOf(plan.input, plan.pipeline));
  return ZarrSink::RangeAlignment(request.write, out);
}

void RecordWrite(const std::string& output_path, const WriteOptions& w, Provenance& p) {
  p.compression = CompressionText(w.compression, w.compression_level, w.predictor);
  p.chunks = w.chunks ? absl::StrJoin(*w.chunks, "x") : "";
  p.pyramid = w.pyramid_levels;
  absl::StatusOr<OutputName> output = ParseOutputName(output_path);
  const bool zarr = output.ok() && output->format == Format::kOmeZarr;
  p.zarr_format = zarr ? w.zarr_format : 0;
  p.shards = zarr && w.zarr_shards ? absl::StrJoin(*w.zarr_shards, "x") : "";
}

absl::Status RecordedWrite(const Provenance& p, WriteOptions& write) {
  STACKPROC_RETURN_IF_ERROR(ParseCompressionText(p.compression, write));
  for (auto [text, shape] :
       {std::pair{&p.chunks, &write.chunks}, {&p.shards, &write.zarr_shards}}) {
    if (text->empty()) continue;
    STACKPROC_ASSIGN_OR_RETURN(StackShape s, ParseShape(*text));
    *shape = {s.depth, s.height, s.width};
  }
  write.pyramid_levels = p.pyramid;
  if (p.zarr_format != 0) write.zarr_format = p.zarr_format;
  return absl::OkStatus();
}

absl::StatusOr<ProcessPlan> PlanProcess(const ProcessRequest& request, int concurrency) {
  STACKPROC_ASSIGN_OR_RETURN(Pipeline pipeline, RequestPipeline(request));
  std::optional<SinkTraits> sink;
  if (!request.output_path.empty()) {
    STACKPROC_ASSIGN_OR_RETURN(OutputName output, ParseOutputName(request.output_path));
    STACKPROC_RETURN_IF_ERROR(ValidateOutput(output, request.write));
    sink = OutputTraits(output, request.write);
  }
  STACKPROC_ASSIGN_OR_RETURN(std::shared_ptr<SliceSource> source, OpenRequestInput(request));
  const int64_t source_depth = source->info().shape.depth;
  StackInfo file = PlaneMapSource::UnmappedInfo(*source);  // before a z-range takes part of it
  if (request.z_range) {
    if (pipeline.NeedsWholeStack() && !request.stack_stats) {
      return absl::InvalidArgumentError(
          absl::StrCat(pipeline.ToString(), " needs the whole stack: it cannot run on a z-range"));
    }
    STACKPROC_ASSIGN_OR_RETURN(source, ZRangeSource::Create(source, *request.z_range, &pipeline));
  }
  STACKPROC_ASSIGN_OR_RETURN(ProcessPlan plan,
                             PlanSource(std::move(source), request, sink, concurrency));
  plan.source_depth = source_depth;
  plan.file = std::move(file);
  return plan;
}

absl::StatusOr<ProcessSummary> ProcessFile(const ProcessRequest& request) {
  STACKPROC_ASSIGN_OR_RETURN(ProcessPlan plan, PlanProcess(request, Concurrency(request)));
  ProcessSummary summary;
  summary.pipeline = plan.pipeline.ToString();
  summary.mode = plan.mode;
  summary.input_shape = plan.input.shape;
  summary.input_dims = plan.input.metadata.dims;
  summary.input_type = plan.input.type;
  summary.output_shape = plan.output_shape;
  summary.output_type = plan.output_type;
  STACKPROC_ASSIGN_OR_RETURN(summary.input_bytes, StackBytes(plan.input.shape, plan.input.type));
  STACKPROC_ASSIGN_OR_RETURN(summary.output_bytes, StackBytes(plan.output_shape, plan.output_type));
  if (request.on_stage) {
    request.on_stage(plan.mode == ProcessMode::kStreaming ? "streaming" : "processing");
  }
  const absl::Time start = absl::Now();
  if (request.output_path.empty()) {
    StackSink sink;
    STACKPROC_RETURN_IF_ERROR(RunPlan(request, plan, sink));
    summary.result = sink.Take();
  } else {
    // The run's options cancel it and give it its arena: a sink needs only the write's.
    WriteOptions write = request.write;
    // A TIFF shard: where its slices belong goes with them (an OME-Zarr shard fills its part of
    // one store and needs no assembly).
    if (request.z_range && ParseOutputName(request.output_path)->format == Format::kTiff) {
      write.shard_record = FormatShardRecord(
          {*request.z_range, plan.source_depth,
           JobKey(request.input_path, summary.pipeline, plan.source_depth,
                  CompressionText(write.compression, write.compression_level, write.predictor))});
    }
    std::unique_ptr<SliceSink> sink;
    if (request.fill_store) {
      if (!request.z_range || ParseOutputName(request.output_path)->format != Format::kOmeZarr) {
        return absl::InvalidArgumentError(
            "filling a store takes an OME-Zarr output and a z-range (or a shard of --shards)");
      }
      STACKPROC_ASSIGN_OR_RETURN(OutputTarget target,
                                 request.output_target
                                     ? absl::StatusOr<OutputTarget>(*request.output_target)
                                     : OutputTarget::ForPath(request.output_path));
      sink = std::make_unique<ZarrSink>(std::move(target), write,
                                        ZarrRegion{plan.source_depth, request.z_range->begin});
    } else {
      STACKPROC_ASSIGN_OR_RETURN(sink,
                                 OpenOutput(request.output_path, write, request.output_target));
    }
    STACKPROC_RETURN_IF_ERROR(RunPlan(request, plan, *sink));
  }
  summary.elapsed = absl::Now() - start;
  return summary;
}

}  // namespace stackproc::core
