#include <cmath>
#include <opencv2/core.hpp>
#include <vector>

#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace stackproc::core::ops {
namespace {

const OperationInfo& Info() {
  static const OperationInfo info{
      "gamma",
      "gamma curve: full * (v / full)^gamma (full scale 255, 65535, or 1.0 for float32)",
      {DoubleParam("gamma", 1.0, 0.01, 100, "exponent; below 1 brightens, above 1 darkens")},
      {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32}};
  return info;
}

template <typename T>
std::vector<T> Table(double gamma, double full) {
  std::vector<T> table(static_cast<size_t>(full) + 1);
  for (size_t v = 0; v < table.size(); ++v) {
    table[v] = cv::saturate_cast<T>(full * std::pow(static_cast<double>(v) / full, gamma));
  }
  return table;
}

template <typename T>
void ApplyTable(const std::vector<T>& table, const cv::Mat& src, cv::Mat& dst) {
  for (int y = 0; y < src.rows; ++y) {
    const T* in = src.ptr<T>(y);
    T* out = dst.ptr<T>(y);
    for (int x = 0; x < src.cols; ++x) out[x] = table[in[x]];
  }
}

absl::StatusOr<std::unique_ptr<SliceOp>> Make(const ParamValues& p) {
  const double gamma = p.Double("gamma");
  auto table8 = std::make_shared<std::vector<uint8_t>>(Table<uint8_t>(gamma, 255.0));
  auto table16 = std::make_shared<std::vector<uint16_t>>(Table<uint16_t>(gamma, 65535.0));
  return MakeFormatPreserving(Info(), [=](const cv::Mat& src, cv::Mat& dst) {
    switch (src.depth()) {
      case CV_8U:
        return ApplyTable(*table8, src, dst);
      case CV_16U:
        return ApplyTable(*table16, src, dst);
      default:
        cv::max(src, 0.0, dst);  // negative values have no real power
        cv::pow(dst, gamma, dst);
    }
  });
}

}  // namespace

OperationDef GammaOperation() { return {Info(), Make}; }

}  // namespace stackproc::core::ops
