// flatfield: flat-field and dark-frame correction, (image - dark) / flat, plane by plane as
// fractal-tasks-core does (BaSiC's model: image = flat x signal + dark, the flat of mean 1).
// The flat is an image file (`flat=`: one plane, any scale, divided by its mean) or, without one,
// estimated from the stack itself (the simplest of what BaSiC estimates): each channel's mean
// plane over all its planes, less the dark, smoothed by a Gaussian of `sigma` pixels
// (scipy.ndimage.gaussian_filter's kernel: radius int(4 sigma + 0.5), mirrored at the edges) so
// that only the illumination's slow fall-off is left, divided by its own mean. The dark is a
// level (`dark=`) or an image file (`dark_frame=`), taken off pixel by pixel. The result keeps the
// input's mean brightness (less dark) and type (rounded, clipped to its range). Estimating is a
// whole-stack step: its statistics are the planes' sums, which add up over z-ranges (integer
// pixels), so a cut job gathers them first; with a flat file it is a per-plane step.
#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/ops/op_util.h"
#include "core/ops/ops.h"
#include "core/stack/stack.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{
      "flatfield",
      "(image - dark) / flat, the flat an image or each channel's mean plane smoothed, divided "
      "by its mean",
      {UnusedWith(DoubleParam("dark", 0, 0, 1e6, "the camera's dark level, taken off first"),
                  "dark_frame"),
       UnusedWith(DoubleParam("sigma", 50, 1, 1000,
                              "the Gaussian that smooths the mean plane into the flat, in pixels"),
                  "flat"),
       FileParam("flat",
                 "the flat as an image (one plane of the slices' size, every pixel above "
                 "0; a path with no ',' or ':'), instead of the estimate; per channel: "
                 "cN.flat="),
       FileParam("dark_frame",
                 "the dark as an image (one plane of the slices' size), instead of "
                 "a level")},
      {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32},
      /*whole_slice=*/true};  // divided by the mean of the flat: a region alone differs throughout
  return info;
}

// "flat=PATH: 64x48 pixels; the slices are 96x80" when `image` is not of the slices' size.
absl::Status CheckSize(const char* name, const cv::Mat& image, const std::string& path,
                       const SliceFormat& in) {
  if (image.empty() || (image.cols == in.width && image.rows == in.height)) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "flatfield: ", name, "=", path, " is ", image.cols, "x", image.rows,
      " pixels; the slices are ", in.width, "x", in.height, ": it must be one plane of theirs"));
}

class Flatfield final : public SliceOp {
 public:
  struct Files {
    std::string flat_path, dark_path;
    cv::Mat flat, dark;  // CV_32F; empty when not given
  };
  Flatfield(double dark, double sigma, Files files)
      : dark_(dark), sigma_(sigma), files_(std::move(files)) {
    if (!files_.flat.empty()) files_.flat.convertTo(flat_, CV_32F, 1.0 / cv::mean(files_.flat)[0]);
  }
  absl::StatusOr<SliceFormat> OutputFormat(const SliceFormat& in) const override {
    if (absl::Status s = CheckPixelType(Info(), in.type); !s.ok()) return s;
    if (absl::Status s = CheckSize("flat", files_.flat, files_.flat_path, in); !s.ok()) return s;
    if (absl::Status s = CheckSize("dark_frame", files_.dark, files_.dark_path, in); !s.ok()) {
      return s;
    }
    return in;
  }
  bool NeedsWholeStack() const override { return files_.flat.empty(); }

  absl::Status PrepareForStack(const Stack& input, const std::vector<int64_t>& planes) override {
    if (!files_.flat.empty()) return absl::OkStatus();  // a channel's own flat, beside estimates
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
    if (!files_.flat.empty()) return absl::OkStatus();
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
    if (!files_.dark.empty()) cv::subtract(image, files_.dark, image);
    cv::divide(image, flat_, image);
    image.convertTo(dst, dst.type());  // rounded, clipped to the type's range
  }

 private:
  absl::Status Estimate(const cv::Mat& sum, double planes) {
    if (planes <= 0) return absl::InvalidArgumentError("flatfield: no planes to estimate from");
    cv::Mat mean;
    sum.convertTo(mean, CV_64F, 1.0 / planes, -dark_);
    if (!files_.dark.empty()) cv::subtract(mean, files_.dark, mean, cv::noArray(), CV_64F);
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
  const Files files_;
  cv::Mat flat_;  // CV_32F, mean 1
  Scratch<cv::Mat> scratch_;
};

// The image file parameter `name` names, as CV_32F; empty when not given. A flat must be above
// 0 everywhere (it divides), and finite.
absl::StatusOr<cv::Mat> ReadFrame(const ParamValues& p, const char* name, std::string& path) {
  if (!p.IsSet(name)) return cv::Mat();
  path = p.Text(name);
  STACKPROC_ASSIGN_OR_RETURN(cv::Mat image, p.Image(name));
  cv::Mat frame;
  image.convertTo(frame, CV_32F);
  double least = 0, most = 0;
  cv::Point at;
  cv::minMaxLoc(frame, &least, &most, &at);
  if (!cv::checkRange(frame) || (std::string_view(name) == "flat" && !(least > 0))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "flatfield: ", name, "=", path,
        cv::checkRange(frame) ? absl::StrCat(" is ", least, " at x=", at.x, ", y=", at.y)
                              : std::string(" holds NaN or infinity"),
        ": a flat must be above 0 everywhere (it divides), a frame finite"));
  }
  return frame;
}

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  Flatfield::Files files;
  STACKPROC_ASSIGN_OR_RETURN(files.flat, ReadFrame(p, "flat", files.flat_path));
  STACKPROC_ASSIGN_OR_RETURN(files.dark, ReadFrame(p, "dark_frame", files.dark_path));
  return std::make_unique<Flatfield>(p.Double("dark"), p.Double("sigma"), std::move(files));
}

}  // namespace

OperationDef FlatfieldOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
