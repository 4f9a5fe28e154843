// A 3-D image stack: one contiguous Z x Y x X buffer, slices are non-owning cv::Mat views.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <opencv2/core/mat.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "core/stack/metadata.h"
#include "core/stack/pixel_type.h"

namespace stackproc::core {

struct StackShape {
  int64_t depth = 0;
  int64_t height = 0;
  int64_t width = 0;

  friend bool operator==(const StackShape&, const StackShape&) = default;
};

// What a stack is: its shape, pixel type and metadata (the source's, or the output's).
struct StackInfo {
  StackShape shape;
  PixelType type = PixelType::kUint8;
  StackMetadata metadata;
};

// The most pixels a slice has along X or Y, anywhere: files read, operations' output sizes. The
// server's --max-side may lower it for its jobs.
inline constexpr int kMaxSliceSide = 131'072;

// "DxHxW", e.g. "64x2048x2048".
std::string ShapeString(const StackShape& shape);
// The inverse of ShapeString: InvalidArgument unless three positive integers joined by "x".
absl::StatusOr<StackShape> ParseShape(absl::string_view text);

// Bytes of one slice and of the whole stack, overflow-checked. InvalidArgument when a dimension
// is not positive, a slice side exceeds what cv::Mat can index, or the size overflows.
absl::StatusOr<size_t> SliceBytes(const StackShape& shape, PixelType type);
absl::StatusOr<size_t> StackBytes(const StackShape& shape, PixelType type);

// Process-wide, for programs that stream pixels in ~1 MiB messages (the server, the client).
// By default glibc serves such blocks with a fresh mmap and hands freed heap back to the
// kernel, so every message faults its pages in anew; on a VM that costs more than copying the
// data (loopback streaming: ~300 -> ~480 MB/s). This keeps blocks up to 16 MiB in the heap,
// keeps up to 256 MiB of freed heap mapped, and uses one malloc arena, so the retained memory
// is not multiplied by the number of threads (server peak RSS for a 16 MiB window: 195 MiB with
// one arena per thread, 106 MiB with one).
void KeepMessageBuffersInTheHeap();

// Gives the free heap that KeepMessageBuffersInTheHeap keeps back to the kernel: called when a
// job's buffers are gone, so that an idle server holds only what it uses (after a streamed job
// with a 256 MiB window, ~300 MiB otherwise).
void ReturnFreeMemory();

// Releases a stack buffer (internal).
struct StackBufferFree {
  size_t mapped_bytes = 0;  // 0: from aligned_alloc; otherwise an mmap of this size
  void operator()(uint8_t* p) const;
};

// Owns the pixel buffer. Move-only. Slices are views into the one buffer: a task that writes
// slice z touches no other slice, so disjoint slices may be written concurrently without locks.
class Stack {
 public:
  Stack() = default;
  Stack(Stack&&) noexcept = default;
  Stack& operator=(Stack&&) noexcept = default;

  // Allocates an uninitialised stack. InvalidArgument for a bad shape, ResourceExhausted when
  // the memory cannot be had (the message says how much was asked for). Large buffers are
  // mapped with their pages populated up front: the stack is about to be written whole, and
  // faulting pages in one by one costs several times more (5x on a VM).
  static absl::StatusOr<Stack> Allocate(const StackShape& shape, PixelType type);

  const StackShape& shape() const { return shape_; }
  PixelType pixel_type() const { return type_; }
  int64_t depth() const { return shape_.depth; }
  size_t slice_bytes() const { return slice_bytes_; }
  size_t size_bytes() const { return slice_bytes_ * static_cast<size_t>(shape_.depth); }
  bool empty() const { return data_ == nullptr; }

  uint8_t* data() { return data_.get(); }
  const uint8_t* data() const { return data_.get(); }
  uint8_t* slice_data(int64_t z) { return data_.get() + slice_bytes_ * static_cast<size_t>(z); }
  const uint8_t* slice_data(int64_t z) const {
    return data_.get() + slice_bytes_ * static_cast<size_t>(z);
  }

  // A non-owning view of slice z (0 <= z < depth). It must not outlive the stack. The const
  // overload returns a view the caller must treat as read-only (cv::Mat has no const view).
  cv::Mat Slice(int64_t z);
  cv::Mat Slice(int64_t z) const;

  StackMetadata& metadata() { return metadata_; }
  const StackMetadata& metadata() const { return metadata_; }

 private:
  StackShape shape_;
  PixelType type_ = PixelType::kUint8;
  size_t slice_bytes_ = 0;
  std::unique_ptr<uint8_t[], StackBufferFree> data_;
  StackMetadata metadata_;
};

}  // namespace stackproc::core
