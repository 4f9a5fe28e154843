#include <opencv2/imgproc.hpp>

#include "absl/strings/str_cat.h"
#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{
      "gaussian",
      "Gaussian blur (cv::GaussianBlur, reflect-101 border)",
      {OnlyWhenGiven(IntParam("ksize", 5, 0, 255, "kernel side, odd; 0 derives it from sigma")),
       OnlyWhenGiven(
           DoubleParam("sigma", 0, 0, 100, "standard deviation; 0 derives it from ksize"))},
      {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32}};
  return info;
}

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  const double sigma = p.Double("sigma");
  // "gaussian:sigma=2" means a kernel sized for sigma 2, not the default 5x5 one.
  const int ksize = p.IsSet("sigma") && !p.IsSet("ksize") ? 0 : p.Int("ksize");
  if (ksize == 0 && sigma == 0) return ParamError(Info(), "set ksize or sigma (both are 0)");
  if (ksize != 0) {
    if (absl::Status s = CheckOdd(Info(), "ksize", ksize); !s.ok()) return s;
  }
  return MakeFormatPreserving(Info(), [ksize, sigma](const cv::Mat& src, cv::Mat& dst) {
    cv::GaussianBlur(src, dst, cv::Size(ksize, ksize), sigma, sigma);
  });
}

}  // namespace

OperationDef GaussianOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
