#include "core/tools/synthetic.h"

#include <tbb/parallel_for.h>

#include <cmath>
#include <opencv2/imgproc.hpp>

#include "core/base/status_macros.h"

namespace stackproc::core {

absl::StatusOr<std::unique_ptr<SyntheticSource>> SyntheticSource::Create(const StackShape& shape,
                                                                         PixelType type,
                                                                         uint32_t seed) {
  STACKPROC_RETURN_IF_ERROR(StackBytes(shape, type).status());
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
  StackInfo info;
  info.shape = shape;
  info.type = type;
  return std::unique_ptr<SyntheticSource>(new SyntheticSource(std::move(info), base, top, seed));
}

absl::Status SyntheticSource::Read(int64_t z, uint8_t* buffer) {
  const int h = base_.rows;
  cv::Mat slice(h, base_.cols, CV_32F);
  const int shift = static_cast<int>((z * 3) % h);
  // Row roll by `shift`, then a per-slice brightness change and noise.
  if (shift > 0) base_.rowRange(h - shift, h).copyTo(slice.rowRange(0, shift));
  base_.rowRange(0, h - shift).copyTo(slice.rowRange(shift, h));
  const double gain = 0.7 + 0.3 * std::pow(std::sin(static_cast<double>(z) / 17.0), 2);
  cv::Mat noise(h, base_.cols, CV_32F);
  cv::RNG slice_rng(seed_ * 7919u + static_cast<uint32_t>(z));
  slice_rng.fill(noise, cv::RNG::NORMAL, 0.0, 0.03 * top_);
  slice = slice * gain + noise;
  cv::Mat clipped = cv::max(cv::min(slice, top_), 0.0);
  cv::Mat out(h, base_.cols, CvType(info_.type), buffer);
  clipped.convertTo(out, CvType(info_.type));
  return absl::OkStatus();
}

absl::StatusOr<Stack> MakeSyntheticStack(const StackShape& shape, PixelType type, uint32_t seed) {
  STACKPROC_ASSIGN_OR_RETURN(std::unique_ptr<SyntheticSource> source,
                             SyntheticSource::Create(shape, type, seed));
  STACKPROC_ASSIGN_OR_RETURN(Stack stack, Stack::Allocate(shape, type));
  tbb::parallel_for(int64_t{0}, shape.depth,
                    [&](int64_t z) { (void)source->Read(z, stack.slice_data(z)); });
  return stack;
}

}  // namespace stackproc::core
