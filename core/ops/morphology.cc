#include <opencv2/imgproc.hpp>

#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{
      "morphology",
      "grey-level morphology (cv::morphologyEx); tophat subtracts a smooth background",
      {ChoiceParam("op", {"erode", "dilate", "open", "close", "tophat", "blackhat", "gradient"},
                   "the morphological operation"),
       ChoiceParam("shape", {"ellipse", "rect", "cross"}, "structuring element shape"),
       IntParam("ksize", 3, 1, 255, "structuring element side")},
      {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32}};
  return info;
}

int MorphOp(const std::string& name) {
  if (name == "erode") return cv::MORPH_ERODE;
  if (name == "dilate") return cv::MORPH_DILATE;
  if (name == "open") return cv::MORPH_OPEN;
  if (name == "close") return cv::MORPH_CLOSE;
  if (name == "tophat") return cv::MORPH_TOPHAT;
  if (name == "blackhat") return cv::MORPH_BLACKHAT;
  return cv::MORPH_GRADIENT;
}

int Shape(const std::string& name) {
  if (name == "rect") return cv::MORPH_RECT;
  if (name == "cross") return cv::MORPH_CROSS;
  return cv::MORPH_ELLIPSE;
}

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  const int op = MorphOp(p.Choice("op"));
  const int ksize = p.Int("ksize");
  cv::Mat kernel = cv::getStructuringElement(Shape(p.Choice("shape")), cv::Size(ksize, ksize));
  return MakeFormatPreserving(Info(), [op, kernel](const cv::Mat& src, cv::Mat& dst) {
    cv::morphologyEx(src, dst, op, kernel);
  });
}

}  // namespace

OperationDef MorphologyOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
