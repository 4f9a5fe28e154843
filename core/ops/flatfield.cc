// flatfield: flat-field and dark-frame correction, (image - dark) / flat, plane by plane as
// fractal-tasks-core does, with the flat estimated from the stack itself (the simplest of what
// BaSiC estimates): each channel's mean plane over all its planes, less the dark level,
// smoothed by a Gaussian of `sigma` pixels (scipy.ndimage.gaussian_filter's kernel: radius
// int(4 sigma + 0.5), mirrored at the edges) so that only the illumination's slow fall-off is
// left, divided by its own mean. The result keeps the input's mean brightness (less dark) and type
// (rounded, clipped to its range). A whole-stack step: its statistics are the planes' sums,
// which add up over z-ranges (integer pixels), so a cut job gathers them first.
#include <algorithm>
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
      "flatfield",
      "(image - dark) / flat, the flat each channel's mean plane smoothed, divided by its mean",
      {DoubleParam("dark", 0, 0, 1e6, "the camera's dark level, taken off first"),
       DoubleParam("sigma", 50, 1, 1000,
                   "the Gaussian that smooths the mean plane into the flat, in pixels")},
      {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32},
      /*whole_slice=*/true};  // divided by the mean of the flat: a region alone differs throughout
  return info;
}

class Flatfield final : public SliceOp {
 public:
  Flatfield(double dark, double sigma) : dark_(dark), sigma_(sigma) {}
  absl::StatusOr<SliceFormat> OutputFormat(const SliceFormat& in) const override {
    if (absl::Status s = CheckPixelType(Info(), in.type); !s.ok()) return s;
    return in;
  }
  bool NeedsWholeStack() const override { return true; }

  absl::Status PrepareForStack(const Stack& input, const std::vector<int64_t>& planes) override {
    cv::Mat sum = cv::Mat::zeros(static_cast<int>(input.shape().height),
                                 static_cast<int>(input.shape().width), CV_64F);
    for (int64_t p : planes) cv::add(sum, input.Slice(p), sum, cv::noArray(), CV_64F);
    return Estimate(sum, static_cast<double>(planes.size()));
  }
  // The planes' sums, pixel by pixel, then their count.
  bool AddStats(const cv::Mat& slice, std::vector<uint64_t>& stats) const override {
    if (slice.depth() == CV_32F) return false;
    const size_t pixels = slice.total();
    stats.resize(pixels + 1);
    uint64_t* sum = stats.data();
    for (int y = 0; y < slice.rows; ++y, sum += slice.cols) {
      if (slice.depth() == CV_8U) {
        const uint8_t* row = slice.ptr<uint8_t>(y);
        for (int x = 0; x < slice.cols; ++x) sum[x] += row[x];
      } else {
        const uint16_t* row = slice.ptr<uint16_t>(y);
        for (int x = 0; x < slice.cols; ++x) sum[x] += row[x];
      }
    }
    ++stats[pixels];
    return true;
  }
  absl::Status PrepareFromStats(const SliceFormat& format,
                                const std::vector<uint64_t>& stats) override {
    const size_t pixels = static_cast<size_t>(format.height) * static_cast<size_t>(format.width);
    if (stats.size() != pixels + 1) {
      return absl::InvalidArgumentError(absl::StrCat("flatfield: statistics of ", stats.size(),
                                                     " values; planes of ", pixels,
                                                     " pixels have one a pixel, and a count"));
    }
    cv::Mat sum(format.height, format.width, CV_64F);
    std::transform(stats.begin(), stats.end() - 1, sum.ptr<double>(),
                   [](uint64_t v) { return static_cast<double>(v); });
    return Estimate(sum, static_cast<double>(stats.back()));
  }

  void Apply(const cv::Mat& src, cv::Mat& dst) const override {
    cv::Mat& image = scratch_.local();
    src.convertTo(image, CV_32F, 1.0, -dark_);
    cv::divide(image, flat_, image);
    image.convertTo(dst, dst.type());  // rounded, clipped to the type's range
  }

 private:
  absl::Status Estimate(const cv::Mat& sum, double planes) {
    if (planes <= 0) return absl::InvalidArgumentError("flatfield: no planes to estimate from");
    cv::Mat mean;
    sum.convertTo(mean, CV_64F, 1.0 / planes, -dark_);
    const cv::Mat kernel = ScipyGaussianKernel(sigma_, 4.0, CV_64F);
    cv::Mat smooth;
    cv::sepFilter2D(mean, smooth, CV_64F, kernel, kernel, cv::Point(-1, -1), 0,
                    cv::BORDER_REFLECT_101);
    double least = 0;
    cv::minMaxLoc(smooth, &least);
    const double level = cv::mean(smooth)[0];
    if (!(least > 0) || !std::isfinite(level)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "flatfield: the flat estimated from the stack (its mean plane less dark=", dark_,
          ", smoothed) reaches ", least, " and averages ", level,
          ": it must be above 0 everywhere, and finite (is dark above the background? a float "
          "stack with NaN?)"));
    }
    smooth.convertTo(flat_, CV_32F, 1.0 / level);
    return absl::OkStatus();
  }

  const double dark_, sigma_;
  cv::Mat flat_;  // CV_32F, mean 1
  Scratch<cv::Mat> scratch_;
};

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  return std::make_unique<Flatfield>(p.Double("dark"), p.Double("sigma"));
}

}  // namespace

OperationDef FlatfieldOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
