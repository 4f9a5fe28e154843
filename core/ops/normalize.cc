#include <tbb/blocked_range.h>
#include <tbb/parallel_reduce.h>

#include <algorithm>
#include <cmath>
#include <opencv2/core.hpp>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/ops/op_util.h"
#include "core/ops/ops.h"
#include "core/stack/stack.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{
      "normalize",
      "percentile stretch: [p_low, p_high] maps to [0, full scale], per slice or over the stack",
      {DoubleParam("low", 0.5, 0, 100, "lower percentile"),
       DoubleParam("high", 99.5, 0, 100, "upper percentile"),
       ChoiceParam("scope", {"slice", "stack", "timepoint"},
                   "percentiles of each slice; of each channel's whole stack, every time point "
                   "(a first pass); or of each channel's z-stack at each time point")},
      {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32},
      /*whole_slice=*/true};
  return info;
}

// Bins of a histogram over [origin, origin + bins * width).
struct Histogram {
  double origin = 0;
  double width = 1;
  std::vector<uint64_t> counts;

  void Add(const cv::Mat& slice) {
    const int bins = static_cast<int>(counts.size());
    for (int y = 0; y < slice.rows; ++y) {
      switch (slice.depth()) {
        case CV_8U:
          for (const uint8_t *p = slice.ptr<uint8_t>(y), *e = p + slice.cols; p != e; ++p) {
            ++counts[*p];
          }
          break;
        case CV_16U:
          for (const uint16_t *p = slice.ptr<uint16_t>(y), *e = p + slice.cols; p != e; ++p) {
            ++counts[*p];
          }
          break;
        default:
          for (const float *p = slice.ptr<float>(y), *e = p + slice.cols; p != e; ++p) {
            int bin = static_cast<int>((*p - origin) / width);
            ++counts[std::clamp(bin, 0, bins - 1)];
          }
      }
    }
  }
  // The value at rank floor(q * (n - 1)) of the sorted samples ("lower" percentile).
  double Percentile(double percent) const {
    uint64_t n = 0;
    for (uint64_t c : counts) n += c;
    if (n == 0) return origin;
    auto rank = static_cast<uint64_t>(std::floor(percent / 100.0 * static_cast<double>(n - 1)));
    uint64_t seen = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
      seen += counts[i];
      if (seen > rank) return origin + static_cast<double>(i) * width;
    }
    return origin + static_cast<double>(counts.size() - 1) * width;
  }
};

Histogram IntegerHistogram(int depth) {
  return {0, 1, std::vector<uint64_t>(depth == CV_8U ? 256 : 65536)};
}

// Exact percentile of a float slice: the same rank as Histogram::Percentile.
double FloatPercentile(const cv::Mat& slice, double percent) {
  std::vector<float> values;
  values.reserve(slice.total());
  for (int y = 0; y < slice.rows; ++y) {
    values.insert(values.end(), slice.ptr<float>(y), slice.ptr<float>(y) + slice.cols);
  }
  auto rank = static_cast<size_t>(std::floor(percent / 100.0 * double(values.size() - 1)));
  std::nth_element(values.begin(), values.begin() + static_cast<ptrdiff_t>(rank), values.end());
  return values[rank];
}

// [lo, hi] of `src` to [0, full scale] of `to` (saturating), in one pass.
void Stretch(const cv::Mat& src, cv::Mat& dst, double lo, double hi, std::optional<PixelType> to) {
  const int type = to ? CvType(*to) : src.type();
  if (hi <= lo) {
    dst.create(src.size(), type);
    dst.setTo(0);  // a flat slice has no range to stretch
    return;
  }
  absl::StatusOr<PixelType> from = FromCvType(src.type());
  const double alpha = FullScale(to.value_or(from.value_or(PixelType::kFloat32))) / (hi - lo);
  src.convertTo(dst, type, alpha, -lo * alpha);
}

class Normalize final : public SliceOp {
 public:
  // `to`: the output's pixel type; nullopt keeps the input's.
  Normalize(double low, double high, bool whole_stack, bool per_time_point,
            std::optional<PixelType> to)
      : low_(low),
        high_(high),
        whole_stack_(whole_stack),
        per_time_point_(per_time_point),
        to_(to) {}

  absl::StatusOr<SliceFormat> OutputFormat(const SliceFormat& in) const override {
    if (absl::Status s = CheckPixelType(Info(), in.type); !s.ok()) return s;
    return SliceFormat{in.height, in.width, to_.value_or(in.type)};
  }
  bool NeedsWholeStack() const override { return whole_stack_; }
  bool StatisticsPerTimePoint() const override { return per_time_point_; }

  absl::Status PrepareForStack(const Stack& input, const std::vector<int64_t>& planes) override {
    const auto all = tbb::blocked_range<size_t>(0, planes.size());
    Histogram empty;
    if (input.pixel_type() == PixelType::kFloat32) {
      // Two passes: the range, then 65536 bins over it (percentiles to 1/65536 of the range).
      using Range = std::pair<double, double>;
      Range range = tbb::parallel_reduce(
          all, Range{INFINITY, -INFINITY},
          [&](const tbb::blocked_range<size_t>& r, Range acc) {
            for (size_t i = r.begin(); i != r.end(); ++i) {
              double lo = 0, hi = 0;
              cv::minMaxLoc(input.Slice(planes[i]), &lo, &hi);
              acc = {std::min(acc.first, lo), std::max(acc.second, hi)};
            }
            return acc;
          },
          [](Range a, Range b) {
            return Range{std::min(a.first, b.first), std::max(a.second, b.second)};
          });
      empty = {range.first, std::max(range.second - range.first, 1e-30) / 65535.0,
               std::vector<uint64_t>(65536)};
    } else {
      // What shards gathered apart would add up to: the same histogram, the same percentiles.
      std::vector<uint64_t> stats = tbb::parallel_reduce(
          all, std::vector<uint64_t>{},
          [&](const tbb::blocked_range<size_t>& r, std::vector<uint64_t> acc) {
            for (size_t i = r.begin(); i != r.end(); ++i) AddStats(input.Slice(planes[i]), acc);
            return acc;
          },
          [](std::vector<uint64_t> a, const std::vector<uint64_t>& b) {
            if (a.empty()) return b;
            for (size_t i = 0; i < b.size(); ++i) a[i] += b[i];
            return a;
          });
      return PrepareFromStats({}, stats);
    }
    Histogram total = tbb::parallel_reduce(
        all, empty,
        [&](const tbb::blocked_range<size_t>& r, Histogram acc) {
          for (size_t i = r.begin(); i != r.end(); ++i) acc.Add(input.Slice(planes[i]));
          return acc;
        },
        [](Histogram a, const Histogram& b) {
          for (size_t i = 0; i < a.counts.size(); ++i) a.counts[i] += b.counts[i];
          return a;
        });
    stack_lo_ = total.Percentile(low_);
    stack_hi_ = total.Percentile(high_);
    return absl::OkStatus();
  }

  // Integer pixels: the histogram of the slice (256 or 65536 counts).
  bool AddStats(const cv::Mat& slice, std::vector<uint64_t>& stats) const override {
    if (slice.depth() != CV_8U && slice.depth() != CV_16U) return false;
    Histogram h = IntegerHistogram(slice.depth());
    if (stats.size() == h.counts.size()) h.counts.swap(stats);
    h.Add(slice);
    stats.swap(h.counts);
    return true;
  }

  absl::Status PrepareFromStats(const SliceFormat&, const std::vector<uint64_t>& stats) override {
    if (stats.size() != 256 && stats.size() != 65536) {
      return absl::InvalidArgumentError(absl::StrCat("normalize: statistics of ", stats.size(),
                                                     " bins; a histogram has 256 or 65536"));
    }
    const Histogram total{0, 1, stats};
    stack_lo_ = total.Percentile(low_);
    stack_hi_ = total.Percentile(high_);
    return absl::OkStatus();
  }

  void Apply(const cv::Mat& src, cv::Mat& dst) const override {
    if (whole_stack_) return Stretch(src, dst, stack_lo_, stack_hi_, to_);
    if (src.depth() == CV_32F) {
      return Stretch(src, dst, FloatPercentile(src, low_), FloatPercentile(src, high_), to_);
    }
    Histogram h = IntegerHistogram(src.depth());
    h.Add(src);
    Stretch(src, dst, h.Percentile(low_), h.Percentile(high_), to_);
  }

 private:
  double low_, high_;
  bool whole_stack_;
  bool per_time_point_;
  std::optional<PixelType> to_;
  double stack_lo_ = 0, stack_hi_ = 0;
};

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  const double low = p.Double("low"), high = p.Double("high");
  if (low >= high) {
    return ParamError(Info(), absl::StrCat("low=", low, " must be below high=", high));
  }
  const std::string& scope = p.Choice("scope");
  return std::make_unique<Normalize>(low, high, scope != "slice", scope == "timepoint",
                                     std::nullopt);
}

}  // namespace

OperationDef NormalizeOperation() { return {Info(), Make}; }

std::unique_ptr<SliceOp> StackPercentileStretch(double low, double high, PixelType to) {
  return std::make_unique<Normalize>(low, high, true, false, to);
}

}  // namespace stackproc::core::ops
