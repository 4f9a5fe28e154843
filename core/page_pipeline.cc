#include "core/page_pipeline.h"

#include <tbb/parallel_pipeline.h>

#include <algorithm>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/first_error.h"
#include "core/progress_reporter.h"
#include "core/slice_runner.h"

namespace stackproc::core {
namespace {

// One slice in flight: its buffers are allocated on first use and reused by every later slice
// that takes the slot.
struct Slot {
  cv::Mat in, out;  // out aliases in when the pipeline keeps the format
  TiffPageWriter::EncodedPage encoded;
};

}  // namespace

PagePipelinePlan PlanPagePipeline(const std::vector<SliceFormat>& formats, int64_t depth,
                                  uint64_t window_bytes, int concurrency, bool compressed) {
  concurrency = std::max(concurrency, 1);
  const bool in_place = formats.front() == formats.back();
  const uint64_t out = formats.back().bytes();
  // Input, output (unless in place) and the compressed strips (the output's size at worst).
  const uint64_t slot = formats.front().bytes() + (in_place ? 0 : out) + (compressed ? out : 0);
  const int64_t most =
      std::min<int64_t>(std::max<int64_t>(depth, 1), int64_t{kSlicesPerThread} * concurrency);
  PagePipelinePlan plan;
  plan.window_slices = std::clamp<int64_t>(static_cast<int64_t>(window_bytes / slot), 1, most);
  uint64_t scratch = 0;  // per thread: one intermediate slice per step
  for (size_t i = 1; i < formats.size(); ++i) scratch += formats[i].bytes();
  plan.memory_bytes = static_cast<uint64_t>(plan.window_slices) * slot +
                      scratch * static_cast<uint64_t>(concurrency);
  return plan;
}

absl::Status RunPagePipeline(TiffPageReader& reader, Pipeline& pipeline,
                             const std::vector<SliceFormat>& formats, TiffPageWriter& writer,
                             const PagePipelineOptions& options) {
  if (pipeline.NeedsWholeStack()) {
    return absl::InvalidArgumentError(
        absl::StrCat(pipeline.ToString(), " needs the whole stack: it cannot run page by page"));
  }
  UseOnlyTheExecutorsThreads();
  const int64_t depth = reader.info().shape.depth;
  const PagePipelinePlan plan =
      PlanPagePipeline(formats, depth, options.window_bytes,
                       options.arena != nullptr ? options.arena->max_concurrency()
                                                : tbb::this_task_arena::max_concurrency(),
                       writer.compressed());
  // Slice z uses slot z % window. The last stage runs in slice order and a slice enters only
  // while fewer than `window` are in flight, so slice z + window starts after slice z is written.
  std::vector<Slot> slots(static_cast<size_t>(plan.window_slices));
  SliceRunner runner(pipeline, formats, 0, pipeline.size());
  ProgressReporter progress(options.on_progress, options.progress_interval, depth,
                            reader.slice_bytes());
  FirstError error;
  const bool in_place = formats.front() == formats.back();
  int64_t next = 0;

  // Decodes, processes and compresses slice z: any worker, many slices at once.
  auto transform = [&](int64_t z) -> absl::Status {
    Slot& slot = slots[static_cast<size_t>(z % plan.window_slices)];
    if (slot.in.empty()) {
      try {
        slot.in = MakeMat(formats.front());
        slot.out = in_place ? slot.in : MakeMat(formats.back());
      } catch (const std::exception&) {
        slot.in.release();
        return absl::ResourceExhaustedError(absl::StrCat(
            "slice ", z, ": cannot allocate ", formats.front().bytes() + formats.back().bytes(),
            " bytes for its buffers"));
      }
    }
    if (absl::Status s = reader.ReadPage(z, slot.in.data); !s.ok()) return s;
    if (absl::Status s = runner.Run(z, slot.in, slot.out); !s.ok()) return s;
    return writer.Encode(slot.out.data, slot.encoded);
  };

  auto run = [&] {
    tbb::parallel_pipeline(
        static_cast<size_t>(plan.window_slices),
        tbb::make_filter<void, int64_t>(tbb::filter_mode::serial_in_order,
                                        [&](tbb::flow_control& flow) -> int64_t {
                                          if (next < depth && IsCancelled(options.cancel)) {
                                            error.Set(next, absl::CancelledError("cancelled"));
                                          }
                                          if (next == depth || error.failed()) {
                                            flow.stop();
                                            return -1;
                                          }
                                          return next++;
                                        }) &
            tbb::make_filter<int64_t, int64_t>(tbb::filter_mode::parallel,
                                               [&](int64_t z) {
                                                 if (error.failed()) return z;
                                                 if (absl::Status s = transform(z); !s.ok()) {
                                                   error.Set(z, std::move(s));
                                                 }
                                                 return z;
                                               }) &
            tbb::make_filter<int64_t, void>(tbb::filter_mode::serial_in_order, [&](int64_t z) {
              if (error.failed()) return;
              const Slot& slot = slots[static_cast<size_t>(z % plan.window_slices)];
              if (absl::Status s = writer.WriteEncoded(slot.encoded); !s.ok()) {
                return error.Set(z, std::move(s));
              }
              progress.SliceDone();
            }));
  };
  if (options.arena != nullptr) {
    options.arena->execute(run);
  } else {
    run();
  }
  if (absl::Status s = error.Take(); !s.ok()) return s;
  progress.Finish();
  return absl::OkStatus();
}

}  // namespace stackproc::core
