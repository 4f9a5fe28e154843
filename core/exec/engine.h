// The one engine: every job is a SliceSource, a Pipeline and a SliceSink.
//
//   [serial, z order]  source: the next slice and its buffers
//   [parallel]         source.Read (decode), all operations of the slice back to back,
//                      sink.Encode (compress)
//   [serial, z order]  sink.Write (append a page, keep a slice, send it)
//
// one bounded tbb::parallel_pipeline over a window of slice buffers that are reused: memory is
// the window, whatever the depth. A source that holds its slices in memory lends them and a
// sink that keeps them gives out its own buffers, so an in-memory run copies nothing (and runs
// in place when the format does not change). A whole-stack step (normalize:scope=stack) is a
// barrier in the plan: the slices up to it are kept in a stack, the step gets its statistics,
// then the run goes on from that stack; never a second engine.
#pragma once

#include <tbb/task_arena.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/base/cancel.h"
#include "core/pipeline/pipeline.h"
#include "core/stack/stack.h"

namespace stackproc::core {

struct Progress {
  int64_t slices_done = 0;
  int64_t slices_total = 0;  // depth x passes (a whole-stack barrier adds a pass)
  uint64_t bytes_done = 0;   // input bytes of the slices done
  uint64_t bytes_total = 0;
  absl::Duration elapsed;
  std::optional<absl::Duration> eta;  // once a slice is done
};

// Called from worker threads, never concurrently with itself, at most once per interval, and
// once more at the end of a successful run with slices_done == slices_total.
using ProgressCallback = std::function<void(const Progress&)>;

// Wakes a run that waits on a source or a sink (Ready() said "not yet", or a lent slice is
// still out). Thread-safe; Wake may be called from any thread, at any time.
class Waker {
 public:
  void Wake();
  // The number of wakes so far; Wait returns once it differs from `seen` or `timeout` passes.
  uint64_t generation() const;
  void Wait(uint64_t seen, absl::Duration timeout) const;

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  uint64_t generation_ = 0;
};

// What sources and sinks do with memory, for the window plan (PlanWindow).
struct SourceTraits {
  bool in_memory = false;  // lends its slices: no input buffers
  bool fed = false;        // fed from outside: holds the window's input buffers and one more
  // Decodes slices by z-chunks of this many (a chunked store): holds every z-chunk that a slice
  // in flight falls in, until its slices are read.
  int64_t chunk_slices = 1;
  // Planes it can also read before its first and after its last (a z-range's neighbours in the
  // whole stack): a z-neighbourhood's planes past the range are read there, never mirrored.
  // Ready, Read, Lend and Done then take z in [-context_before, depth + context_after).
  int64_t context_before = 0;
  int64_t context_after = 0;
};
struct SinkTraits {
  bool in_memory = false;   // gives out its buffers: no output buffers
  bool compressed = false;  // holds each slice's compressed strips (at most the slice's size)
  bool lends = false;       // keeps written slices a while: one more slice in the window
  // Output slices it holds besides the window: a z-chunk it gathers, a pyramid's levels.
  int64_t held_slices = 0;
};

// Where slices come from: TIFF pages, a stack in memory, a network upload.
class SliceSource {
 public:
  virtual ~SliceSource() = default;
  virtual const StackInfo& info() const = 0;
  virtual SourceTraits traits() const { return {}; }

  // A source that holds its slices in memory lends them: slice z's bytes, or nullptr (then
  // Read fills a buffer of the engine's). Lent slices are only read, unless lends_writable().
  virtual uint8_t* Lend(int64_t z) { return (void)z, nullptr; }
  virtual bool lends_writable() const { return false; }
  // The whole stack, when the source is one in memory: a whole-stack step reads it as it is.
  // A writable source also lets the run hand its buffer on (SliceSink::Adopt).
  virtual const Stack* stack() const { return nullptr; }
  virtual Stack* writable_stack() { return nullptr; }

  // Called when a pass starts, with how many slices it has in flight at most; `waker`
  // may be kept past the run (a call may wake it late: nothing waits on it then). Errors end
  // the run before anything is read.
  virtual absl::Status Start(std::shared_ptr<Waker> waker, int64_t window_slices) {
    return (void)waker, (void)window_slices, absl::OkStatus();
  }
  // Called in z order, one slice at a time and never concurrently with itself, before Read(z)
  // and Lend(z): whether slice z can be read now. A source that waits on someone else (a
  // network upload) returns false and calls waker.Wake() when that may have changed; the run
  // then asks again, holding no thread of the arena meanwhile. Once every slice is through,
  // Ready(depth) asks whether the source has ended cleanly (an upload: nothing came after the
  // last slice); an error there fails the run. That is asked at the end of the run's last
  // pass (after a whole-stack barrier, once the results are through), before the sink closes.
  virtual absl::StatusOr<bool> Ready(int64_t z) { return (void)z, true; }
  // Fills `buffer` (the input slice's bytes) with slice z. Called concurrently for distinct
  // slices (decoding is the parallel stage's), never for a lent slice.
  virtual absl::Status Read(int64_t z, uint8_t* buffer) = 0;
  // The run is done with slice z (written, and given back by a lending sink): a source that
  // lends its own buffers may reuse that one. Any thread.
  virtual void Done(int64_t z) { (void)z; }
};

// Where slices go: a TIFF file, a stack in memory, a network download.
class SliceSink {
 public:
  virtual ~SliceSink() = default;
  virtual SinkTraits traits() const { return {}; }
  // A sink that keeps the result in memory may take over `stack` (the input of the last pass,
  // of the output's format and shape) to make the result in place. Before Open.
  virtual void Adopt(Stack& stack) { (void)stack; }
  // Called once per run, before any slice, with what the output is and how many slices are in
  // flight at most. A lending sink (traits().lends) calls `release(z)` (any thread) when it no
  // longer needs written slice z. Errors end the run before anything is read.
  virtual absl::Status Open(const StackInfo& output, int64_t window_slices,
                            std::function<void(int64_t)> release) = 0;
  // Where result slice z should be made (a sink that keeps slices gives out its own memory),
  // or nullptr for a buffer of the engine's.
  virtual uint8_t* Buffer(int64_t z) { return (void)z, nullptr; }
  // Per-slice work before the ordered write (compression). Called concurrently for distinct
  // slices; what it makes for slice z lives in the sink's slot z % window_slices.
  virtual absl::Status Encode(int64_t z, const uint8_t* data) {
    return (void)z, (void)data, absl::OkStatus();
  }
  // Appends result slice z; in z order, one at a time. A lending sink may keep `data` after
  // it returns, until it calls `release(z)`; the engine does not reuse that buffer until then.
  virtual absl::Status Write(int64_t z, const uint8_t* data) = 0;
  // The run failed: a lending sink gives back what it holds as soon as it can (the run waits
  // for every written slice to come back before it returns).
  virtual void Abandon() {}
  // After the last slice: makes the output whole (a file is renamed into place). A sink that
  // is destroyed without Close leaves nothing behind.
  virtual absl::Status Close() = 0;
};

// Slices in flight per thread: one being processed and one being read or written keep the
// threads busy. A larger window only costs memory, and fresh memory is slow to fault in (1 GiB
// uint8 stack, 2 threads, file to file: 4 slices 0.65 s, 32 slices 0.93 s; streamed over
// loopback: 2-16 slices 1.0-1.1 GB/s, 64 slices 0.76 GB/s).
inline constexpr int kSlicesPerThread = 2;
// The memory a run's window may hold unless told otherwise (stackprocd --stream-window,
// stackproc-local --window-mib).
inline constexpr uint64_t kDefaultWindowBytes = uint64_t{256} << 20;

// Whether a pass over slices of `formats` (Pipeline::Plan: the input's, then each step's
// output) makes each result in its input's buffer: the two have one format and the pass has no
// step, or two and more (passed on through each thread's intermediate slices). A single step
// writes beside its input, into a buffer of the slot's own: made in place, its result would
// need a copy back.
bool MakesOutputInPlace(const std::vector<SliceFormat>& formats);

// The one window planner: how many slices a run of slices of `formats` (Pipeline::Plan) keeps
// in flight within `window_bytes` (at least one, at most kSlicesPerThread per thread), and the
// memory it holds: the window's buffers plus every thread's intermediate slices.
//
// A step with a z-neighbourhood of h planes on each side (`halos`: each step's, Pipeline::
// HaloOf; empty: none) keeps its input planes in a ring of window + 2h planes, and a pass with
// one makes no result in place. `halo_bytes` is what the rings hold with a window of one: more
// than `window_bytes`, and the run is refused.
struct WindowPlan {
  int64_t window_slices = 1;
  uint64_t memory_bytes = 0;
  uint64_t halo_bytes = 0;
};
WindowPlan PlanWindow(const std::vector<SliceFormat>& formats, int64_t depth, uint64_t window_bytes,
                      int concurrency, SourceTraits source, SinkTraits sink,
                      const std::vector<int64_t>& halos = {});

// ResourceExhausted, naming the pipeline and both sizes, when the rings of
// `pipeline`'s z-neighbourhoods (`plan`, PlanWindow's with its Halos) do not fit in
// `window_bytes`: the run is refused before anything is read.
absl::Status CheckHaloFits(const Pipeline& pipeline, const WindowPlan& plan, uint64_t window_bytes);

// The passes a run of `pipeline` makes, as ranges of steps [first, last): one, or one more
// from each whole-stack step (unless its statistics are given: RunOptions::stack_stats); the
// first is empty when the first step is one (the input read into a stack).
std::vector<std::pair<size_t, size_t>> PassesOf(const Pipeline& pipeline, bool stats_given);

// The most memory the stacks a run keeps hold at once for a stack of `shape` going through
// `formats`: the input, plus one output stack while a step changes the format. What an
// in-memory run (a result kept, a whole-stack step) needs besides its window.
absl::StatusOr<uint64_t> StackPeakBytes(const StackShape& shape,
                                        const std::vector<SliceFormat>& formats);

// The most memory a run of `pipeline` (planned as `formats`) over `depth` slices holds: its
// window, and with a whole-stack step the stacks it keeps (StackPeakBytes) and the window of
// the pass that fills the first of them.
absl::StatusOr<uint64_t> PlanRunMemory(const Pipeline& pipeline,
                                       const std::vector<SliceFormat>& formats, int64_t depth,
                                       uint64_t window_bytes, int concurrency, SourceTraits source,
                                       SinkTraits sink);

struct RunOptions {
  tbb::task_arena* arena = nullptr;  // nullptr: the calling thread's arena (all cores)
  const CancelToken* cancel = nullptr;
  ProgressCallback on_progress;
  absl::Duration progress_interval = absl::Milliseconds(250);
  // The most memory for the slices in flight (PlanWindow).
  uint64_t window_bytes = kDefaultWindowBytes;
  // The statistics of the pipeline's StatsStep summed over every slice (GatherStats of the
  // stack's ranges, added up): that step takes them, and the run streams in one pass instead
  // of holding its input.
  const std::vector<uint64_t>* stack_stats = nullptr;
  // What made the output, for its writer to record (provenance.h); nullopt: it records nothing
  // (an input's own record is never passed on as the output's).
  std::optional<Provenance> provenance;
};

// What `pipeline` makes of a stack `in` (its slices' size and type, its metadata updated for
// the pipeline's geometry and type), the pipeline bound to its channels: what Run gives a sink.
absl::StatusOr<StackInfo> OutputInfoOf(const StackInfo& in, Pipeline& pipeline);

// Runs `pipeline` over every slice of `source` into `sink`, then closes the sink. The output's
// metadata is the source's updated for the pipeline's geometry and type, with options.provenance.
// Blocks until done.
//
// Errors: InvalidArgument when the pipeline cannot take the source's slices (before anything
// is read); Cancelled; the first error of a slice, as "slice Z: ..." (Internal for an exception
// from an operation, ResourceExhausted for an allocation failure), of the source or of the
// sink. On error the sink is not closed: the caller drops it, which leaves nothing behind.
absl::Status Run(SliceSource& source, Pipeline& pipeline, SliceSink& sink,
                 const RunOptions& options = {});

// The most values statistics gathered apart may have (a statistics file's counts: 16-bit
// histograms, one per channel, fit many times; flatfield's sums, one per pixel and channel, up
// to 2048 x 2048 x 4).
inline constexpr size_t kMaxStatsValues = size_t{1} << 24;

// The step whose statistics a run can take from z-ranges gathered apart: the pipeline's one
// whole-stack step, when its input's statistics add up (SliceOp::AddStats; `formats` from
// Pipeline::Plan). InvalidArgument saying why not: no whole-stack step, several, one whose
// statistics do not add up (float pixels), or more of them than kMaxStatsValues.
absl::StatusOr<size_t> StatsStep(const Pipeline& pipeline, const std::vector<SliceFormat>& formats);

// The StatsStep's statistics over every slice of `source` (the steps before it run on each
// slice; nothing is written): what one range adds to the others' (RunOptions::stack_stats).
absl::StatusOr<std::vector<uint64_t>> GatherStats(SliceSource& source, Pipeline& pipeline,
                                                  const RunOptions& options = {});

// The run parallelises over slices; OpenCV's own parallel loops run in a TBB arena of their own
// that would ignore the run's arena and oversubscribe the cores. So this (called by Run) sets
// cv::setNumThreads(1) once per process.
void UseOnlyTheEnginesThreads();

}  // namespace stackproc::core
