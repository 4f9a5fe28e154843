// Runs a pipeline over a stack on a oneTBB arena: slices in parallel, all operations of one
// slice fused back to back on that slice, progress at a bounded rate, cancellation between
// slices, an error on one slice ending the run with that slice named.
#pragma once

#include <tbb/task_arena.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/cancel.h"
#include "core/pipeline.h"
#include "core/stack.h"

namespace stackproc::core {

struct Progress {
  int64_t slices_done = 0;
  int64_t slices_total = 0;  // depth x passes (a whole-stack operation adds a pass)
  uint64_t bytes_done = 0;   // input bytes of the slices done
  uint64_t bytes_total = 0;
  absl::Duration elapsed;
  std::optional<absl::Duration> eta;  // once a slice is done
};

// Called from worker threads, never concurrently with itself, at most once per interval, and
// once more at the end of a successful run with slices_done == slices_total.
using ProgressCallback = std::function<void(const Progress&)>;

struct ExecuteOptions {
  tbb::task_arena* arena = nullptr;  // nullptr: the calling thread's arena (all cores)
  const CancelToken* cancel = nullptr;
  ProgressCallback on_progress;
  absl::Duration progress_interval = absl::Milliseconds(250);
};

// The executor parallelises over slices; OpenCV's own parallel loops run in a TBB arena of
// their own that would ignore `arena`'s concurrency and oversubscribe the cores. So
// UseOnlyTheExecutorsThreads() (called by Execute) sets cv::setNumThreads(1) once per process.
void UseOnlyTheExecutorsThreads();

// Slices in flight per thread when a job streams (PlanPagePipeline, SliceStream): one being
// processed and one being read or written keep the threads busy. A larger window only costs
// memory, and fresh memory is slow to fault in (1 GiB uint8 stack, 2 threads, file to file:
// 4 slices 0.65 s, 32 slices 0.93 s; streamed over loopback: 2-16 slices 1.0-1.1 GB/s, 64
// slices 0.76 GB/s).
inline constexpr int kSlicesPerThread = 2;

// Runs `pipeline` over every slice of `input`. When no step changes the slice format the result
// is written in place and the returned stack is `input`'s buffer; otherwise one output stack is
// allocated. Whole-stack operations (normalize:scope=stack) get their statistics in a pass over
// their input before their slices run. The returned stack's metadata is updated for the new
// geometry and type.
//
// Errors: InvalidArgument when the pipeline cannot take the stack (before any slice runs);
// Cancelled; the first slice error, as "slice Z: SPEC: reason" (Internal for an exception from
// an operation, ResourceExhausted for an allocation failure). On error nothing is returned: an
// in-place run may have changed some slices of the consumed input.
absl::StatusOr<Stack> Execute(Stack input, Pipeline& pipeline, const ExecuteOptions& options = {});

// The most stack memory Execute holds at once for a stack of `shape` whose slices go through
// `formats` (Pipeline::Plan): the input, plus one output stack while a step changes the format.
absl::StatusOr<uint64_t> ExecutePeakBytes(const StackShape& shape,
                                          const std::vector<SliceFormat>& formats);

}  // namespace stackproc::core
