// One pass of the engine (Run in engine.h): steps [first, last) of a pipeline from a source into
// a sink, over a window of slices. Internal to core/exec.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "core/exec/engine.h"
#include "core/exec/progress_reporter.h"

namespace stackproc::core {

// The threads a run has: its arena's, or the calling thread's arena's.
int Concurrency(const RunOptions& options);

// Steps [first, last) of `pipeline` (planned as `formats`, bound to the source's planes) from
// `source` into `sink`, which is opened for `output`, then closed once `ending` (if any, the
// run's own source on its last pass) has ended. A step with a z-neighbourhood (SliceOp::
// HaloPlanes) takes its planes from a ring of its input planes; planes a source reads past its
// ends (SourceTraits::context_before/after) are only neighbours, never written.
absl::Status RunPass(SliceSource& source, Pipeline& pipeline,
                     const std::vector<SliceFormat>& formats, size_t first, size_t last,
                     SliceSink& sink, const StackInfo& output, const RunOptions& options,
                     ProgressReporter& progress, const std::shared_ptr<Waker>& waker,
                     SliceSource* ending);

}  // namespace stackproc::core
