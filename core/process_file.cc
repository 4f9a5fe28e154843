#include "core/process_file.h"

#include "core/status_macros.h"

namespace stackproc::core {

absl::StatusOr<ProcessSummary> ProcessFile(const ProcessRequest& request) {
  STACKPROC_ASSIGN_OR_RETURN(Pipeline pipeline, Pipeline::Parse(request.ops));
  STACKPROC_ASSIGN_OR_RETURN(TiffInfo info, ProbeTiff(request.input_path, request.limits));
  const SliceFormat format{static_cast<int>(info.shape.height), static_cast<int>(info.shape.width),
                           info.pixel_type};
  STACKPROC_RETURN_IF_ERROR(pipeline.Plan(format).status());

  ProcessSummary summary;
  summary.pipeline = pipeline.ToString();
  summary.input_shape = info.shape;
  summary.input_type = info.pixel_type;

  auto stage = [&](absl::string_view name) {
    if (request.on_stage) request.on_stage(name);
  };
  stage("reading");
  absl::Time t0 = absl::Now();
  STACKPROC_ASSIGN_OR_RETURN(Stack stack, Stack::Allocate(info.shape, info.pixel_type));
  ReadOptions read{request.limits, request.arena, request.cancel};
  STACKPROC_RETURN_IF_ERROR(ReadTiffInto(request.input_path, info, stack, read));
  stack.metadata() = std::move(info.metadata);
  summary.input_bytes = stack.size_bytes();

  stage("processing");
  absl::Time t1 = absl::Now();
  ExecuteOptions execute{request.arena, request.cancel, request.on_progress};
  STACKPROC_ASSIGN_OR_RETURN(Stack result, Execute(std::move(stack), pipeline, execute));

  absl::Time t2 = absl::Now();
  summary.output_shape = result.shape();
  summary.output_type = result.pixel_type();
  summary.output_bytes = result.size_bytes();
  if (request.output_path.empty()) {
    summary.result = std::move(result);
  } else {
    stage("writing");
    WriteOptions write = request.write;
    write.cancel = request.cancel;
    write.arena = request.arena;
    STACKPROC_RETURN_IF_ERROR(WriteTiff(request.output_path, result, write));
  }
  absl::Time t3 = absl::Now();

  summary.read_time = t1 - t0;
  summary.process_time = t2 - t1;
  summary.write_time = t3 - t2;
  return summary;
}

}  // namespace stackproc::core
