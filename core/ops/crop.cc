#include <opencv2/core.hpp>

#include "absl/strings/str_cat.h"
#include "core/ops/op_util.h"
#include "core/ops/ops.h"
#include "core/stack/stack.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{
      "crop",
      "keep the rectangle x, y, width, height of each slice",
      {IntParam("x", 0, 0, kMaxSliceSide, "left column"),
       IntParam("y", 0, 0, kMaxSliceSide, "top row"),
       IntParam("width", 0, 0, kMaxSliceSide, "columns kept; 0 keeps up to the right edge"),
       IntParam("height", 0, 0, kMaxSliceSide, "rows kept; 0 keeps down to the bottom edge")},
      {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32}};
  return info;
}

class Crop final : public SliceOp {
 public:
  Crop(int x, int y, int width, int height) : x_(x), y_(y), width_(width), height_(height) {}

  absl::StatusOr<SliceFormat> OutputFormat(const SliceFormat& in) const override {
    if (absl::Status s = CheckPixelType(Info(), in.type); !s.ok()) return s;
    cv::Rect r = Region(in);
    if (x_ >= in.width || y_ >= in.height || r.width <= 0 || r.height <= 0 ||
        r.x + r.width > in.width || r.y + r.height > in.height) {
      return ParamError(
          Info(), absl::StrCat("region x=", x_, ",y=", y_, ",width=", r.width, ",height=", r.height,
                               " is not inside the ", in.width, "x", in.height, " slice"));
    }
    return SliceFormat{r.height, r.width, in.type};
  }

  void Apply(const cv::Mat& src, cv::Mat& dst) const override {
    SliceFormat in{src.rows, src.cols, PixelType::kUint8};
    src(Region(in)).copyTo(dst);
  }

 private:
  cv::Rect Region(const SliceFormat& in) const {
    return {x_, y_, width_ ? width_ : in.width - x_, height_ ? height_ : in.height - y_};
  }
  int x_, y_, width_, height_;
};

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  return std::make_unique<Crop>(p.Int("x"), p.Int("y"), p.Int("width"), p.Int("height"));
}

}  // namespace

OperationDef CropOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
