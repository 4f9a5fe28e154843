#include <opencv2/core.hpp>

#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{
      "flip",
      "mirror each slice (cv::flip)",
      {ChoiceParam("axis", {"horizontal", "vertical", "both"},
                   "horizontal mirrors left-right, vertical top-bottom")},
      {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32}};
  return info;
}

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  const std::string& axis = p.Choice("axis");
  const int code = axis == "horizontal" ? 1 : axis == "vertical" ? 0 : -1;
  return MakeFormatPreserving(
      Info(), [code](const cv::Mat& src, cv::Mat& dst) { cv::flip(src, dst, code); });
}

}  // namespace

OperationDef FlipOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
