#include "core/stack/stack.h"

#include <malloc.h>
#include <sys/mman.h>

#include <climits>
#include <cstdlib>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/base/status_macros.h"

namespace stackproc::core {

void KeepMessageBuffersInTheHeap() {
  mallopt(M_MMAP_THRESHOLD, 16 << 20);  // at most 32 MiB on 64-bit glibc
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  mallopt(M_ARENA_MAX, 1);
}

void ReturnFreeMemory() {
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  // Under a sanitizer the heap is the sanitizer's, not glibc's: glibc's malloc_trim then walks
  // arenas it never set up (an ASan run crashed in it, in mtrim).
  malloc_trim(0);
#endif
}

std::string ShapeString(const StackShape& shape) {
  return absl::StrCat(shape.depth, "x", shape.height, "x", shape.width);
}

absl::StatusOr<StackShape> ParseShape(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, 'x');
  StackShape shape;
  if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &shape.depth) ||
      !absl::SimpleAtoi(parts[1], &shape.height) || !absl::SimpleAtoi(parts[2], &shape.width) ||
      shape.depth < 1 || shape.height < 1 || shape.width < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\" is not DEPTHxHEIGHTxWIDTH, e.g. 64x512x512"));
  }
  return shape;
}

absl::StatusOr<size_t> SliceBytes(const StackShape& shape, PixelType type) {
  if (shape.depth <= 0 || shape.height <= 0 || shape.width <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("stack shape ", ShapeString(shape), " has a dimension that is not positive"));
  }
  if (shape.height > INT_MAX || shape.width > INT_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("slice ", shape.height, "x", shape.width, " is too large to index"));
  }
  size_t bytes = 0;
  if (__builtin_mul_overflow(static_cast<size_t>(shape.height), static_cast<size_t>(shape.width),
                             &bytes) ||
      __builtin_mul_overflow(bytes, BytesPerPixel(type), &bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("slice size of ", ShapeString(shape), " overflows"));
  }
  return bytes;
}

absl::StatusOr<size_t> StackBytes(const StackShape& shape, PixelType type) {
  STACKPROC_ASSIGN_OR_RETURN(size_t slice, SliceBytes(shape, type));
  size_t bytes = 0;
  if (__builtin_mul_overflow(slice, static_cast<size_t>(shape.depth), &bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("stack size of ", ShapeString(shape), " overflows"));
  }
  return bytes;
}

void StackBufferFree::operator()(uint8_t* p) const {
  if (mapped_bytes != 0) {
    ::munmap(p, mapped_bytes);
  } else {
    std::free(p);
  }
}

absl::StatusOr<Stack> Stack::Allocate(const StackShape& shape, PixelType type) {
  STACKPROC_ASSIGN_OR_RETURN(size_t bytes, StackBytes(shape, type));
  constexpr size_t kAlign = 64;  // a cache line; also what SIMD kernels like
  constexpr size_t kMapAbove = size_t{1} << 20;
  StackBufferFree free;
  uint8_t* p = nullptr;
  if (bytes >= kMapAbove) {
    void* mapped = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (mapped != MAP_FAILED) {
      p = static_cast<uint8_t*>(mapped);
      free.mapped_bytes = bytes;
    }
  } else {
    p = static_cast<uint8_t*>(std::aligned_alloc(kAlign, (bytes + kAlign - 1) / kAlign * kAlign));
  }
  if (p == nullptr) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "cannot allocate %.2f GiB for a %s %s stack", static_cast<double>(bytes) / (1 << 30),
        ShapeString(shape), PixelTypeName(type)));
  }
  Stack stack;
  stack.shape_ = shape;
  stack.type_ = type;
  stack.slice_bytes_ = bytes / static_cast<size_t>(shape.depth);
  stack.data_ = std::unique_ptr<uint8_t[], StackBufferFree>(p, free);
  return stack;
}

cv::Mat Stack::Slice(int64_t z) {
  return cv::Mat(static_cast<int>(shape_.height), static_cast<int>(shape_.width), CvType(type_),
                 slice_data(z));
}

cv::Mat Stack::Slice(int64_t z) const {
  // cv::Mat has no read-only view; callers of the const overload promise not to write.
  return cv::Mat(static_cast<int>(shape_.height), static_cast<int>(shape_.width), CvType(type_),
                 const_cast<uint8_t*>(slice_data(z)));
}

}  // namespace stackproc::core
