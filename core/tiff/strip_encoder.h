// Encodes TIFF strips outside libtiff, so that the strips of a page can be compressed on many
// threads at once (libtiff's codecs run on the thread that writes). Produces exactly what a
// TIFF reader expects for Compression = Adobe Deflate or ZSTD, with Predictor = horizontal
// differencing or none; the writer hands the results to TIFFWriteRawStrip in order. Internal to
// core/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "core/stack/pixel_type.h"
#include "core/tiff/tiff_writer.h"

namespace stackproc::core {

// Deflates `bytes` bytes at `data` into `out` as a zlib stream (or, with `gzip`, a gzip one):
// levels 1-3 through ISA-L's igzip at its level 3 (on 12-bit camera-like data 3.5x libdeflate's
// level 1 per thread for the same size; the same bytes in every process on machines of the same
// CPU features, which igzip's levels 1 and 2 do not always write), 4-12 through libdeflate. TIFF
// strips and Zarr chunks.
absl::Status EncodeDeflate(int level, bool gzip, const uint8_t* data, size_t bytes,
                           std::vector<uint8_t>& out);

// Whether EncodeStrip handles this combination (deflate or zstd; 8- or 16-bit integers). The
// others (LZW, float32's floating-point predictor, none) stay with libtiff.
bool CanEncodeStrips(Compression compression, PixelType type);

// Encodes `rows` rows of `row_bytes` bytes from `src` (native byte order, as the file is
// written) into `out`, each row differenced first when `differencing` (Predictor 2). `scratch`
// is reused between calls (the predictor works on a copy).
// `level`: WriteOptions::compression_level (0: the codec's default). Deflate at levels 1-3 goes
// through ISA-L's igzip (its level 3), at 4-9 through libdeflate: a zlib stream either way.
absl::Status EncodeStrip(Compression compression, int level, PixelType type, bool differencing,
                         const uint8_t* src, size_t rows, size_t row_bytes,
                         std::vector<uint8_t>& scratch, std::vector<uint8_t>& out);

}  // namespace stackproc::core
