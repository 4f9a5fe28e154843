#include <opencv2/core.hpp>

#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{
      "convert",
      "change the pixel type; mode=scale maps full scale to full scale, mode=clip keeps values",
      {ChoiceParam("to", {"uint8", "uint16", "float32"}, "output pixel type"),
       ChoiceParam("mode", {"scale", "clip"},
                   "scale: multiply by the ratio of full scales (255, 65535, 1.0); clip: keep "
                   "values, saturate to the output range")},
      {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32}};
  return info;
}

class Convert final : public SliceOp {
 public:
  Convert(PixelType to, bool scale) : to_(to), scale_(scale) {}

  absl::StatusOr<SliceFormat> OutputFormat(const SliceFormat& in) const override {
    return SliceFormat{in.height, in.width, to_};
  }
  void Apply(const cv::Mat& src, cv::Mat& dst) const override {
    absl::StatusOr<PixelType> from = FromCvType(src.type());
    const double alpha = scale_ && from.ok() ? FullScale(to_) / FullScale(*from) : 1.0;
    src.convertTo(dst, CvType(to_), alpha);
  }

 private:
  PixelType to_;
  bool scale_;
};

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  absl::StatusOr<PixelType> to = ParsePixelType(p.Choice("to"));
  if (!to.ok()) return to.status();
  return std::make_unique<Convert>(*to, p.Choice("mode") == "scale");
}

}  // namespace

OperationDef ConvertOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
