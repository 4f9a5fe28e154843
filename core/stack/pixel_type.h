// Pixel types of a stack: one sample per pixel, 8/16-bit unsigned or 32-bit float.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stackproc::core {

enum class PixelType { kUint8, kUint16, kFloat32 };

inline constexpr PixelType kAllPixelTypes[] = {PixelType::kUint8, PixelType::kUint16,
                                               PixelType::kFloat32};

// Bytes of one pixel: 1, 2 or 4.
size_t BytesPerPixel(PixelType type);

// The OpenCV single-channel type (CV_8UC1, CV_16UC1, CV_32FC1).
int CvType(PixelType type);

// The pixel type of an OpenCV single-channel type; InvalidArgument for any other.
absl::StatusOr<PixelType> FromCvType(int cv_type);

// "uint8", "uint16", "float32".
absl::string_view PixelTypeName(PixelType type);

// Inverse of PixelTypeName; InvalidArgument listing the valid names otherwise.
absl::StatusOr<PixelType> ParsePixelType(absl::string_view name);

// The value that means "full intensity": 255, 65535, or 1.0 for float32.
double FullScale(PixelType type);

}  // namespace stackproc::core
