// How large a stack may be, whatever its format: every reader, the streamed job's header and
// the server's flags (--max-slices, --max-side, --max-stack-bytes) check one StackLimits.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/stack/pixel_type.h"
#include "core/stack/stack.h"

namespace stackproc::core {

struct StackLimits {
  int64_t max_pages = 100'000;            // slices
  int64_t max_side = kMaxSliceSide;       // pixels along X or Y
  uint64_t max_stack_bytes = 1ull << 40;  // 1 TiB

  // OK when `shape` of `type` is within the limits; else the first refusal below, or
  // InvalidArgument for a side of 0 or less. `what` names the stack ("in.tif", "header").
  absl::Status Check(absl::string_view what, const StackShape& shape, PixelType type) const;

  // The refusals (ResourceExhausted), one wording each for every reader, naming the stackprocd
  // flag that sets the limit: "WHAT: 40000x300 pixels exceeds the limit of 32768 pixels per
  // side (--max-side)".
  absl::Status SideRefused(absl::string_view what, int64_t width, int64_t height) const;
  absl::Status DepthRefused(absl::string_view what) const;  // more than max_pages slices
  absl::Status BytesRefused(absl::string_view what, uint64_t bytes) const;
};

}  // namespace stackproc::core
