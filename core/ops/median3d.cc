// median3d: the median of the size x size x size voxels around each (scipy.ndimage.
// median_filter with mode="mirror"), exact, by forgetful selection (select.h).
#include <algorithm>
#include <opencv2/core.hpp>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/ops/op_util.h"
#include "core/ops/ops.h"
#include "core/ops/select.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{
      "median3d",
      "median of the size x size x size voxels around each (scipy.ndimage.median_filter, "
      "mode mirror)",
      {IntParam("size", 3, 3, 5, "box side in pixels and z-slices: 3 or 5")},
      {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32}};
  return info;
}

class Median3d final : public SliceOp {
 public:
  explicit Median3d(int size) : h_(size / 2) {}
  absl::StatusOr<SliceFormat> OutputFormat(const SliceFormat& in) const override {
    if (absl::Status s = CheckPixelType(Info(), in.type); !s.ok()) return s;
    return in;
  }
  int HaloPlanes() const override { return h_; }
  void Apply(const cv::Mat& src, cv::Mat& dst) const override {
    ApplyPlanes(std::vector<cv::Mat>(static_cast<size_t>(2 * h_ + 1), src), dst);
  }
  void ApplyPlanes(const std::vector<cv::Mat>& planes, cv::Mat& dst) const override {
    switch (dst.depth()) {
      case CV_8U:
        return Run<uint8_t>(planes, dst);
      case CV_16U:
        return Run<uint16_t>(planes, dst);
      default:
        return Run<float>(planes, dst);
    }
  }

 private:
  template <typename T>
  void Run(const std::vector<cv::Mat>& planes, cv::Mat& dst) const {
    const int side = 2 * h_ + 1;
    const int width = dst.cols;
    const int padded = width + 2 * h_;
    thread_local std::vector<T> rows, working;
    thread_local std::vector<const T*> values;
    rows.resize(static_cast<size_t>(side * side * padded));
    values.resize(static_cast<size_t>(side * side * side));
    for (int y = 0; y < dst.rows; ++y) {
      // The side x side rows around row y, each mirrored h pixels past both ends.
      for (int dz = 0; dz < side; ++dz) {
        for (int dy = 0; dy < side; ++dy) {
          const T* in = planes[static_cast<size_t>(dz)].ptr<T>(
              cv::borderInterpolate(y + dy - h_, dst.rows, cv::BORDER_REFLECT_101));
          T* pad = rows.data() + static_cast<size_t>((dz * side + dy) * padded);
          std::copy(in, in + width, pad + h_);
          for (int i = 1; i <= h_; ++i) {
            pad[h_ - i] = in[cv::borderInterpolate(-i, width, cv::BORDER_REFLECT_101)];
            pad[h_ + width - 1 + i] =
                in[cv::borderInterpolate(width - 1 + i, width, cv::BORDER_REFLECT_101)];
          }
        }
      }
      T* out = dst.ptr<T>(y);
      for (int x0 = 0; x0 < width; x0 += kRun) {
        size_t j = 0;
        for (int r = 0; r < side * side; ++r) {
          for (int dx = 0; dx < side; ++dx) {
            values[j++] = rows.data() + static_cast<size_t>(r * padded + x0 + dx);
          }
        }
        SelectMedians(values, std::min(kRun, width - x0), out + x0, working);
      }
    }
  }

  const int h_;
};

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  const int size = p.Int("size");
  STACKPROC_RETURN_IF_ERROR(CheckOdd(Info(), "size", size));
  return std::make_unique<Median3d>(size);
}

}  // namespace

OperationDef Median3dOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
