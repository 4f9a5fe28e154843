// How TiffPageWriter lays a stack out, shared by its writing and its taking up (Resume):
// the tags' values, the strips, the layout of a stack's pages, and its errors. Internal to
// core/tiff.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/stack/stack.h"
#include "core/tiff/tiff_writer.h"

namespace stackproc::core {

// The Compression tag's value for `c`.
uint16_t TiffCompression(Compression c);

// `error`: the errno behind it, 0 when unknown. A full disk, an exhausted quota or the file
// size limit is ResourceExhausted; anything else Internal.
absl::Status IoError(const std::string& path, absl::string_view what, const std::string& detail,
                     int error);

// Rows per strip of about 512 KiB.
uint32_t RowsPerStrip(size_t slice_bytes, int64_t height);

// The Predictor tag of a page: what `predictor` asks for, its default (compression.h) made
// concrete; differencing is floating-point for float32.
uint16_t PredictorFor(Compression compression, PixelType type, Predictor predictor);

// How a stack's pages are written: the options resolved, page 0's description, and whether it
// takes a BigTIFF.
struct Layout {
  StackMetadata metadata;
  WriteOptions options;
  size_t slice_bytes = 0;
  bool bigtiff = false;
};
absl::StatusOr<Layout> LayoutFor(const StackShape& shape, PixelType type, StackMetadata metadata,
                                 const WriteOptions& requested);

}  // namespace stackproc::core
