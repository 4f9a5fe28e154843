// Runs a fused run of pipeline steps on one slice: each step's output feeds the next, the
// intermediates live in per-thread scratch slices allocated on first use and kept, and the last
// step writes straight into the caller's output slice. The engine's parallel stage runs one per
// slice.
#pragma once

#include <tbb/enumerable_thread_specific.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <opencv2/core/mat.hpp>
#include <vector>

#include "absl/status/status.h"
#include "core/pipeline/pipeline.h"

namespace stackproc::core {

class SliceRunner {
 public:
  // Steps [first, last) of `pipeline`, whose planned formats are `formats` (Pipeline::Plan).
  // Both must outlive the runner.
  SliceRunner(Pipeline& pipeline, const std::vector<SliceFormat>& formats, size_t first,
              size_t last);

  // Runs the steps on slice `z` (named in errors): `in` has formats[first], `out` is an
  // allocated slice of formats[last] and may be `in` itself (a single step then writes an
  // intermediate that is copied back: an operation writes beside what it reads). Thread-safe
  // for distinct slices.
  // Internal for an exception from an operation, ResourceExhausted for an allocation failure,
  // each as "slice Z: SPEC: reason".
  absl::Status Run(int64_t z, const cv::Mat& in, cv::Mat& out);

  // The input plane `dz` z-slices from the one made (0: that one), mirrored at its volume's
  // ends; valid for |dz| up to the first step's SliceOp::HaloPlanes().
  using Around = std::function<const cv::Mat&(int64_t dz)>;
  // Runs the steps on slice `z` when the first needs a z-neighbourhood: it takes the planes
  // `around` gives (SliceOp::ApplyPlanes), the others `z`'s result as Run does. `out` is not
  // one of those planes. Errors as Run's.
  absl::Status RunAround(int64_t z, const Around& around, cv::Mat& out);

 private:
  // Steps [from, last_) on `in`; `call(op, dst)` applies step `from`'s op when given.
  absl::Status Steps(int64_t z, size_t from, const cv::Mat& in, cv::Mat& out,
                     const std::function<void(const SliceOp&, cv::Mat&)>& first = nullptr);

  Pipeline& pipeline_;
  const std::vector<SliceFormat>& formats_;
  const size_t first_, last_;
  tbb::enumerable_thread_specific<std::vector<cv::Mat>> scratch_;
  tbb::enumerable_thread_specific<std::vector<cv::Mat>> around_;  // RunAround's planes
};

// An uninitialised cv::Mat of format `f`.
cv::Mat MakeMat(const SliceFormat& f);

}  // namespace stackproc::core
