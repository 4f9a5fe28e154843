#include "core/exec/engine.h"

#include <algorithm>
#include <exception>
#include <opencv2/core.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/first_error.h"
#include "core/base/status_macros.h"
#include "core/exec/pass.h"
#include "core/exec/progress_reporter.h"
#include "core/io/stack_io.h"
#include "core/pipeline/slice_runner.h"

namespace stackproc::core {

void Waker::Wake() {
  {
    std::lock_guard lock(mutex_);
    ++generation_;
  }
  changed_.notify_all();
}

uint64_t Waker::generation() const {
  std::lock_guard lock(mutex_);
  return generation_;
}

void Waker::Wait(uint64_t seen, absl::Duration timeout) const {
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] { return generation_ != seen; });
}

void UseOnlyTheEnginesThreads() {
  static std::once_flag once;
  std::call_once(once, [] { cv::setNumThreads(1); });
}

absl::Status Run(SliceSource& source, Pipeline& pipeline, SliceSink& sink,
                 const RunOptions& options) {
  const StackInfo& in = source.info();
  if (in.shape.depth <= 0) {
    return absl::InvalidArgumentError("cannot run a pipeline on an empty stack");
  }
  UseOnlyTheEnginesThreads();
  STACKPROC_ASSIGN_OR_RETURN(std::vector<SliceFormat> formats,
                             pipeline.Plan(SliceFormat::Of(in.shape, in.type)));
  STACKPROC_ASSIGN_OR_RETURN(StackInfo output, OutputInfoOf(in, pipeline));
  STACKPROC_RETURN_IF_ERROR(pipeline.CheckHalo());
  output.metadata.provenance = options.provenance;  // what made it: this run, not its input
  // Whole-stack steps: each one's input is kept in a stack (a pass of its own, unless it is
  // already one in memory), its statistics are taken, and the run goes on from that stack;
  // unless the statistics were gathered already.
  std::vector<size_t> barriers;
  if (options.stack_stats != nullptr) {
    STACKPROC_ASSIGN_OR_RETURN(size_t step, StatsStep(pipeline, formats));
    STACKPROC_RETURN_IF_ERROR(pipeline.PrepareFromStats(step, formats[step], *options.stack_stats));
  } else {
    for (size_t i = 0; i < pipeline.size(); ++i) {
      if (pipeline.step(i).op->NeedsWholeStack()) barriers.push_back(i);
    }
  }
  // A pass after a barrier reads the stack kept there: of a z-range, it has no planes around.
  if (!barriers.empty() && in.metadata.dims.Whole(in.shape.depth) != in.shape.depth &&
      pipeline.HaloOf(barriers[0], pipeline.size()) > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(pipeline.ToString(),
                     ": a z-range of it runs its 3-D steps after its whole-stack step "
                     "only with that step's statistics gathered first (--stats)"));
  }
  const bool source_is_stack = source.stack() != nullptr;
  const int64_t passes =
      1 + std::ssize(barriers) - (!barriers.empty() && barriers[0] == 0 && source_is_stack ? 1 : 0);
  STACKPROC_ASSIGN_OR_RETURN(size_t slice_bytes, SliceBytes(in.shape, in.type));
  ProgressReporter progress(options.on_progress, options.progress_interval, in.shape.depth * passes,
                            slice_bytes);

  // One for the whole run: a source may outlive its pass (its end is awaited last).
  auto waker = std::make_shared<Waker>();
  SliceSource* current = &source;
  std::optional<StackSource> held;  // the stack kept at the last barrier
  size_t first = 0;
  for (const size_t barrier : barriers) {
    if (barrier > first || current->stack() == nullptr) {
      const SliceFormat& f = formats[barrier];
      const StackInfo kept{{in.shape.depth, f.height, f.width}, f.type, {}};
      StackSink keep;
      if (Stack* s = current->writable_stack();
          s != nullptr && formats[first] == f && pipeline.HaloOf(first, barrier) == 0) {
        keep.Adopt(*s);  // the pass runs in place (a z-neighbourhood reads planes around)
      }
      STACKPROC_RETURN_IF_ERROR(RunPass(*current, pipeline, formats, first, barrier, keep, kept,
                                        options, progress, waker, nullptr));
      held.emplace(keep.Take(), /*writable=*/true);  // frees the stack held before
      current = &*held;
    }
    STACKPROC_RETURN_IF_ERROR(pipeline.PrepareForStack(barrier, *current->stack()));
    first = barrier;
  }
  if (Stack* s = current->writable_stack(); s != nullptr && formats[first] == formats.back() &&
                                            pipeline.HaloOf(first, pipeline.size()) == 0) {
    sink.Adopt(*s);  // a sink that keeps the result makes it in place
  }
  STACKPROC_RETURN_IF_ERROR(RunPass(*current, pipeline, formats, first, pipeline.size(), sink,
                                    output, options, progress, waker, &source));
  progress.Finish();
  return absl::OkStatus();
}

absl::StatusOr<size_t> StatsStep(const Pipeline& pipeline,
                                 const std::vector<SliceFormat>& formats) {
  std::vector<size_t> steps;
  for (size_t i = 0; i < pipeline.size(); ++i) {
    if (pipeline.step(i).op->NeedsWholeStack()) steps.push_back(i);
  }
  if (steps.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        pipeline.ToString(), steps.empty() ? " has no whole-stack step"
                                           : " has several whole-stack steps: cut in ranges, "
                                             "only one can take statistics gathered apart"));
  }
  const SliceFormat& in = formats.at(steps[0]);
  const cv::Mat probe(1, 1, CvType(in.type), cv::Scalar(0));  // whether they add up at all
  std::vector<uint64_t> stats;
  if (!pipeline.step(steps[0]).op->AddStats(probe, stats)) {
    return absl::InvalidArgumentError(
        absl::StrCat(pipeline.step(steps[0]).spec, " takes ", PixelTypeName(in.type),
                     " pixels, whose statistics do not add up over ranges gathered apart"));
  }
  if (const size_t values = pipeline.JoinStats(steps[0], in, {}).size(); values > kMaxStatsValues) {
    return absl::InvalidArgumentError(
        absl::StrCat(pipeline.step(steps[0]).spec, " takes statistics of ", values,
                     " values from these slices, more than ranges gathered apart may (",
                     kMaxStatsValues, "): it runs whole"));
  }
  return steps[0];
}

namespace {

// Adds each slice it is given to the statistics of step `step` (the StatsStep) of its plane's
// group; writes nothing.
class StatsSink final : public SliceSink {
 public:
  StatsSink(const Pipeline& pipeline, size_t step) : pipeline_(pipeline), step_(step) {}
  absl::Status Open(const StackInfo& output, int64_t, std::function<void(int64_t)>) override {
    format_ = SliceFormat::Of(output.shape, output.type);
    return absl::OkStatus();
  }
  absl::Status Write(int64_t z, const uint8_t* data) override {
    const cv::Mat slice(format_.height, format_.width, CvType(format_.type),
                        const_cast<uint8_t*>(data));
    pipeline_.AddStats(step_, z, slice, groups_);
    return absl::OkStatus();
  }
  absl::Status Close() override { return absl::OkStatus(); }
  std::vector<uint64_t> Take() { return pipeline_.JoinStats(step_, format_, std::move(groups_)); }

 private:
  const Pipeline& pipeline_;
  const size_t step_;
  SliceFormat format_;
  std::vector<std::vector<uint64_t>> groups_;
};

}  // namespace

absl::StatusOr<std::vector<uint64_t>> GatherStats(SliceSource& source, Pipeline& pipeline,
                                                  const RunOptions& options) {
  const StackInfo& in = source.info();
  if (in.shape.depth <= 0) return absl::InvalidArgumentError("cannot gather an empty stack");
  UseOnlyTheEnginesThreads();
  const SliceFormat input = SliceFormat::Of(in.shape, in.type);
  STACKPROC_ASSIGN_OR_RETURN(std::vector<SliceFormat> formats, pipeline.Plan(input));
  STACKPROC_ASSIGN_OR_RETURN(size_t step, StatsStep(pipeline, formats));
  STACKPROC_RETURN_IF_ERROR(pipeline.Bind(in));
  STACKPROC_RETURN_IF_ERROR(pipeline.CheckHalo());
  const SliceFormat& f = formats[step];
  const StackInfo gathered{{in.shape.depth, f.height, f.width}, f.type, {}};
  STACKPROC_ASSIGN_OR_RETURN(size_t slice_bytes, SliceBytes(in.shape, in.type));
  ProgressReporter progress(options.on_progress, options.progress_interval, in.shape.depth,
                            slice_bytes);
  StatsSink sink(pipeline, step);
  STACKPROC_RETURN_IF_ERROR(RunPass(source, pipeline, formats, 0, step, sink, gathered, options,
                                    progress, std::make_shared<Waker>(), &source));
  progress.Finish();
  return sink.Take();
}

}  // namespace stackproc::core
