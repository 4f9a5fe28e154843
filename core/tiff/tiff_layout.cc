#include "core/tiff/tiff_layout.h"

#include <tiffio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace stackproc::core {
namespace {

// Strips of about this many bytes: large enough for few syscalls, small enough for codecs to
// work in cache.
constexpr size_t kTargetStripBytes = 512 * 1024;

}  // namespace

uint16_t TiffCompression(Compression c) {
  switch (c) {
    case Compression::kDefault:
    case Compression::kLz4:  // refused by TiffPageWriter::Create
    case Compression::kNone:
      return COMPRESSION_NONE;
    case Compression::kDeflate:
      return COMPRESSION_ADOBE_DEFLATE;
    case Compression::kZstd:
      return COMPRESSION_ZSTD;
    case Compression::kLzw:
      return COMPRESSION_LZW;
  }
  return COMPRESSION_NONE;
}

// `error`: the errno behind it, 0 when unknown. A full disk, an exhausted quota or the file
// size limit is ResourceExhausted; anything else Internal.
absl::Status IoError(const std::string& path, absl::string_view what, const std::string& detail,
                     int error) {
  std::string message = absl::StrCat(path, ": ", what, detail.empty() ? "" : ": ", detail);
  if (error != 0 && detail.find(std::strerror(error)) == std::string::npos) {
    absl::StrAppend(&message, " (", std::strerror(error), ")");
  }
  if (error == ENOSPC || error == EDQUOT) {
    return absl::ResourceExhaustedError(absl::StrCat(message, ": the disk is full"));
  }
  if (error == EFBIG) {
    return absl::ResourceExhaustedError(absl::StrCat(message, ": the file size limit is reached"));
  }
  return absl::InternalError(message);
}

// Rows per strip of about kTargetStripBytes.
uint32_t RowsPerStrip(size_t slice_bytes, int64_t height) {
  const auto rows = static_cast<size_t>(height);
  return static_cast<uint32_t>(
      std::clamp<size_t>(kTargetStripBytes / (slice_bytes / rows), 1, rows));
}

// The Predictor tag of a page: what `predictor` asks for, its default (compression.h) made
// concrete; differencing is floating-point for float32.
uint16_t PredictorFor(Compression compression, PixelType type, Predictor predictor) {
  if (compression == Compression::kNone) return PREDICTOR_NONE;
  if (predictor == Predictor::kDefault) {
    const bool imagej_undoes = compression == Compression::kLzw && type != PixelType::kFloat32;
    predictor = imagej_undoes || compression == Compression::kZstd ? Predictor::kDifferencing
                                                                   : Predictor::kNone;
  }
  if (predictor == Predictor::kNone) return PREDICTOR_NONE;
  return type == PixelType::kFloat32 ? PREDICTOR_FLOATINGPOINT : PREDICTOR_HORIZONTAL;
}

absl::StatusOr<Layout> LayoutFor(const StackShape& shape, PixelType type, StackMetadata metadata,
                                 const WriteOptions& requested) {
  Layout layout;
  layout.options = requested;
  STACKPROC_ASSIGN_OR_RETURN(layout.options.compression,
                             ResolveTiffCompression(requested.compression));
  // Page 0's description as written: the stack's (or a default), with what made it.
  if (metadata.description.empty()) {
    metadata.description = DefaultDescription(shape, type, metadata.dims);
  }
  if (metadata.provenance) {
    metadata.description = DescriptionWithProvenance(metadata.description, *metadata.provenance);
    metadata.provenance.reset();
  }
  STACKPROC_ASSIGN_OR_RETURN(size_t stack_bytes, StackBytes(shape, type));
  STACKPROC_ASSIGN_OR_RETURN(layout.slice_bytes, SliceBytes(shape, type));
  // The directories count too: at most 512 bytes a page and 16 a strip (a BigTIFF's sizes), and
  // page 0's description; many small slices make them gigabytes.
  const uint64_t rows = RowsPerStrip(layout.slice_bytes, shape.height);
  const uint64_t strips = (static_cast<uint64_t>(shape.height) + rows - 1) / rows;
  const uint64_t directories = static_cast<uint64_t>(shape.depth) * (512 + 16 * strips) +
                               metadata.description.size() + requested.shard_record.size();
  layout.bigtiff = stack_bytes + directories > requested.bigtiff_threshold;
  layout.metadata = std::move(metadata);
  return layout;
}

}  // namespace stackproc::core
