// The levels of a multiscale image: each the mean of 2x2 blocks of the one before (2x2x2 when
// z is halved too), computed slice by slice as the finer level's slices arrive.
#pragma once

#include <cstdint>

#include "core/stack/pixel_type.h"

namespace stackproc::core {

// The length of an axis of `n` halved: ceil(n / 2) (an odd last pixel stands alone).
inline int64_t Halved(int64_t n) { return (n + 1) / 2; }

// Halves a slice in y and x: each output pixel is the mean of its 2x2 block (of the pixels
// there are, at an odd edge), rounded half up for the integer types. `out` holds
// Halved(height) x Halved(width) pixels.
void HalveSlice(PixelType type, const uint8_t* in, int64_t height, int64_t width, uint8_t* out);

// The mean of two slices of `count` pixels, rounded half up; `out` may be `a`.
void MeanOfSlices(PixelType type, const uint8_t* a, const uint8_t* b, int64_t count, uint8_t* out);

}  // namespace stackproc::core
