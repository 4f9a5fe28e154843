#include <opencv2/imgproc.hpp>

#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{
      "threshold",
      "binary mask: full scale where value > threshold, else 0 (fixed value or Otsu per slice)",
      {ChoiceParam("method", {"value", "otsu"}, "fixed threshold, or Otsu's per slice"),
       OnlyWhenGiven(DoubleParam("value", 0, -1e9, 1e9, "the threshold for method=value"))},
      {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32},
      /*whole_slice=*/true};  // method=otsu: the threshold is the slice's
  return info;
}

class Threshold final : public SliceOp {
 public:
  Threshold(bool otsu, double value) : otsu_(otsu), value_(value) {}
  absl::StatusOr<SliceFormat> OutputFormat(const SliceFormat& in) const override {
    if (absl::Status s = CheckPixelType(Info(), in.type); !s.ok()) return s;
    if (otsu_ && in.type == PixelType::kFloat32) {
      return ParamError(Info(),
                        "method=otsu needs uint8 or uint16 slices (use method=value for float32)");
    }
    return in;
  }
  void Apply(const cv::Mat& src, cv::Mat& dst) const override {
    const double full = src.depth() == CV_32F ? 1.0 : (src.depth() == CV_8U ? 255.0 : 65535.0);
    cv::threshold(src, dst, value_, full, cv::THRESH_BINARY | (otsu_ ? cv::THRESH_OTSU : 0));
  }

 private:
  bool otsu_;
  double value_;
};

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  const bool otsu = p.Choice("method") == "otsu";
  if (otsu && p.IsSet("value")) {
    return ParamError(Info(), "value is only used with method=value");
  }
  return std::make_unique<Threshold>(otsu, p.Double("value"));
}

}  // namespace

OperationDef ThresholdOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
