// Deterministic microscopy-like test stacks: blurred blobs on a background with noise, each
// slice shifted and rescaled so that slices differ. For samples, tests and benchmarks.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "core/stack/stack.h"

namespace stackproc::core {

// The same (shape, type, seed) always gives the same pixels. Integer stacks use about 12 bits
// of range for uint16 (like a typical sCMOS camera) and most of the range for uint8; float32
// lies in [0, 1].
absl::StatusOr<Stack> MakeSyntheticStack(const StackShape& shape, PixelType type,
                                         uint32_t seed = 1);

}  // namespace stackproc::core
