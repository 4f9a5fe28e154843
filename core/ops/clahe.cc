#include <opencv2/imgproc.hpp>

#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{"clahe",
                                  "contrast-limited adaptive histogram equalisation (cv::CLAHE)",
                                  {DoubleParam("clip", 2.0, 0.01, 1000, "contrast limit"),
                                   IntParam("tiles", 8, 1, 256, "tiles per side of the slice")},
                                  {PixelType::kUint8, PixelType::kUint16}};
  return info;
}

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  const double clip = p.Double("clip");
  const int tiles = p.Int("tiles");
  return MakeFormatPreserving(
      Info(),
      [clip, tiles](const cv::Mat& src, cv::Mat& dst) {
        // A CLAHE object holds scratch state: one per call keeps Apply thread-safe.
        cv::createCLAHE(clip, cv::Size(tiles, tiles))->apply(src, dst);
      },
      "convert:to=uint16 first");
}

}  // namespace

OperationDef ClaheOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
