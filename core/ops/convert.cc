#include <opencv2/core.hpp>

#include "absl/strings/str_cat.h"
#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{
      "convert",
      "change the pixel type; mode=scale (the default) maps full scale to full scale, "
      "mode=range the stack's range, mode=clip keeps values",
      {ChoiceParam("to", {"uint8", "uint16", "float32"}, "output pixel type"),
       ChoiceParam("mode", {"scale", "range", "clip"},
                   "scale: multiply by the ratio of full scales (255, 65535, 1.0; 12-bit data "
                   "in uint16 becomes 0-15 in uint8); range: the stack's low and high "
                   "percentiles to 0 and full scale (a first pass over the stack); clip: keep "
                   "values, saturate to the output range"),
       OnlyWhenGiven(
           DoubleParam("low", 0, 0, 100, "mode=range: the percentile made 0 (0: the minimum)")),
       OnlyWhenGiven(DoubleParam("high", 100, 0, 100,
                                 "mode=range: the percentile made full scale (100: the maximum)"))},
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
  const double low = p.Double("low"), high = p.Double("high");
  if ((p.IsSet("low") || p.IsSet("high")) && p.Choice("mode") != "range") {
    return ParamError(Info(), "low and high are for mode=range");
  }
  if (p.Choice("mode") == "range") {
    if (low >= high) {
      return ParamError(Info(), absl::StrCat("low=", low, " must be below high=", high));
    }
    return StackPercentileStretch(low, high, *to);
  }
  return std::make_unique<Convert>(*to, p.Choice("mode") == "scale");
}

}  // namespace

OperationDef ConvertOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
