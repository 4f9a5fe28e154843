#include <cmath>
#include <opencv2/imgproc.hpp>

#include "absl/strings/str_cat.h"
#include "core/ops/op_util.h"
#include "core/ops/ops.h"
#include "core/stack/stack.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{
      "resize",
      "resample each slice by a scale factor or to a width/height (cv::resize)",
      {OnlyWhenGiven(DoubleParam(
           "scale", 1.0, 0.001, 64,
           "factor for both sides, sizes as cv2.resize(fx=, fy=): nearest, half to even "
           "(301x401 by 0.5: 150x200); give it or width/height, not both")),
       OnlyWhenGiven(IntParam("width", 0, 0, kMaxSliceSide,
                              "output width; 0 follows height's aspect or scale")),
       OnlyWhenGiven(IntParam("height", 0, 0, kMaxSliceSide,
                              "output height; 0 follows width's aspect or scale")),
       ChoiceParam("interp", {"area", "linear", "cubic", "nearest", "lanczos"},
                   "interpolation (area is best for shrinking)")},
      {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32}};
  return info;
}

int Interpolation(const std::string& name) {
  if (name == "linear") return cv::INTER_LINEAR;
  if (name == "cubic") return cv::INTER_CUBIC;
  if (name == "nearest") return cv::INTER_NEAREST;
  if (name == "lanczos") return cv::INTER_LANCZOS4;
  return cv::INTER_AREA;
}

class Resize final : public SliceOp {
 public:
  Resize(double scale, int width, int height, int interpolation)
      : scale_(scale), width_(width), height_(height), interpolation_(interpolation) {}

  absl::StatusOr<SliceFormat> OutputFormat(const SliceFormat& in) const override {
    if (absl::Status s = CheckPixelType(Info(), in.type); !s.ok()) return s;
    double w = width_, h = height_;
    if (w == 0 && h == 0) {  // cv::resize's rule for fx and fy: the nearest, half to even
      w = cv::saturate_cast<int>(in.width * scale_);
      h = cv::saturate_cast<int>(in.height * scale_);
    } else if (w == 0) {
      w = std::round(in.width * h / in.height);
    } else if (h == 0) {
      h = std::round(in.height * w / in.width);
    }
    if (w < 1 || h < 1 || w > kMaxSliceSide || h > kMaxSliceSide) {
      return ParamError(Info(),
                        absl::StrCat("output ", w, "x", h, " from ", in.width, "x", in.height,
                                     " is outside 1..", kMaxSliceSide, " pixels per side"));
    }
    return SliceFormat{static_cast<int>(h), static_cast<int>(w), in.type};
  }

  void UpdateGeometry(const SliceFormat& in, PixelGeometry& geometry) const override {
    absl::StatusOr<SliceFormat> out = OutputFormat(in);
    if (out.ok()) {
      geometry.Scale(double(out->width) / in.width, double(out->height) / in.height);
    }
  }

  void Apply(const cv::Mat& src, cv::Mat& dst) const override {
    if (width_ == 0 && height_ == 0) {  // sampled at the factor itself, as cv2.resize(fx, fy)
      cv::resize(src, dst, {}, scale_, scale_, interpolation_);
    } else {
      cv::resize(src, dst, dst.size(), 0, 0, interpolation_);
    }
  }

 private:
  double scale_;
  int width_, height_, interpolation_;
};

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  if (p.IsSet("scale") && (p.IsSet("width") || p.IsSet("height"))) {
    return ParamError(Info(), "give scale or width/height, not both");
  }
  return std::make_unique<Resize>(p.Double("scale"), p.Int("width"), p.Int("height"),
                                  Interpolation(p.Choice("interp")));
}

}  // namespace

OperationDef ResizeOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
