// Inflates Deflate-compressed TIFF strips with ISA-L's igzip (1.3x libdeflate's speed and
// more than zlib's, which libtiff's codec uses: docs/benchmarks.md), for the layouts where the
// result is what libtiff would make with no more work than undoing the predictor. The reader
// falls back to libtiff for everything else.
// Internal to core/.
#pragma once

#include <tiffio.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/stack/pixel_type.h"

namespace stackproc::core {

// How the current directory's strips are inflated here, if they are: Deflate (either tag
// value), the file in this machine's byte order, and no predictor or horizontal differencing
// of 8- or 16-bit integers.
enum class Inflating { kNo, kPlain, kDifferenced };
Inflating CanInflateStrips(TIFF* tif, uint16_t compression, PixelType type);

// Strip `strip` (`rows` rows of `width` pixels of `samples` interleaved samples, `want` bytes)
// inflated into `dst`, its predictor undone (sample by sample) when `how` says so; `raw` holds the
// compressed bytes. False leaves the strip to libtiff: one igzip cannot take whole (padded past its
// rows, as some writers make the last strip) or corrupt data, which libtiff then reports in its
// words.
bool InflateStrip(TIFF* tif, Inflating how, uint32_t strip, PixelType type, uint32_t width,
                  uint16_t samples, size_t rows, uint8_t* dst, size_t want,
                  std::vector<uint8_t>& raw);

}  // namespace stackproc::core
