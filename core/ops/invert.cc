#include <opencv2/core.hpp>

#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{"invert",
                                  "full scale minus value (255, 65535, or 1.0 for float32)",
                                  {},
                                  {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32}};
  return info;
}

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues&) {
  return MakeFormatPreserving(Info(), [](const cv::Mat& src, cv::Mat& dst) {
    if (src.depth() == CV_32F) {
      cv::subtract(1.0, src, dst);
    } else {
      cv::bitwise_not(src, dst);  // ~v == full - v for unsigned integers
    }
  });
}

}  // namespace

OperationDef InvertOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
