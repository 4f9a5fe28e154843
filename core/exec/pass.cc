#include "core/exec/pass.h"

#include <tbb/parallel_pipeline.h>

#include <algorithm>
#include <exception>
#include <mutex>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/first_error.h"
#include "core/base/status_macros.h"
#include "core/pipeline/slice_runner.h"

namespace stackproc::core {

int Concurrency(const RunOptions& options) {
  return options.arena != nullptr ? options.arena->max_concurrency()
                                  : tbb::this_task_arena::max_concurrency();
}

namespace {

absl::Status CancelledAt(int64_t z) {
  return absl::CancelledError(absl::StrCat("cancelled at slice ", std::max<int64_t>(z, 0)));
}

// What a lending sink's release(z) reaches: the pass while it runs, nothing once it is over.
struct ReleaseHub;

// One pass: tokens through one tbb::parallel_pipeline. Token t reads the source's plane t
// (counting the planes it reads before its first: SourceTraits::context_before) and makes the
// output plane H planes behind it, H the pass's z-neighbourhoods added up:
//
//   [serial, in order]  the source's plane t ready, the slots of its input and of its output free
//   [parallel]          read plane t, the steps before the first z-neighbourhood -> ring 1
//   [serial, in order]  (every plane up to t is in ring 1)
//   [parallel]          plane t - h1 through the next steps, from ring 1's planes -> ring 2 ...
//   [parallel]          ... the last steps on plane t - H, Encode
//   [serial, in order]  Write plane t - H
//
// A z-neighbourhood's ring holds window + 2h planes: token t overwrites the plane of token
// t - window - 2h, whose last reader was token t - window, and a window's tokens live at once
// (the last stage retires them in order). Without a z-neighbourhood, H is 0 and a token's
// input and output share a slot (its result may be made in place).
class Pass {
 public:
  Pass(SliceSource& source, Pipeline& pipeline, const std::vector<SliceFormat>& formats,
       size_t first, size_t last, SliceSink& sink, const RunOptions& options,
       ProgressReporter& progress, Waker& waker, int64_t window)
      : source_(source),
        sink_(sink),
        pipeline_(pipeline),
        options_(options),
        progress_(progress),
        waker_(waker),
        in_(formats[first]),
        out_(formats[last]),
        halo_(pipeline.HaloOf(first, last)),
        in_place_(halo_ == 0 &&
                  MakesOutputInPlace({formats.begin() + static_cast<ptrdiff_t>(first),
                                      formats.begin() + static_cast<ptrdiff_t>(last) + 1})),
        no_steps_(first == last),
        lending_(sink.traits().lends),
        depth_(source.info().shape.depth),
        // A pass without a z-neighbourhood reads no planes around (a range's other passes'
        // context, or statistics gathered before the steps that need it).
        before_(halo_ > 0 ? source.traits().context_before : 0),
        planes_(before_ + depth_ + (halo_ > 0 ? source.traits().context_after : 0)),
        slots_(static_cast<size_t>(window)) {
    // The segments: one from the pass's first step, and one from each step with a
    // z-neighbourhood (the first has no steps when the pass's first step has one).
    std::vector<size_t> starts = {first};
    for (size_t i = first; i < last; ++i) {
      if (pipeline.HaloOf(i) > 0) starts.push_back(i);
    }
    int64_t lag = 0;
    for (size_t k = 0; k < starts.size(); ++k) {
      const size_t to = k + 1 < starts.size() ? starts[k + 1] : last;
      auto segment = std::make_unique<Segment>(pipeline, formats, starts[k], to);
      if (k > 0) {
        segment->halo = pipeline.HaloOf(starts[k]);
        lag += segment->halo;
        segment->ring.resize(static_cast<size_t>(window + 2 * segment->halo));
      }
      segment->lag = lag;
      segments_.push_back(std::move(segment));
    }
  }

  // Every token through, then the end of `ending` (the run's own source, on its last pass:
  // Ready(depth)); on error, what the sink still holds given back. Returns only when no slice
  // is lent: the buffers die with the pass.
  absl::Status Run(SliceSource* ending) {
    absl::Status status = Tokens();
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

  // A lending sink gives output plane z's buffer back (any thread): it may take a later one.
  void Release(int64_t z) {
    {
      std::lock_guard lock(lent_mutex_);
      SlotFor(before_ + z).lent = false;
    }
    if (halo_ == 0) source_.Done(z);
    waker_.Wake();
  }

 private:
  struct Slot {
    cv::Mat own_in, own_out;  // the engine's buffers, allocated on first use and reused
    uint8_t* in = nullptr;    // where the token's plane is read (own_in, lent, or the sink's)
    uint8_t* out = nullptr;   // where its output plane is made
    bool in_lent = false;     // `in` is the source's: nothing to read
    bool lent = false;        // written to a lending sink and not given back yet
  };
  // The steps from one z-neighbourhood step to the next (the first: from the pass's first).
  struct Segment {
    Segment(Pipeline& pipeline, const std::vector<SliceFormat>& formats, size_t from, size_t to)
        : runner(pipeline, formats, from, to), input(formats[from]) {}
    SliceRunner runner;
    const SliceFormat input;
    int64_t halo = 0;           // planes on each side its first step takes (0: the first)
    int64_t lag = 0;            // it makes the plane this many behind its token
    std::vector<cv::Mat> ring;  // its input planes (halo > 0): plane p at p % size
  };

  // The slot of token t's input, and of the output plane token t + H makes (`before_ + z` for
  // output plane z): a window's tokens use distinct ones.
  Slot& SlotFor(int64_t t) { return slots_[static_cast<size_t>(t % std::ssize(slots_))]; }
  // Whether token t's output plane (t - H - before_) is one of the output's.
  int64_t OutputOf(int64_t t) const { return t - halo_ - before_; }
  bool Writes(int64_t z) const { return z >= 0 && z < depth_; }

  int Lent() {
    std::lock_guard lock(lent_mutex_);
    return static_cast<int>(
        std::count_if(slots_.begin(), slots_.end(), [](const Slot& slot) { return slot.lent; }));
  }

  // Bursts of the pipeline until every token is through or an error. Between bursts (the
  // source or the sink waits on someone else) the calling thread waits outside the arena,
  // holding none of its threads, and polls the cancel token now and then.
  absl::Status Tokens() {
    while (true) {
      const uint64_t seen = waker_.generation();
      stalled_ = false;
      Burst();
      if (error_.failed()) return error_.Take();
      if (next_ == Total()) return absl::OkStatus();
      if (IsCancelled(options_.cancel)) return CancelledAt(OutputOf(next_));
      if (stalled_) waker_.Wait(seen, absl::Milliseconds(100));
    }
  }
  int64_t Total() const { return before_ + depth_ + halo_; }

  void Burst() {
    auto run = [&] {
      using tbb::filter_mode;
      tbb::filter<void, int64_t> chain =
          tbb::make_filter<void, int64_t>(filter_mode::serial_in_order,
                                          [&](tbb::flow_control& flow) { return Next(flow); }) &
          tbb::make_filter<int64_t, int64_t>(filter_mode::parallel, [&](int64_t t) {
            First(t);
            return t;
          });
      for (size_t k = 1; k < segments_.size(); ++k) {
        chain = chain &
                tbb::make_filter<int64_t, int64_t>(filter_mode::serial_in_order,
                                                   [](int64_t t) { return t; }) &
                tbb::make_filter<int64_t, int64_t>(filter_mode::parallel, [this, k](int64_t t) {
                  Later(k, t);
                  return t;
                });
      }
      tbb::parallel_pipeline(slots_.size(),
                             chain & tbb::make_filter<int64_t, void>(filter_mode::serial_in_order,
                                                                     [&](int64_t t) { Write(t); }));
    };
    if (options_.arena != nullptr) {
      options_.arena->execute(run);
    } else {
      run();
    }
  }

  // The input stage: the next token, with its buffers, once the source has its plane and the
  // slots are free.
  int64_t Next(tbb::flow_control& flow) {
    const int64_t t = next_;
    const int64_t z = t - before_;  // the source's plane it reads
    const int64_t o = OutputOf(t);  // the output plane it makes
    if (t < Total() && IsCancelled(options_.cancel)) error_.Set(o, CancelledAt(o));
    if (t == Total() || error_.failed()) return Stop(flow);
    // The source first: a failed feed fails the run even while the sink holds every slot.
    if (t < planes_) {
      absl::StatusOr<bool> ready = source_.Ready(z);
      if (!ready.ok()) {
        error_.Set(o, ready.status());
        return Stop(flow);
      }
      if (!*ready) return Stall(flow);
    }
    if (Writes(o)) {
      std::lock_guard lock(lent_mutex_);
      if (SlotFor(t - halo_).lent) return Stall(flow);
    }
    if (absl::Status s = Assign(t); !s.ok()) {
      error_.Set(o, std::move(s));
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

  // Where token t's plane is read and its output plane made: no copy where the source lends
  // or the sink gives out.
  absl::Status Assign(int64_t t) {
    const int64_t o = OutputOf(t);
    Slot& in = SlotFor(t);
    uint8_t* const lent = t < planes_ ? source_.Lend(t - before_) : nullptr;
    uint8_t* const given = Writes(o) ? sink_.Buffer(o) : nullptr;
    try {
      if (t < planes_) {
        in.in_lent = lent != nullptr;
        if (lent != nullptr) {
          in.in = lent;
        } else if (in_place_ && given != nullptr) {
          in.in = given;  // read straight into the output
        } else {
          if (in.own_in.empty()) in.own_in = MakeMat(in_);
          in.in = in.own_in.data;
        }
      }
      if (Writes(o)) {
        Slot& out = SlotFor(t - halo_);
        const bool may_write_in = lent == nullptr || source_.lends_writable() || no_steps_;
        if (given != nullptr) {
          out.out = given;
        } else if (in_place_ && may_write_in) {
          out.out = in.in;
        } else {
          if (out.own_out.empty()) out.own_out = MakeMat(out_);
          out.out = out.own_out.data;
        }
      }
    } catch (const std::exception&) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "slice ", o, ": cannot allocate ", in_.bytes() + out_.bytes(), " bytes for its buffers"));
    }
    return absl::OkStatus();
  }

  // Plane p of a z-neighbourhood's ring, allocated on first use.
  static absl::StatusOr<cv::Mat*> RingPlane(Segment& segment, int64_t p) {
    cv::Mat& plane = segment.ring[static_cast<size_t>(p % std::ssize(segment.ring))];
    if (plane.empty()) {
      try {
        plane = MakeMat(segment.input);
      } catch (const std::exception&) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "cannot allocate a plane of ", segment.input.bytes(), " bytes for a z-neighbourhood"));
      }
    }
    return &plane;
  }

  // The first parallel stage: read token t's plane, then the first segment's steps (and without
  // a z-neighbourhood, Encode).
  void First(int64_t t) {
    if (error_.failed() || t >= planes_) return;
    const int64_t z = t - before_;
    const int64_t o = OutputOf(t);
    if (IsCancelled(options_.cancel)) return error_.Set(o, CancelledAt(o));
    if (halo_ == 0 && !Writes(o)) return;
    Slot& slot = SlotFor(t);
    absl::Status status = [&]() -> absl::Status {
      if (!slot.in_lent) STACKPROC_RETURN_IF_ERROR(source_.Read(z, slot.in));
      const cv::Mat in(in_.height, in_.width, CvType(in_.type), slot.in);
      if (halo_ == 0) {
        cv::Mat out(out_.height, out_.width, CvType(out_.type), slot.out);
        STACKPROC_RETURN_IF_ERROR(segments_[0]->runner.Run(z, in, out));
        return sink_.Encode(o, slot.out);
      }
      STACKPROC_ASSIGN_OR_RETURN(cv::Mat * next, RingPlane(*segments_[1], t));
      STACKPROC_RETURN_IF_ERROR(segments_[0]->runner.Run(z, in, *next));
      source_.Done(z);  // in ring 1 now
      return absl::OkStatus();
    }();
    if (!status.ok()) error_.Set(o, std::move(status));
  }

  // Segment k's parallel stage: its plane (token t's, lagging) from the planes of its ring
  // around it, into the next ring, or into the output plane and Encode.
  void Later(size_t k, int64_t t) {
    if (error_.failed()) return;
    Segment& segment = *segments_[k];
    const int64_t p = t - segment.lag;
    // Only the planes the output needs: within the later segments' halos of it.
    const int64_t reach = halo_ - segment.lag;
    if (p < std::max<int64_t>(0, before_ - reach) ||
        p >= std::min(planes_, before_ + depth_ + reach)) {
      return;
    }
    const int64_t z = p - before_;
    const int64_t o = OutputOf(t);
    const bool last = k + 1 == segments_.size();
    absl::Status status = [&]() -> absl::Status {
      cv::Mat out;
      cv::Mat* dst = &out;
      if (last) {
        out = cv::Mat(out_.height, out_.width, CvType(out_.type), SlotFor(p).out);
      } else {
        STACKPROC_ASSIGN_OR_RETURN(dst, RingPlane(*segments_[k + 1], p));
      }
      // A neighbour the pass has not read (past a z-range, in a pass after a barrier, which
      // has no planes around: Run refuses that) fails the slice, never reads out of the ring.
      std::optional<int64_t> outside;
      const auto around = [&](int64_t dz) -> const cv::Mat& {
        int64_t q = pipeline_.Neighbour(z, dz) + before_;
        if (q < 0 || q >= planes_) outside = q - before_, q = p;
        return segment.ring[static_cast<size_t>(q % std::ssize(segment.ring))];
      };
      STACKPROC_RETURN_IF_ERROR(segment.runner.RunAround(z, around, *dst));
      if (outside) {
        return absl::InternalError(absl::StrCat("slice ", o, ": its z-neighbour ", *outside,
                                                " is not among the planes the run reads"));
      }
      return last ? sink_.Encode(o, out.data) : absl::OkStatus();
    }();
    if (!status.ok()) error_.Set(o, std::move(status));
  }

  // The output stage, in order.
  void Write(int64_t t) {
    const int64_t o = OutputOf(t);
    if (error_.failed() || !Writes(o)) return;
    Slot& slot = SlotFor(t - halo_);
    if (lending_) {
      std::lock_guard lock(lent_mutex_);
      slot.lent = true;
    }
    if (absl::Status s = sink_.Write(o, slot.out); !s.ok()) {
      if (lending_) Release(o);
      return error_.Set(o, std::move(s));
    }
    progress_.SliceDone();
    if (!lending_ && halo_ == 0) source_.Done(o);
  }

  SliceSource& source_;
  SliceSink& sink_;
  Pipeline& pipeline_;
  const RunOptions& options_;
  ProgressReporter& progress_;
  Waker& waker_;
  const SliceFormat in_, out_;
  const int64_t halo_;  // H: output plane t - H for token t
  const bool in_place_, no_steps_, lending_;
  const int64_t depth_;   // the source's planes, all written
  const int64_t before_;  // planes it reads before them (context)
  const int64_t planes_;  // the planes read: before_ + depth_ + the context after
  std::vector<Slot> slots_;
  std::vector<std::unique_ptr<Segment>> segments_;
  std::mutex lent_mutex_;
  FirstError error_;
  int64_t next_ = 0;  // the input stage's token (serial)
  bool stalled_ = false;
};

struct ReleaseHub {
  std::mutex mutex;
  Pass* pass = nullptr;
};

}  // namespace

absl::Status RunPass(SliceSource& source, Pipeline& pipeline,
                     const std::vector<SliceFormat>& formats, size_t first, size_t last,
                     SliceSink& sink, const StackInfo& output, const RunOptions& options,
                     ProgressReporter& progress, const std::shared_ptr<Waker>& waker,
                     SliceSource* ending) {
  const std::vector<SliceFormat> pass_formats(formats.begin() + static_cast<ptrdiff_t>(first),
                                              formats.begin() + static_cast<ptrdiff_t>(last) + 1);
  const WindowPlan plan =
      PlanWindow(pass_formats, output.shape.depth, options.window_bytes, Concurrency(options),
                 source.traits(), sink.traits(), pipeline.Halos(first, last));
  STACKPROC_RETURN_IF_ERROR(CheckHaloFits(pipeline, plan, options.window_bytes));
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

}  // namespace stackproc::core
