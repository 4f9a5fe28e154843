// The separable 3-D filters: gaussian3d and mean3d. Each output plane is the planes around it
// weighted along z (accumulated in float), then filtered along y and x by the same kind of
// kernel (cv::sepFilter2D, reflect-101 border), rounded once at the end: the order and the
// borders of scipy.ndimage's gaussian_filter and uniform_filter with mode="mirror".
#include <cmath>
#include <opencv2/imgproc.hpp>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace stackproc::core::ops {
namespace {

const std::vector<PixelType> kAllTypes = {PixelType::kUint8, PixelType::kUint16,
                                          PixelType::kFloat32};

// A 3-D filter whose kernel is the product of a kernel along z and one along y and x.
class Separable3d final : public SliceOp {
 public:
  Separable3d(const OperationInfo& info, cv::Mat kz, cv::Mat kxy)
      : info_(info), kz_(std::move(kz)), kxy_(std::move(kxy)) {}

  absl::StatusOr<SliceFormat> OutputFormat(const SliceFormat& in) const override {
    if (absl::Status s = CheckPixelType(info_, in.type); !s.ok()) return s;
    return in;
  }
  int HaloPlanes() const override { return kz_.rows / 2; }
  void Apply(const cv::Mat& src, cv::Mat& dst) const override {
    ApplyPlanes(std::vector<cv::Mat>(static_cast<size_t>(kz_.rows), src), dst);
  }
  void ApplyPlanes(const std::vector<cv::Mat>& planes, cv::Mat& dst) const override {
    auto& [sum, filtered] = scratch_.local();
    sum.create(dst.rows, dst.cols, CV_32F);
    switch (planes[0].depth()) {
      case CV_8U:
        AddUp<uint8_t>(planes, sum);
        break;
      case CV_16U:
        AddUp<uint16_t>(planes, sum);
        break;
      default:
        AddUp<float>(planes, sum);
    }
    cv::Mat& xy = dst.depth() == CV_32F ? dst : filtered;
    cv::sepFilter2D(sum, xy, CV_32F, kxy_, kxy_, cv::Point(-1, -1), 0, cv::BORDER_REFLECT_101);
    if (&xy != &dst) xy.convertTo(dst, dst.type());  // rounded to the nearest
  }

 private:
  // sum = the planes weighted by kz_, pixel by pixel.
  template <typename T>
  void AddUp(const std::vector<cv::Mat>& planes, cv::Mat& sum) const {
    const int width = sum.cols;
    for (int y = 0; y < sum.rows; ++y) {
      float* out = sum.ptr<float>(y);
      const T* first = planes[0].ptr<T>(y);
      const float k0 = kz_.at<float>(0);
      for (int x = 0; x < width; ++x) out[x] = k0 * static_cast<float>(first[x]);
      for (size_t d = 1; d < planes.size(); ++d) {
        const T* in = planes[d].ptr<T>(y);
        const float k = kz_.at<float>(static_cast<int>(d));
        for (int x = 0; x < width; ++x) out[x] += k * static_cast<float>(in[x]);
      }
    }
  }

  const OperationInfo& info_;
  const cv::Mat kz_, kxy_;  // column vectors of CV_32F, odd lengths
  struct Planes {
    cv::Mat sum, filtered;  // float
  };
  Scratch<Planes> scratch_;
};

const OperationInfo& GaussianInfo() {
  static const OperationInfo info{
      "gaussian3d",
      "3-D Gaussian blur over the z-slices around each plane (scipy.ndimage.gaussian_filter, "
      "mode mirror)",
      {DoubleParam("sigma", 1, 0.1, 50, "standard deviation along y and x, in pixels"),
       OnlyWhenGiven(DoubleParam("sigma_z", 1, 0.1, 50,
                                 "standard deviation along z, in z-slices; default: sigma")),
       DoubleParam("truncate", 4, 1, 10,
                   "kernel radius in standard deviations: int(truncate x sigma + 0.5) pixels or "
                   "z-slices on each side")},
      kAllTypes};
  return info;
}

absl::StatusOr<std::unique_ptr<SliceOp>> MakeGaussian(const ParamValues& p) {
  const double sigma = p.Double("sigma");
  const double sigma_z = p.IsSet("sigma_z") ? p.Double("sigma_z") : sigma;
  const double truncate = p.Double("truncate");
  return std::make_unique<Separable3d>(GaussianInfo(),
                                       ScipyGaussianKernel(sigma_z, truncate, CV_32F),
                                       ScipyGaussianKernel(sigma, truncate, CV_32F));
}

const OperationInfo& MeanInfo() {
  static const OperationInfo info{
      "mean3d",
      "mean over a size x size x size box around each voxel (scipy.ndimage.uniform_filter, "
      "mode mirror)",
      {IntParam("size", 3, 3, 31, "box side in pixels and z-slices, odd"),
       OnlyWhenGiven(IntParam("size_z", 3, 1, 31, "box depth in z-slices, odd; default: size"))},
      kAllTypes};
  return info;
}

absl::StatusOr<std::unique_ptr<SliceOp>> MakeMean(const ParamValues& p) {
  const int size = p.Int("size");
  const int size_z = p.IsSet("size_z") ? p.Int("size_z") : size;
  STACKPROC_RETURN_IF_ERROR(CheckOdd(MeanInfo(), "size", size));
  STACKPROC_RETURN_IF_ERROR(CheckOdd(MeanInfo(), "size_z", size_z));
  return std::make_unique<Separable3d>(MeanInfo(),
                                       cv::Mat(size_z, 1, CV_32F, cv::Scalar(1.0 / size_z)),
                                       cv::Mat(size, 1, CV_32F, cv::Scalar(1.0 / size)));
}

}  // namespace

OperationDef Gaussian3dOperation() { return {GaussianInfo(), MakeGaussian}; }
OperationDef Mean3dOperation() { return {MeanInfo(), MakeMean}; }

}  // namespace stackproc::core::ops
