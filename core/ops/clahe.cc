#include <cstdint>
#include <opencv2/imgproc.hpp>

#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{
      "clahe",
      "contrast-limited adaptive histogram equalisation (cv::CLAHE over `bins` grey levels)",
      {DoubleParam("clip", 2.0, 0.01, 1000,
                   "contrast limit: a histogram bin keeps at most clip times the tile's mean "
                   "count"),
       IntParam("tiles", 8, 1, 256, "tiles per side of the slice"),
       IntParam("bins", 256, 2, 65536,
                "histogram bins over the slice's range (as scikit-image's nbins); at 256 uint8 "
                "is OpenCV's own, and uint16 at 65536, where clips act alike unless tiles hold "
                "65536+ pixels")},
      {PixelType::kUint8, PixelType::kUint16},
      /*whole_slice=*/true};  // tiles cut the slice, and bins span its range
  return info;
}

// OpenCV's CLAHE histograms every grey level of the type (256 or 65536) and limits each to
// clip * tile pixels / levels: on 16-bit slices below one count a level, so every clip acts
// alike. Over `bins` bins instead, as scikit-image does: the slice's range [min, max] is cut
// into `bins` equal bins, each pixel is made its bin's first level (spread over the type's
// levels), so that each level OpenCV sees used holds a whole bin, and the clip is scaled by
// levels / bins: the limit per bin is clip * tile pixels / bins.
class Clahe final : public SliceOp {
 public:
  Clahe(double clip, int tiles, int bins) : clip_(clip), tiles_(tiles), bins_(bins) {}

  absl::StatusOr<SliceFormat> OutputFormat(const SliceFormat& in) const override {
    if (absl::Status s = CheckPixelType(Info(), in.type, "convert:to=uint16 first"); !s.ok()) {
      return s;
    }
    return in;
  }

  void Apply(const cv::Mat& src, cv::Mat& dst) const override {
    const int levels = src.depth() == CV_8U ? 256 : 65536;
    if (bins_ >= levels) {
      // A CLAHE object holds scratch state: one per call keeps Apply thread-safe.
      cv::createCLAHE(clip_, cv::Size(tiles_, tiles_))->apply(src, dst);
      return;
    }
    double lo = 0, hi = 0;
    cv::minMaxLoc(src, &lo, &hi);
    const auto first = static_cast<uint64_t>(lo);
    const auto range = static_cast<uint64_t>(hi - lo) + 1;
    const auto bins = static_cast<uint64_t>(bins_);
    const auto binned_level = [&](uint64_t v) {
      return ((v - first) * bins / range) * static_cast<uint64_t>(levels) / bins;
    };
    cv::Mat binned(src.size(), src.type());
    for (int y = 0; y < src.rows; ++y) {
      if (src.depth() == CV_8U) {
        const uint8_t* in = src.ptr<uint8_t>(y);
        uint8_t* out = binned.ptr<uint8_t>(y);
        for (int x = 0; x < src.cols; ++x) out[x] = static_cast<uint8_t>(binned_level(in[x]));
      } else {
        const uint16_t* in = src.ptr<uint16_t>(y);
        uint16_t* out = binned.ptr<uint16_t>(y);
        for (int x = 0; x < src.cols; ++x) out[x] = static_cast<uint16_t>(binned_level(in[x]));
      }
    }
    cv::createCLAHE(clip_ * levels / bins_, cv::Size(tiles_, tiles_))->apply(binned, dst);
  }

 private:
  double clip_;
  int tiles_;
  int bins_;
};

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  return std::make_unique<Clahe>(p.Double("clip"), p.Int("tiles"), p.Int("bins"));
}

}  // namespace

OperationDef ClaheOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
