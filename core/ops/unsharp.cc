#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{
      "unsharp",
      "unsharp mask: src + amount * (src - gaussian(src, sigma)), saturated",
      {DoubleParam("sigma", 1.0, 0.1, 100, "blur standard deviation, in pixels"),
       DoubleParam("amount", 1.0, 0, 20, "strength of the sharpening")},
      {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32}};
  return info;
}

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  const double sigma = p.Double("sigma");
  const double amount = p.Double("amount");
  return MakeFormatPreserving(Info(), [sigma, amount](const cv::Mat& src, cv::Mat& dst) {
    cv::Mat blurred;
    cv::GaussianBlur(src, blurred, cv::Size(0, 0), sigma, sigma);
    cv::addWeighted(src, 1.0 + amount, blurred, -amount, 0.0, dst);
  });
}

}  // namespace

OperationDef UnsharpOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
