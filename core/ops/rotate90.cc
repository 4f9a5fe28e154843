#include <opencv2/core.hpp>

#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{
      "rotate90",
      "rotate each slice clockwise by a multiple of 90 degrees (cv::rotate)",
      {ChoiceParam("angle", {"90", "180", "270"}, "clockwise degrees")},
      {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32}};
  return info;
}

class Rotate90 final : public SliceOp {
 public:
  explicit Rotate90(int angle) : angle_(angle) {}

  absl::StatusOr<SliceFormat> OutputFormat(const SliceFormat& in) const override {
    if (absl::Status s = CheckPixelType(Info(), in.type); !s.ok()) return s;
    return angle_ == 180 ? in : SliceFormat{in.width, in.height, in.type};
  }
  void UpdateGeometry(const SliceFormat&, PixelGeometry& geometry) const override {
    if (angle_ != 180) geometry.Transpose();
  }
  void Apply(const cv::Mat& src, cv::Mat& dst) const override {
    cv::rotate(src, dst,
               angle_ == 90    ? cv::ROTATE_90_CLOCKWISE
               : angle_ == 180 ? cv::ROTATE_180
                               : cv::ROTATE_90_COUNTERCLOCKWISE);
  }

 private:
  int angle_;
};

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  return std::make_unique<Rotate90>(std::stoi(p.Choice("angle")));
}

}  // namespace

OperationDef Rotate90Operation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
