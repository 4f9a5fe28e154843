#include "core/process_file.h"

#include "core/page_pipeline.h"
#include "core/status_macros.h"

namespace stackproc::core {
namespace {

absl::StatusOr<OutputTarget> Target(const ProcessRequest& request) {
  if (request.output_target) return *request.output_target;
  return OutputTarget::ForPath(request.output_path);
}

int Concurrency(const ProcessRequest& request) {
  return request.arena != nullptr ? request.arena->max_concurrency()
                                  : tbb::this_task_arena::max_concurrency();
}

absl::Status ProcessInMemory(const ProcessRequest& request, ProcessPlan& plan,
                             ProcessSummary& summary) {
  auto stage = [&](absl::string_view name) {
    if (request.on_stage) request.on_stage(name);
  };
  stage("reading");
  absl::Time t0 = absl::Now();
  STACKPROC_ASSIGN_OR_RETURN(Stack stack, Stack::Allocate(plan.info.shape, plan.info.pixel_type));
  ReadOptions read{request.limits, request.arena, request.cancel};
  STACKPROC_RETURN_IF_ERROR(ReadTiffInto(*plan.input, plan.info, stack, read));
  stack.metadata() = plan.info.metadata;

  stage("processing");
  absl::Time t1 = absl::Now();
  ExecuteOptions execute{request.arena, request.cancel, request.on_progress};
  STACKPROC_ASSIGN_OR_RETURN(Stack result, Execute(std::move(stack), plan.pipeline, execute));

  absl::Time t2 = absl::Now();
  if (request.output_path.empty()) {
    summary.result = std::move(result);
  } else {
    stage("writing");
    WriteOptions write = request.write;
    write.cancel = request.cancel;
    write.arena = request.arena;
    STACKPROC_ASSIGN_OR_RETURN(OutputTarget target, Target(request));
    STACKPROC_RETURN_IF_ERROR(WriteTiff(target, result, write));
  }
  absl::Time t3 = absl::Now();
  summary.read_time = t1 - t0;
  summary.process_time = t2 - t1;
  summary.write_time = t3 - t2;
  return absl::OkStatus();
}

absl::Status ProcessStreaming(const ProcessRequest& request, ProcessPlan& plan,
                              ProcessSummary& summary) {
  if (request.on_stage) request.on_stage("streaming");
  absl::Time t0 = absl::Now();
  STACKPROC_ASSIGN_OR_RETURN(std::unique_ptr<TiffPageReader> reader,
                             TiffPageReader::Open(*plan.input, plan.info));
  const SliceFormat in = plan.formats.front();
  StackMetadata metadata = UpdateMetadata(reader->info().metadata, plan.output_shape, in.type,
                                          plan.output_type, plan.pipeline.Geometry(in));
  WriteOptions write = request.write;
  write.cancel = request.cancel;
  write.arena = request.arena;
  STACKPROC_ASSIGN_OR_RETURN(OutputTarget target, Target(request));
  STACKPROC_ASSIGN_OR_RETURN(std::unique_ptr<TiffPageWriter> writer,
                             TiffPageWriter::Create(target, plan.output_shape, plan.output_type,
                                                    std::move(metadata), write));
  PagePipelineOptions options;
  options.arena = request.arena;
  options.cancel = request.cancel;
  options.on_progress = request.on_progress;
  options.window_bytes = request.window_bytes;
  STACKPROC_RETURN_IF_ERROR(
      RunPagePipeline(*reader, plan.pipeline, plan.formats, *writer, options));
  STACKPROC_RETURN_IF_ERROR(writer->Commit());
  summary.process_time = absl::Now() - t0;
  return absl::OkStatus();
}

}  // namespace

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

absl::StatusOr<ProcessPlan> PlanProcess(const ProcessRequest& request, int concurrency) {
  ProcessPlan plan;
  STACKPROC_ASSIGN_OR_RETURN(plan.pipeline, Pipeline::Parse(request.ops));
  if (request.input_file) {
    plan.input = request.input_file;
  } else {
    STACKPROC_ASSIGN_OR_RETURN(plan.input, InputFile::Open(request.input_path));
  }
  STACKPROC_ASSIGN_OR_RETURN(plan.info, ProbeTiff(*plan.input, request.limits));
  const SliceFormat format{static_cast<int>(plan.info.shape.height),
                           static_cast<int>(plan.info.shape.width), plan.info.pixel_type};
  STACKPROC_ASSIGN_OR_RETURN(plan.formats, plan.pipeline.Plan(format));
  plan.output_shape = {plan.info.shape.depth, plan.formats.back().height,
                       plan.formats.back().width};
  plan.output_type = plan.formats.back().type;

  const bool can_stream = !request.output_path.empty() && !plan.pipeline.NeedsWholeStack();
  if (request.mode == ProcessMode::kStreaming && !can_stream) {
    return absl::InvalidArgumentError(
        request.output_path.empty()
            ? "streaming needs an output file: a result kept in memory is the whole stack"
            : absl::StrCat(plan.pipeline.ToString(),
                           " needs the whole stack: it cannot run page by page"));
  }
  // Streaming whenever the job allows: it reuses a window of buffers instead of faulting in a
  // stack's worth of fresh memory, overlaps reading and writing with processing, and its
  // memory does not grow with the stack.
  plan.mode = request.mode == ProcessMode::kInMemory || !can_stream ? ProcessMode::kInMemory
                                                                    : ProcessMode::kStreaming;
  if (plan.mode == ProcessMode::kStreaming) {
    plan.memory_bytes =
        PlanPagePipeline(plan.formats, plan.info.shape.depth, request.window_bytes, concurrency,
                         request.write.compression != Compression::kNone)
            .memory_bytes;
  } else {
    STACKPROC_ASSIGN_OR_RETURN(plan.memory_bytes, ExecutePeakBytes(plan.info.shape, plan.formats));
  }
  return plan;
}

absl::StatusOr<ProcessSummary> ProcessFile(const ProcessRequest& request) {
  STACKPROC_ASSIGN_OR_RETURN(ProcessPlan plan, PlanProcess(request, Concurrency(request)));
  ProcessSummary summary;
  summary.pipeline = plan.pipeline.ToString();
  summary.mode = plan.mode;
  summary.input_shape = plan.info.shape;
  summary.input_type = plan.info.pixel_type;
  summary.output_shape = plan.output_shape;
  summary.output_type = plan.output_type;
  STACKPROC_ASSIGN_OR_RETURN(summary.input_bytes,
                             StackBytes(plan.info.shape, plan.info.pixel_type));
  STACKPROC_ASSIGN_OR_RETURN(summary.output_bytes, StackBytes(plan.output_shape, plan.output_type));
  if (plan.mode == ProcessMode::kStreaming) {
    STACKPROC_RETURN_IF_ERROR(ProcessStreaming(request, plan, summary));
  } else {
    STACKPROC_RETURN_IF_ERROR(ProcessInMemory(request, plan, summary));
  }
  return summary;
}

}  // namespace stackproc::core
