#include "core/stack/pixel_type.h"

#include <opencv2/core.hpp>

#include "absl/strings/str_cat.h"

namespace stackproc::core {

size_t BytesPerPixel(PixelType type) {
  switch (type) {
    case PixelType::kUint8:
      return 1;
    case PixelType::kUint16:
      return 2;
    case PixelType::kFloat32:
      return 4;
  }
  return 0;
}

int CvType(PixelType type) {
  switch (type) {
    case PixelType::kUint8:
      return CV_8UC1;
    case PixelType::kUint16:
      return CV_16UC1;
    case PixelType::kFloat32:
      return CV_32FC1;
  }
  return -1;
}

absl::StatusOr<PixelType> FromCvType(int cv_type) {
  switch (cv_type) {
    case CV_8UC1:
      return PixelType::kUint8;
    case CV_16UC1:
      return PixelType::kUint16;
    case CV_32FC1:
      return PixelType::kFloat32;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("OpenCV type ", cv_type, " is not a stack pixel type"));
  }
}

absl::string_view PixelTypeName(PixelType type) {
  switch (type) {
    case PixelType::kUint8:
      return "uint8";
    case PixelType::kUint16:
      return "uint16";
    case PixelType::kFloat32:
      return "float32";
  }
  return "unknown";
}

absl::StatusOr<PixelType> ParsePixelType(absl::string_view name) {
  for (PixelType t : kAllPixelTypes) {
    if (name == PixelTypeName(t)) return t;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown pixel type '", name, "' (use uint8, uint16 or float32)"));
}

double FullScale(PixelType type) {
  switch (type) {
    case PixelType::kUint8:
      return 255.0;
    case PixelType::kUint16:
      return 65535.0;
    case PixelType::kFloat32:
      return 1.0;
  }
  return 1.0;
}

}  // namespace stackproc::core
