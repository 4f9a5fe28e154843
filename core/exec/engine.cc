#include "core/exec/engine.h"

#include <tbb/parallel_pipeline.h>

#include <algorithm>
#include <exception>
#include <opencv2/core.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/first_error.h"
#include "core/base/status_macros.h"
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

namespace {

absl::Status CancelledAt(int64_t z) {
  return absl::CancelledError(absl::StrCat("cancelled at slice ", z));
}

int Concurrency(const RunOptions& options) {
  return options.arena != nullptr ? options.arena->max_concurrency()
                                  : tbb::this_task_arena::max_concurrency();
}

// What a lending sink's release(z) reaches: the pass while it runs, nothing once it is over.
struct ReleaseHub;

// One pass of the pipeline: steps [first, last) from `source` into an opened `sink`.
class Pass {
 public:
  Pass(SliceSource& source, Pipeline& pipeline, const std::vector<SliceFormat>& formats,
       size_t first, size_t last, SliceSink& sink, const RunOptions& options,
       ProgressReporter& progress, Waker& waker, int64_t window)
      : source_(source),
        sink_(sink),
        options_(options),
        progress_(progress),
        waker_(waker),
        runner_(pipeline, formats, first, last),
        in_(formats[first]),
        out_(formats[last]),
        in_place_(MakesOutputInPlace({formats.begin() + static_cast<ptrdiff_t>(first),
                                      formats.begin() + static_cast<ptrdiff_t>(last) + 1})),
        no_steps_(first == last),
        lending_(sink.traits().lends),
        depth_(source.info().shape.depth),
        slots_(static_cast<size_t>(window)) {}

  // Every slice through, then the end of `ending` (the run's own source, on its last pass:
  // Ready(depth)); on error, what the sink still holds given back. Returns only when no slice
  // is lent: the buffers die with the pass.
  absl::Status Run(SliceSource* ending) {
    absl::Status status = Slices();
    while (status.ok() && ending != nullptr) {
      const uint64_t seen = waker_.generation();
      absl::StatusOr<bool> ended = ending->Ready(depth_);
      if (!ended.ok()) status = ended.status();
      if (!ended.ok() || *ended) break;
      if (IsCancelled(options_.cancel)) status = CancelledAt(depth_);
      if (!status.ok()) break;
      waker_.Wait(seen, absl::Milliseconds(100));
    }
    if (!status.ok() && lending_) sink_.Abandon();
    while (true) {
      const uint64_t seen = waker_.generation();
      if (Lent() == 0) break;
      waker_.Wait(seen, absl::Milliseconds(100));
    }
    return status;
  }

  // A lending sink gives slice z's buffer back (any thread): it may take a later slice.
  void Release(int64_t z) {
    {
      std::lock_guard lock(lent_mutex_);
      SlotFor(z).lent = false;
    }
    source_.Done(z);
    waker_.Wake();
  }

 private:
  struct Slot {
    cv::Mat own_in, own_out;  // the engine's buffers, allocated on first use and reused
    uint8_t* in = nullptr;    // where slice z is read (own_in, lent, or the sink's buffer)
    uint8_t* out = nullptr;   // where its result is made
    bool in_lent = false;     // `in` is the source's: nothing to read
    bool lent = false;        // written to a lending sink and not given back yet
  };
  Slot& SlotFor(int64_t z) { return slots_[static_cast<size_t>(z % std::ssize(slots_))]; }

  int Lent() {
    std::lock_guard lock(lent_mutex_);
    return static_cast<int>(
        std::count_if(slots_.begin(), slots_.end(), [](const Slot& slot) { return slot.lent; }));
  }

  // Bursts of the pipeline until every slice is written or an error. Between bursts (the
  // source or the sink waits on someone else) the calling thread waits outside the arena,
  // holding none of its threads, and polls the cancel token now and then.
  absl::Status Slices() {
    while (true) {
      const uint64_t seen = waker_.generation();
      stalled_ = false;
      Burst();
      if (error_.failed()) return error_.Take();
      if (next_ == depth_) return absl::OkStatus();
      if (IsCancelled(options_.cancel)) return CancelledAt(next_);
      if (stalled_) waker_.Wait(seen, absl::Milliseconds(100));
    }
  }

  void Burst() {
    auto run = [&] {
      tbb::parallel_pipeline(
          slots_.size(),
          tbb::make_filter<void, int64_t>(tbb::filter_mode::serial_in_order,
                                          [&](tbb::flow_control& flow) { return Next(flow); }) &
              tbb::make_filter<int64_t, int64_t>(tbb::filter_mode::parallel,
                                                 [&](int64_t z) {
                                                   Transform(z);
                                                   return z;
                                                 }) &
              tbb::make_filter<int64_t, void>(tbb::filter_mode::serial_in_order,
                                              [&](int64_t z) { Write(z); }));
    };
    if (options_.arena != nullptr) {
      options_.arena->execute(run);
    } else {
      run();
    }
  }

  // The input stage: the next slice in order, with its buffers, once the source has it and its
  // slot is free.
  int64_t Next(tbb::flow_control& flow) {
    const int64_t z = next_;
    if (z < depth_ && IsCancelled(options_.cancel)) error_.Set(z, CancelledAt(z));
    if (z == depth_ || error_.failed()) return Stop(flow);
    // The source first: a failed feed fails the run even while the sink holds every slot.
    absl::StatusOr<bool> ready = source_.Ready(z);
    if (!ready.ok()) {
      error_.Set(z, ready.status());
      return Stop(flow);
    }
    if (!*ready) return Stall(flow);
    Slot& slot = SlotFor(z);
    {
      std::lock_guard lock(lent_mutex_);
      if (slot.lent) return Stall(flow);
    }
    if (absl::Status s = Assign(z, slot); !s.ok()) {
      error_.Set(z, std::move(s));
      return Stop(flow);
    }
    return next_++;
  }

  static int64_t Stop(tbb::flow_control& flow) {
    flow.stop();
    return -1;
  }
  int64_t Stall(tbb::flow_control& flow) {
    stalled_ = true;
    return Stop(flow);
  }

  // Where slice z is read and made: no copy where the source lends or the sink gives out.
  absl::Status Assign(int64_t z, Slot& slot) {
    uint8_t* const lent = source_.Lend(z);
    uint8_t* const given = sink_.Buffer(z);
    slot.in_lent = lent != nullptr;
    try {
      if (lent != nullptr) {
        slot.in = lent;
      } else if (in_place_ && given != nullptr) {
        slot.in = given;  // read straight into the output
      } else {
        if (slot.own_in.empty()) slot.own_in = cv::Mat(in_.height, in_.width, CvType(in_.type));
        slot.in = slot.own_in.data;
      }
      const bool may_write_in = lent == nullptr || source_.lends_writable() || no_steps_;
      if (given != nullptr) {
        slot.out = given;
      } else if (in_place_ && may_write_in) {
        slot.out = slot.in;
      } else {
        if (slot.own_out.empty()) {
          slot.own_out = cv::Mat(out_.height, out_.width, CvType(out_.type));
        }
        slot.out = slot.own_out.data;
      }
    } catch (const std::exception&) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "slice ", z, ": cannot allocate ", in_.bytes() + out_.bytes(), " bytes for its buffers"));
    }
    return absl::OkStatus();
  }

  // The parallel stage: read (decode), all operations, encode.
  void Transform(int64_t z) {
    if (error_.failed()) return;
    if (IsCancelled(options_.cancel)) return error_.Set(z, CancelledAt(z));
    Slot& slot = SlotFor(z);
    absl::Status status = [&]() -> absl::Status {
      if (!slot.in_lent) STACKPROC_RETURN_IF_ERROR(source_.Read(z, slot.in));
      const cv::Mat in(in_.height, in_.width, CvType(in_.type), slot.in);
      cv::Mat out(out_.height, out_.width, CvType(out_.type), slot.out);
      STACKPROC_RETURN_IF_ERROR(runner_.Run(z, in, out));
      return sink_.Encode(z, slot.out);
    }();
    if (!status.ok()) error_.Set(z, std::move(status));
  }

  // The output stage, in z order.
  void Write(int64_t z) {
    if (error_.failed()) return;
    Slot& slot = SlotFor(z);
    if (lending_) {
      std::lock_guard lock(lent_mutex_);
      slot.lent = true;
    }
    if (absl::Status s = sink_.Write(z, slot.out); !s.ok()) {
      if (lending_) Release(z);
      return error_.Set(z, std::move(s));
    }
    progress_.SliceDone();
    if (!lending_) source_.Done(z);
  }

  SliceSource& source_;
  SliceSink& sink_;
  const RunOptions& options_;
  ProgressReporter& progress_;
  Waker& waker_;
  SliceRunner runner_;
  const SliceFormat in_, out_;
  const bool in_place_, no_steps_, lending_;
  const int64_t depth_;
  std::vector<Slot> slots_;
  std::mutex lent_mutex_;
  FirstError error_;
  int64_t next_ = 0;  // the input stage's (serial)
  bool stalled_ = false;
};

struct ReleaseHub {
  std::mutex mutex;
  Pass* pass = nullptr;
};

// Steps [first, last) of `pipeline` (planned as `formats`) from `source` into `sink`, which is
// opened for `output`, then closed once `ending` (if any) has ended.
absl::Status RunPass(SliceSource& source, Pipeline& pipeline,
                     const std::vector<SliceFormat>& formats, size_t first, size_t last,
                     SliceSink& sink, const StackInfo& output, const RunOptions& options,
                     ProgressReporter& progress, const std::shared_ptr<Waker>& waker,
                     SliceSource* ending) {
  const std::vector<SliceFormat> pass_formats(formats.begin() + static_cast<ptrdiff_t>(first),
                                              formats.begin() + static_cast<ptrdiff_t>(last) + 1);
  const WindowPlan plan = PlanWindow(pass_formats, output.shape.depth, options.window_bytes,
                                     Concurrency(options), source.traits(), sink.traits());
  Pass pass(source, pipeline, formats, first, last, sink, options, progress, *waker,
            plan.window_slices);
  auto hub = std::make_shared<ReleaseHub>();
  hub->pass = &pass;
  auto release = [hub](int64_t z) {
    std::lock_guard lock(hub->mutex);
    if (hub->pass != nullptr) hub->pass->Release(z);
  };
  absl::Status status = source.Start(waker, plan.window_slices);
  if (status.ok()) status = sink.Open(output, plan.window_slices, release);
  if (status.ok()) status = pass.Run(ending);
  {
    std::lock_guard lock(hub->mutex);
    hub->pass = nullptr;
  }
  STACKPROC_RETURN_IF_ERROR(status);
  return sink.Close();
}

}  // namespace

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
      if (Stack* s = current->writable_stack(); s != nullptr && formats[first] == f) {
        keep.Adopt(*s);  // the pass runs in place
      }
      STACKPROC_RETURN_IF_ERROR(RunPass(*current, pipeline, formats, first, barrier, keep, kept,
                                        options, progress, waker, nullptr));
      held.emplace(keep.Take(), /*writable=*/true);  // frees the stack held before
      current = &*held;
    }
    STACKPROC_RETURN_IF_ERROR(pipeline.PrepareForStack(barrier, *current->stack()));
    first = barrier;
  }
  if (Stack* s = current->writable_stack(); s != nullptr && formats[first] == formats.back()) {
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
  const cv::Mat probe(1, 1, CvType(in.type), cv::Scalar(0));
  std::vector<uint64_t> stats;
  if (!pipeline.step(steps[0]).op->AddStats(probe, stats)) {
    return absl::InvalidArgumentError(
        absl::StrCat(pipeline.step(steps[0]).spec, " takes ", PixelTypeName(in.type),
                     " pixels, whose statistics do not add up over ranges gathered apart"));
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
  STACKPROC_RETURN_IF_ERROR(pipeline.Bind(in.metadata.dims, in.shape.depth));
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
