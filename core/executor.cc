#include "core/executor.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_group.h>

#include <mutex>
#include <opencv2/core.hpp>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/first_error.h"
#include "core/progress_reporter.h"
#include "core/slice_runner.h"
#include "core/status_macros.h"

namespace stackproc::core {
namespace {

// One fused segment: steps [first, last) over every slice of `in`, into `out` (which may be
// `in`). `formats` are the pipeline's planned formats.
absl::Status RunSegment(Pipeline& pipeline, size_t first, size_t last,
                        const std::vector<SliceFormat>& formats, Stack& in, Stack& out,
                        const ExecuteOptions& options, ProgressReporter& progress) {
  SliceRunner runner(pipeline, formats, first, last);
  tbb::task_group_context context;
  FirstError error(&context);
  auto run_slice = [&](int64_t z) {
    cv::Mat out_slice = out.Slice(z);
    return runner.Run(z, in.Slice(z), out_slice);
  };

  auto body = [&](const tbb::blocked_range<int64_t>& range) {
    for (int64_t z = range.begin(); z != range.end(); ++z) {
      if (IsCancelled(options.cancel)) {
        return error.Set(z, absl::CancelledError("cancelled"));
      }
      if (absl::Status s = run_slice(z); !s.ok()) return error.Set(z, std::move(s));
      progress.SliceDone();
    }
  };
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, in.depth(), 1), body, context);
  return error.Take();
}

absl::StatusOr<Stack> ExecuteInArena(Stack input, Pipeline& pipeline,
                                     const ExecuteOptions& options) {
  const SliceFormat input_format{static_cast<int>(input.shape().height),
                                 static_cast<int>(input.shape().width), input.pixel_type()};
  STACKPROC_ASSIGN_OR_RETURN(std::vector<SliceFormat> formats, pipeline.Plan(input_format));

  // Segments start at every whole-stack step after the first: their input is materialised.
  std::vector<size_t> starts{0};
  for (size_t i = 1; i < pipeline.size(); ++i) {
    if (pipeline.step(i).op->NeedsWholeStack()) starts.push_back(i);
  }
  const int64_t passes = pipeline.empty() ? 0 : static_cast<int64_t>(starts.size());
  ProgressReporter progress(options.on_progress, options.progress_interval, input.depth() * passes,
                            input.slice_bytes());

  StackMetadata metadata =
      UpdateMetadata(input.metadata(), {input.depth(), formats.back().height, formats.back().width},
                     input.pixel_type(), formats.back().type, pipeline.Geometry(input_format));
  Stack current = std::move(input);
  for (size_t s = 0; s < starts.size() && !pipeline.empty(); ++s) {
    const size_t first = starts[s];
    const size_t last = s + 1 < starts.size() ? starts[s + 1] : pipeline.size();
    if (IsCancelled(options.cancel)) return absl::CancelledError("cancelled");
    if (pipeline.step(first).op->NeedsWholeStack()) {
      STACKPROC_RETURN_IF_ERROR(pipeline.step(first).op->PrepareForStack(current));
    }
    if (formats[first] == formats[last]) {
      STACKPROC_RETURN_IF_ERROR(
          RunSegment(pipeline, first, last, formats, current, current, options, progress));
    } else {
      const SliceFormat& f = formats[last];
      STACKPROC_ASSIGN_OR_RETURN(Stack next,
                                 Stack::Allocate({current.depth(), f.height, f.width}, f.type));
      STACKPROC_RETURN_IF_ERROR(
          RunSegment(pipeline, first, last, formats, current, next, options, progress));
      current = std::move(next);  // frees the segment's input
    }
  }
  if (IsCancelled(options.cancel)) return absl::CancelledError("cancelled");
  progress.Finish();
  current.metadata() = std::move(metadata);
  return current;
}

}  // namespace

void UseOnlyTheExecutorsThreads() {
  static std::once_flag once;
  std::call_once(once, [] { cv::setNumThreads(1); });
}

absl::StatusOr<Stack> Execute(Stack input, Pipeline& pipeline, const ExecuteOptions& options) {
  if (input.empty()) return absl::InvalidArgumentError("cannot run a pipeline on an empty stack");
  UseOnlyTheExecutorsThreads();
  if (options.arena == nullptr) return ExecuteInArena(std::move(input), pipeline, options);
  absl::StatusOr<Stack> result = absl::InternalError("arena did not run");
  options.arena->execute([&] { result = ExecuteInArena(std::move(input), pipeline, options); });
  return result;
}

absl::StatusOr<uint64_t> ExecutePeakBytes(const StackShape& shape,
                                          const std::vector<SliceFormat>& formats) {
  STACKPROC_ASSIGN_OR_RETURN(size_t in, StackBytes(shape, formats.front().type));
  uint64_t peak = in;
  for (size_t i = 1; i < formats.size(); ++i) {
    if (formats[i] == formats[0]) continue;
    STACKPROC_ASSIGN_OR_RETURN(
        size_t out,
        StackBytes({shape.depth, formats[i].height, formats[i].width}, formats[i].type));
    peak = std::max<uint64_t>(peak, in + out);
  }
  return peak;
}

}  // namespace stackproc::core
