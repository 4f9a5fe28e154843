#include <opencv2/imgproc.hpp>

#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{"box",
                                  "mean over a ksize x ksize box (cv::blur)",
                                  {IntParam("ksize", 3, 1, 255, "box side")},
                                  {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32}};
  return info;
}

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  const int ksize = p.Int("ksize");
  return MakeFormatPreserving(Info(), [ksize](const cv::Mat& src, cv::Mat& dst) {
    cv::blur(src, dst, cv::Size(ksize, ksize));
  });
}

}  // namespace

OperationDef BoxOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
