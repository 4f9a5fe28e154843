#include "core/tools/synthetic.h"

#include <tbb/parallel_for.h>

#include <cmath>
#include <opencv2/imgproc.hpp>

#include "core/base/status_macros.h"

namespace stackproc::core {

absl::StatusOr<Stack> MakeSyntheticStack(const StackShape& shape, PixelType type, uint32_t seed) {
  STACKPROC_ASSIGN_OR_RETURN(Stack stack, Stack::Allocate(shape, type));
  const int h = static_cast<int>(shape.height), w = static_cast<int>(shape.width);
  const double top = type == PixelType::kUint8 ? 255.0 : type == PixelType::kUint16 ? 4095.0 : 1.0;

  cv::RNG rng(seed);
  cv::Mat base(h, w, CV_32F, cv::Scalar(0));
  const int blobs = std::max(8, h * w / 20000);
  for (int i = 0; i < blobs; ++i) {
    cv::circle(base, {rng.uniform(0, w), rng.uniform(0, h)}, rng.uniform(2, 12),
               cv::Scalar(rng.uniform(0.3, 1.0)), cv::FILLED);
  }
  cv::GaussianBlur(base, base, cv::Size(0, 0), 2.0);
  double max = 0;
  cv::minMaxLoc(base, nullptr, &max);
  base = base * (0.8 * top / std::max(max, 1e-6)) + 0.05 * top;

  tbb::parallel_for(int64_t{0}, shape.depth, [&](int64_t z) {
    cv::Mat slice(h, w, CV_32F);
    const int shift = static_cast<int>((z * 3) % h);
    // Row roll by `shift`, then a per-slice brightness change and noise.
    if (shift > 0) base.rowRange(h - shift, h).copyTo(slice.rowRange(0, shift));
    base.rowRange(0, h - shift).copyTo(slice.rowRange(shift, h));
    const double gain = 0.7 + 0.3 * std::pow(std::sin(static_cast<double>(z) / 17.0), 2);
    cv::Mat noise(h, w, CV_32F);
    cv::RNG slice_rng(seed * 7919u + static_cast<uint32_t>(z));
    slice_rng.fill(noise, cv::RNG::NORMAL, 0.0, 0.03 * top);
    slice = slice * gain + noise;
    cv::Mat clipped = cv::max(cv::min(slice, top), 0.0);
    cv::Mat out = stack.Slice(z);
    clipped.convertTo(out, CvType(type));
  });
  return stack;
}

}  // namespace stackproc::core
