// The separable 3-D filters: gaussian3d and mean3d. Each output plane is the planes around it
// weighted along z (accumulated in float), then filtered along y and x by the same kind of
// kernel (cv::sepFilter2D, reflect-101 border), rounded once at the end: the order and the
// borders of scipy.ndimage's gaussian_filter and uniform_filter with mode="mirror".
#include <cmath>
#include <functional>
#include <opencv2/imgproc.hpp>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace stackproc::core::ops {
namespace {

const std::vector<PixelType> kAllTypes = {PixelType::kUint8, PixelType::kUint16,
                                          PixelType::kFloat32};

// The kernels of a separable 3-D filter: column vectors of CV_32F, odd lengths.
struct Kernels {
  cv::Mat z, y, x;
};
// The kernels of a filter whose extent is a distance, for voxels of a size.
using KernelsFor = std::function<absl::StatusOr<Kernels>(const VoxelSize&)>;

// A 3-D filter whose kernel is the product of a kernel along z, one along y and one along x.
class Separable3d final : public SliceOp {
 public:
  Separable3d(const OperationInfo& info, Kernels k)
      : info_(info), kz_(std::move(k.z)), ky_(std::move(k.y)), kx_(std::move(k.x)) {}
  // Kernels worked out when the voxel size is known (Calibrate).
  Separable3d(const OperationInfo& info, KernelsFor kernels_for)
      : info_(info), kernels_for_(std::move(kernels_for)) {}

  absl::Status Calibrate(const VoxelSize& voxel) override {
    if (!kernels_for_) return absl::OkStatus();
    STACKPROC_ASSIGN_OR_RETURN(Kernels k, kernels_for_(voxel));
    kz_ = std::move(k.z);
    ky_ = std::move(k.y);
    kx_ = std::move(k.x);
    return absl::OkStatus();
  }

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
    cv::sepFilter2D(sum, xy, CV_32F, kx_, ky_, cv::Point(-1, -1), 0, cv::BORDER_REFLECT_101);
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
  KernelsFor kernels_for_;
  cv::Mat kz_, ky_, kx_;  // set before any Apply
  struct Planes {
    cv::Mat sum, filtered;  // float
  };
  Scratch<Planes> scratch_;
};

// gaussian3d's sigmas: distances in any unit (units=physical) as small as kLeast; at most
// kMostVoxels voxels, and at least kLeastVoxels when given in voxels.
constexpr double kLeast = 1e-6, kLeastVoxels = 0.1, kMostVoxels = 50;

const OperationInfo& GaussianInfo() {
  static const OperationInfo info{
      "gaussian3d",
      "3-D Gaussian blur over the z-slices around each plane (scipy.ndimage.gaussian_filter, "
      "mode mirror)",
      {DoubleParam("sigma", 1, kLeast, 1e6,
                   "standard deviation along y and x, in pixels, 0.1 to 50 (units=physical: in "
                   "the stack's unit, 50 voxels at most)"),
       OnlyWhenGiven(DoubleParam("sigma_z", 1, kLeast, 1e6,
                                 "standard deviation along z, in z-slices, 0.1 to 50 "
                                 "(units=physical: in the stack's unit); default: sigma")),
       DoubleParam("truncate", 4, 1, 10,
                   "kernel radius in standard deviations: int(truncate x sigma + 0.5) pixels or "
                   "z-slices on each side"),
       ChoiceParam("units", {"voxels", "physical"},
                   "physical: sigmas are distances in the stack's unit (its voxel size: ImageJ's "
                   "spacing, OME-XML's PhysicalSize, OME-Zarr's scale), each axis its own")},
      kAllTypes};
  return info;
}

// "x 0.5, y 0.5 micrometer, no z": what a voxel size states.
std::string Describe(const VoxelSize& v) {
  std::vector<std::string> parts;
  for (auto [axis, size] : {std::pair{"x", &v.x}, {"y", &v.y}, {"z", &v.z}}) {
    parts.push_back(*size ? absl::StrCat(axis, " ", **size) : absl::StrCat("no ", axis));
  }
  return absl::StrCat(absl::StrJoin(parts, ", "), v.unit.empty() ? "" : " ", v.unit);
}

// scipy's kernels for sigmas that are distances, in voxels of `voxel`.
absl::StatusOr<Kernels> PhysicalGaussian(double sigma, double sigma_z, double truncate,
                                         const VoxelSize& voxel) {
  if (!voxel.x || !voxel.y || !voxel.z || *voxel.x <= 0 || *voxel.y <= 0 || *voxel.z <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gaussian3d: units=physical needs the voxel's size along x, y and z; the stack states ",
        Describe(voxel),
        " (ImageJ's unit= and spacing=, OME-XML's PhysicalSizeX/Y/Z, an OME-Zarr scale): give "
        "sigma in pixels and sigma_z in z-slices instead"));
  }
  Kernels k;
  for (auto [axis, distance, size, kernel] : {std::tuple{"x", sigma, *voxel.x, &k.x},
                                              {"y", sigma, *voxel.y, &k.y},
                                              {"z", sigma_z, *voxel.z, &k.z}}) {
    const double voxels = distance / size;
    if (voxels > kMostVoxels) {
      return absl::InvalidArgumentError(absl::StrCat(
          "gaussian3d: a sigma of ", distance, " ", voxel.unit, " is ", voxels, " voxels along ",
          axis, " (voxels of ", Describe(voxel), "): at most ", kMostVoxels));
    }
    *kernel = ScipyGaussianKernel(voxels, truncate, CV_32F);
  }
  return k;
}

absl::StatusOr<std::unique_ptr<SliceOp>> MakeGaussian(const ParamValues& p) {
  const double sigma = p.Double("sigma");
  const double sigma_z = p.IsSet("sigma_z") ? p.Double("sigma_z") : sigma;
  const double truncate = p.Double("truncate");
  if (p.Choice("units") == "physical") {
    return std::make_unique<Separable3d>(GaussianInfo(), [=](const VoxelSize& voxel) {
      return PhysicalGaussian(sigma, sigma_z, truncate, voxel);
    });
  }
  for (auto [name, value] : {std::pair{"sigma", sigma}, {"sigma_z", sigma_z}}) {
    if (value < kLeastVoxels || value > kMostVoxels) {
      return absl::InvalidArgumentError(absl::StrCat(
          "gaussian3d: ", name, "=", value, " is not valid in voxels (", kLeastVoxels, " to ",
          kMostVoxels, "; a distance in the stack's unit with units=physical)"));
    }
  }
  const cv::Mat xy = ScipyGaussianKernel(sigma, truncate, CV_32F);
  return std::make_unique<Separable3d>(
      GaussianInfo(), Kernels{ScipyGaussianKernel(sigma_z, truncate, CV_32F), xy, xy});
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
  const cv::Mat xy(size, 1, CV_32F, cv::Scalar(1.0 / size));
  return std::make_unique<Separable3d>(
      MeanInfo(), Kernels{cv::Mat(size_z, 1, CV_32F, cv::Scalar(1.0 / size_z)), xy, xy});
}

}  // namespace

OperationDef Gaussian3dOperation() { return {GaussianInfo(), MakeGaussian}; }
OperationDef Mean3dOperation() { return {MeanInfo(), MakeMean}; }

}  // namespace stackproc::core::ops
