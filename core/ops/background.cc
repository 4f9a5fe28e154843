// background: rolling-ball background subtraction (Sternberg's rolling ball, as scikit-image's
// rolling_ball computes it). Under each pixel the background is as high as the top of a ball
// of the radius can be while the ball stays below the image everywhere on its disc:
//
//   background(p) = min over |k| <= r of  image(p + k) + r - sqrt(r^2 - |k|^2)
//
// (pixels past the slice's edges left out), and the result is the image minus it: objects
// smaller than the ball stay, the slowly varying background goes. A light background (bright
// field) is subtracted from above: the image inverted (full scale minus value), its background
// subtracted, inverted back. In float32; the cost grows with the ball's area (r^2 pixels per
// pixel, vectorised).
#include <cmath>
#include <limits>
#include <opencv2/core.hpp>

#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{
      "background",
      "rolling-ball background subtraction (image - skimage.restoration.rolling_ball)",
      {IntParam("radius", 15, 1, 50,
                "ball radius in pixels: larger than the objects to keep; the cost grows with "
                "its square"),
       ChoiceParam("light", {"no", "yes"},
                   "yes: a background brighter than the objects (bright field), subtracted "
                   "from above")},
      {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32}};
  return info;
}

class Background final : public SliceOp {
 public:
  Background(int radius, bool light) : radius_(radius), light_(light) {
    const double r2 = static_cast<double>(radius) * radius;
    for (int dy = -radius; dy <= radius; ++dy) {
      for (int dx = -radius; dx <= radius; ++dx) {
        const double d2 = static_cast<double>(dy) * dy + static_cast<double>(dx) * dx;
        if (d2 > r2) continue;
        offsets_.push_back({dy, dx, static_cast<float>(radius - std::sqrt(r2 - d2))});
      }
    }
  }
  absl::StatusOr<SliceFormat> OutputFormat(const SliceFormat& in) const override {
    if (absl::Status s = CheckPixelType(Info(), in.type); !s.ok()) return s;
    return in;
  }
  void Apply(const cv::Mat& src, cv::Mat& dst) const override {
    const double full = FullScale(*FromCvType(src.type()));  // a type OutputFormat took
    auto& [image, padded, under] = scratch_.local();
    // The image in float, inverted for a light background.
    src.convertTo(image, CV_32F, light_ ? -1.0 : 1.0, light_ ? full : 0.0);
    const int r = radius_;
    cv::copyMakeBorder(image, padded, r, r, r, r, cv::BORDER_CONSTANT,
                       cv::Scalar(std::numeric_limits<float>::infinity()));
    under.create(image.size(), CV_32F);
    const int width = image.cols;
    for (int y = 0; y < image.rows; ++y) {
      float* out = under.ptr<float>(y);
      std::fill(out, out + width, std::numeric_limits<float>::infinity());
      for (const Offset& o : offsets_) {
        const float* in = padded.ptr<float>(y + r + o.dy) + r + o.dx;
        const float lift = o.lift;
        for (int x = 0; x < width; ++x) out[x] = std::min(out[x], in[x] + lift);
      }
    }
    // scikit-image's background of integer pixels is truncated to their type before it is
    // subtracted: so here (it is >= 0).
    if (src.depth() != CV_32F) {
      for (int y = 0; y < under.rows; ++y) {
        float* row = under.ptr<float>(y);
        for (int x = 0; x < width; ++x) row[x] = std::floor(row[x]);
      }
    }
    cv::subtract(image, under, image);  // >= 0: the centre's own pixel is on the disc
    // Back to the input's type, rounded (and inverted back for a light background).
    image.convertTo(dst, dst.type(), light_ ? -1.0 : 1.0, light_ ? full : 0.0);
  }

 private:
  struct Offset {
    int dy, dx;
    float lift;  // r - sqrt(r^2 - |k|^2): how far below its top the ball's surface is there
  };
  const int radius_;
  const bool light_;
  std::vector<Offset> offsets_;
  struct Planes {
    cv::Mat image, padded, under;
  };
  Scratch<Planes> scratch_;
};

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  return std::make_unique<Background>(p.Int("radius"), p.Choice("light") == "yes");
}

}  // namespace

OperationDef BackgroundOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
