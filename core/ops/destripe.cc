// destripe: removes thin stripes that run the whole slice along one axis (light-sheet shadows
// and detector columns: an offset added to every pixel of a few columns) by a filter on column
// statistics. Each row less its running median across the stripes (`width` pixels) is what is
// narrower than the window: stripes, and the structures' fine detail; the median of that down
// each column is the column's stripe (detail that does not run the whole column has a median
// near 0), taken off the whole column. Structures narrower than about half the window that run
// the whole slice are taken for stripes; anything shorter is kept. (Chosen over a wavelet and
// Fourier filter like pystripe's by measuring both on striped data: docs/benchmarks.md.)
#include <algorithm>
#include <opencv2/core.hpp>

#include "core/base/status_macros.h"
#include "core/ops/op_util.h"
#include "core/ops/ops.h"
#include "core/ops/select.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{
      "destripe",
      "takes off stripes that run the whole slice: the median, down each column, of the rows "
      "less their running median across",
      {ChoiceParam("axis", {"vertical", "horizontal"},
                   "which way the stripes run: vertical stripes are columns"),
       IntParam("width", 15, 3, 63,
                "pixels across the stripes compared with each, odd: stripes up to about half as "
                "wide go")},
      {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32},
      /*whole_slice=*/true};  // a column's median: a region alone differs throughout
  return info;
}

float Median(float* begin, float* end) {
  float* middle = begin + (end - begin) / 2;
  std::nth_element(begin, middle, end);
  if ((end - begin) % 2 == 1) return *middle;
  return (*middle + *std::max_element(begin, middle)) / 2;  // the two middle values' mean
}

class Destripe final : public SliceOp {
 public:
  Destripe(bool vertical, int width) : vertical_(vertical), width_(width) {}
  absl::StatusOr<SliceFormat> OutputFormat(const SliceFormat& in) const override {
    if (absl::Status s = CheckPixelType(Info(), in.type); !s.ok()) return s;
    return in;
  }
  void Apply(const cv::Mat& src, cv::Mat& dst) const override {
    auto& [image, detail, down, padded, values, working, stripe] = scratch_.local();
    // Vertical stripes are columns: horizontal ones are made so by a transpose.
    if (vertical_) {
      src.convertTo(image, CV_32F);
    } else {
      cv::Mat f;
      src.convertTo(f, CV_32F);
      cv::transpose(f, image);
    }
    const int width = image.cols, h = std::min(width_ / 2, width - 1);
    if (h == 0) {  // one pixel across the stripes: nothing to compare it with
      src.copyTo(dst);
      return;
    }
    // Each row less its running median across `width_` pixels (mirrored at the ends).
    detail.create(image.size(), CV_32F);
    padded.resize(static_cast<size_t>(width + 2 * h));
    values.resize(static_cast<size_t>(2 * h + 1));
    for (int y = 0; y < image.rows; ++y) {
      const float* row = image.ptr<float>(y);
      for (int x = -h; x < width + h; ++x) {
        padded[static_cast<size_t>(x + h)] =
            row[cv::borderInterpolate(x, width, cv::BORDER_REFLECT_101)];
      }
      float* out = detail.ptr<float>(y);
      for (int x0 = 0; x0 < width; x0 += kRun) {
        for (int j = 0; j <= 2 * h; ++j) values[static_cast<size_t>(j)] = &padded[x0 + j];
        SelectMedians(values, std::min(kRun, width - x0), out + x0, working);
      }
      for (int x = 0; x < width; ++x) out[x] = row[x] - out[x];
    }
    // Each column's stripe: the median of its detail.
    cv::transpose(detail, down);
    stripe.create(1, width, CV_32F);
    for (int x = 0; x < width; ++x) {
      float* column = down.ptr<float>(x);
      stripe.at<float>(x) = Median(column, column + down.cols);
    }
    cv::subtract(image, cv::repeat(stripe, image.rows, 1), image);
    if (vertical_) {
      image.convertTo(dst, dst.type());  // rounded, saturated
    } else {
      cv::Mat back;
      cv::transpose(image, back);
      back.convertTo(dst, dst.type());
    }
  }

 private:
  const bool vertical_;
  const int width_;
  struct Buffers {
    cv::Mat image, detail, down;
    std::vector<float> padded;
    std::vector<const float*> values;
    std::vector<float> working;
    cv::Mat stripe;
  };
  Scratch<Buffers> scratch_;
};

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  const int width = p.Int("width");
  STACKPROC_RETURN_IF_ERROR(CheckOdd(Info(), "width", width));
  return std::make_unique<Destripe>(p.Choice("axis") == "vertical", width);
}

}  // namespace

OperationDef DestripeOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
