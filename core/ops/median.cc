#include <opencv2/imgproc.hpp>

#include "absl/strings/str_cat.h"
#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{"median",
                                  "median filter (cv::medianBlur); ksize above 5 needs uint8",
                                  {IntParam("ksize", 3, 3, 255, "kernel side, odd")},
                                  {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32}};
  return info;
}

class Median final : public SliceOp {
 public:
  explicit Median(int ksize) : ksize_(ksize) {}
  absl::StatusOr<SliceFormat> OutputFormat(const SliceFormat& in) const override {
    if (ksize_ > 5 && in.type != PixelType::kUint8) {
      return ParamError(Info(),
                        absl::StrCat("ksize=", ksize_, " needs uint8 input, the slices are ",
                                     PixelTypeName(in.type),
                                     " (OpenCV's median for 16-bit and float takes "
                                     "ksize 3 or 5)"));
    }
    return in;
  }
  void Apply(const cv::Mat& src, cv::Mat& dst) const override { cv::medianBlur(src, dst, ksize_); }

 private:
  int ksize_;
};

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  const int ksize = p.Int("ksize");
  if (absl::Status s = CheckOdd(Info(), "ksize", ksize); !s.ok()) return s;
  return std::make_unique<Median>(ksize);
}

}  // namespace

OperationDef MedianOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
