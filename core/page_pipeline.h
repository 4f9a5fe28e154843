// Runs a per-slice pipeline from one TIFF file to another without holding the stack: a
// tbb::parallel_pipeline in which each slice is decoded, processed and (for deflate/zstd)
// compressed by a worker, many slices at once, while one writer appends the finished pages in
// order. At most window_slices() slices are in flight; their buffers are allocated once and
// reused, so memory does not grow with the stack's depth: a 32 GiB stack runs in the window.
#pragma once

#include <tbb/task_arena.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/cancel.h"
#include "core/executor.h"
#include "core/pipeline.h"
#include "core/tiff_reader.h"
#include "core/tiff_writer.h"

namespace stackproc::core {

struct PagePipelineOptions {
  tbb::task_arena* arena = nullptr;  // nullptr: the calling thread's arena
  const CancelToken* cancel = nullptr;
  ProgressCallback on_progress;
  absl::Duration progress_interval = absl::Milliseconds(250);
  // The most memory for the slices in flight: their input, output and compressed buffers.
  // Fewer are in flight when that is enough to keep every thread busy (PlanPagePipeline).
  uint64_t window_bytes = uint64_t{256} << 20;
};

// How many slices are in flight for slices of `formats` (Pipeline::Plan), and the memory the
// run holds at most: the window's buffers plus every thread's intermediate slices. At most
// kSlicesPerThread per thread (core/executor.h).
struct PagePipelinePlan {
  int64_t window_slices = 1;
  uint64_t memory_bytes = 0;
};
// `compressed`: the output is compressed (each slice in flight also holds its strips).
PagePipelinePlan PlanPagePipeline(const std::vector<SliceFormat>& formats, int64_t depth,
                                  uint64_t window_bytes, int concurrency, bool compressed);

// Runs `pipeline` (planned as `formats`, no whole-stack step) over every page of `reader` into
// `writer`, which must be created for the output shape and type and is left uncommitted.
// Errors: the first failing page or slice, named; Cancelled. On error some pages may have been
// written: the caller drops the writer, which removes its temporary file.
absl::Status RunPagePipeline(TiffPageReader& reader, Pipeline& pipeline,
                             const std::vector<SliceFormat>& formats, TiffPageWriter& writer,
                             const PagePipelineOptions& options);

}  // namespace stackproc::core
