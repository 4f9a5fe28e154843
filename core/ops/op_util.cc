#include "core/ops/op_util.h"

#include <opencv2/imgproc.hpp>

#include "absl/strings/str_cat.h"

namespace stackproc::core::ops {

absl::Status ParamError(const OperationInfo& info, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(info.name, ": ", message));
}

absl::Status CheckOdd(const OperationInfo& info, const std::string& param, int value) {
  if (value % 2 == 1) return absl::OkStatus();
  return ParamError(info, absl::StrCat(param, "=", value, " must be odd"));
}

cv::Mat ScipyGaussianKernel(double sigma, double truncate, int depth) {
  const int radius = static_cast<int>(truncate * sigma + 0.5);
  return cv::getGaussianKernel(2 * radius + 1, sigma, depth);
}

}  // namespace stackproc::core::ops
