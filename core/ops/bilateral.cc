#include <opencv2/imgproc.hpp>

#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{
      "bilateral",
      "edge-preserving bilateral filter (cv::bilateralFilter; uint16 is filtered in float32)",
      {IntParam("d", 5, 1, 25, "neighbourhood diameter in pixels"),
       DoubleParam("sigma_color", 25, 0.001, 1e6, "range sigma, in pixel value units"),
       DoubleParam("sigma_space", 5, 0.001, 1000, "spatial sigma, in pixels")},
      {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32}};
  return info;
}

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  const int d = p.Int("d");
  const double sigma_color = p.Double("sigma_color");
  const double sigma_space = p.Double("sigma_space");
  return MakeFormatPreserving(Info(), [=](const cv::Mat& src, cv::Mat& dst) {
    if (src.depth() != CV_16U) {
      cv::bilateralFilter(src, dst, d, sigma_color, sigma_space);
      return;
    }
    // OpenCV has no 16-bit bilateral: filter in float32, round back.
    cv::Mat in, out;
    src.convertTo(in, CV_32F);
    cv::bilateralFilter(in, out, d, sigma_color, sigma_space);
    out.convertTo(dst, CV_16U);
  });
}

}  // namespace

OperationDef BilateralOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
