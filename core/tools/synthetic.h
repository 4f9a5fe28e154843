// Deterministic microscopy-like test stacks: blurred blobs on a background with noise, each
// slice shifted and rescaled so that slices differ. For samples, tests and benchmarks.
#pragma once

#include <cstdint>
#include <memory>
#include <opencv2/core/mat.hpp>

#include "absl/status/statusor.h"
#include "core/exec/engine.h"
#include "core/stack/stack.h"

namespace stackproc::core {

// The stack's slices made as they are read (any order, many threads at once): the memory of one
// slice's pattern, whatever the depth. The same (shape, type, seed) always gives the same
// pixels. Integer stacks use about 12 bits of range for uint16 (like a typical sCMOS camera)
// and most of the range for uint8; float32 lies in [0, 1].
class SyntheticSource final : public SliceSource {
 public:
  static absl::StatusOr<std::unique_ptr<SyntheticSource>> Create(const StackShape& shape,
                                                                 PixelType type, uint32_t seed = 1);
  const StackInfo& info() const override { return info_; }
  absl::Status Read(int64_t z, uint8_t* buffer) override;

 private:
  SyntheticSource(StackInfo info, cv::Mat base, double top, uint32_t seed)
      : info_(std::move(info)), base_(std::move(base)), top_(top), seed_(seed) {}

  const StackInfo info_;
  const cv::Mat base_;  // the blobs, float32, before each slice's shift, gain and noise
  const double top_;
  const uint32_t seed_;
};

// The whole stack in memory (for tests): SyntheticSource's slices.
absl::StatusOr<Stack> MakeSyntheticStack(const StackShape& shape, PixelType type,
                                         uint32_t seed = 1);

}  // namespace stackproc::core
