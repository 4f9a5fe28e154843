// Shared pieces of the built-in operations (internal to core/ops).
#pragma once

#include <tbb/enumerable_thread_specific.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "core/pipeline/operation.h"

namespace stackproc::core::ops {

// An operation that keeps the slice format and applies `apply` to each slice.
class FormatPreservingOp : public SliceOp {
 public:
  using ApplyFn = std::function<void(const cv::Mat& src, cv::Mat& dst)>;
  FormatPreservingOp(const OperationInfo& info, ApplyFn apply, std::string type_hint = "")
      : info_(info), apply_(std::move(apply)), type_hint_(std::move(type_hint)) {}

  absl::StatusOr<SliceFormat> OutputFormat(const SliceFormat& in) const override {
    if (absl::Status s = CheckPixelType(info_, in.type, type_hint_); !s.ok()) return s;
    return in;
  }
  void Apply(const cv::Mat& src, cv::Mat& dst) const override { apply_(src, dst); }

 private:
  const OperationInfo& info_;
  ApplyFn apply_;
  std::string type_hint_;
};

inline absl::StatusOr<std::unique_ptr<SliceOp>> MakeFormatPreserving(
    const OperationInfo& info, FormatPreservingOp::ApplyFn apply, std::string type_hint = "") {
  return std::make_unique<FormatPreservingOp>(info, std::move(apply), std::move(type_hint));
}

// Per-thread scratch of an operation (Apply is const and runs on many threads at once), freed
// with the operation rather than kept by the threads.
template <typename T>
class Scratch {
 public:
  T& local() const { return slots_.local(); }

 private:
  mutable tbb::enumerable_thread_specific<T> slots_;
};

// scipy.ndimage's Gaussian kernel (radius int(truncate x sigma + 0.5), normalised) as a column
// of `depth` (CV_32F or CV_64F): gaussian3d's and flatfield's, so that both match scipy.
cv::Mat ScipyGaussianKernel(double sigma, double truncate, int depth);

// InvalidArgument "<op>: <message>".
absl::Status ParamError(const OperationInfo& info, absl::string_view message);

// Kernel sizes that must be odd.
absl::Status CheckOdd(const OperationInfo& info, const std::string& param, int value);

}  // namespace stackproc::core::ops
