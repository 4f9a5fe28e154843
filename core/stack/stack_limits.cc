#include "core/stack/stack_limits.h"

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace stackproc::core {

absl::Status StackLimits::Check(absl::string_view what, const StackShape& shape,
                                PixelType type) const {
  if (shape.depth <= 0 || shape.height <= 0 || shape.width <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": shape ", ShapeString(shape), " must be positive in every dimension"));
  }
  if (shape.height > max_side || shape.width > max_side) {
    return SideRefused(what, shape.width, shape.height);
  }
  if (shape.depth > max_pages)
    return DepthRefused(absl::StrCat(what, ": ", shape.depth, " slices"));
  STACKPROC_ASSIGN_OR_RETURN(size_t bytes, StackBytes(shape, type));
  if (bytes > max_stack_bytes) return BytesRefused(what, bytes);
  return absl::OkStatus();
}

absl::Status StackLimits::SideRefused(absl::string_view what, int64_t width, int64_t height) const {
  return absl::ResourceExhaustedError(absl::StrCat(what, ": ", width, "x", height,
                                                   " pixels exceeds the limit of ", max_side,
                                                   " pixels per side (--max-side)"));
}

absl::Status StackLimits::DepthRefused(absl::string_view what) const {
  return absl::ResourceExhaustedError(
      absl::StrCat(what, ": more than ", max_pages, " slices, the limit per stack (--max-slices)"));
}

absl::Status StackLimits::BytesRefused(absl::string_view what, uint64_t bytes) const {
  return absl::ResourceExhaustedError(absl::StrCat(what, ": a stack of ", bytes,
                                                   " bytes exceeds the limit of ", max_stack_bytes,
                                                   " bytes (--max-stack-bytes)"));
}

}  // namespace stackproc::core
