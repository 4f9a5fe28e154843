#include "core/io/zarr_options.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "core/tiff/compression.h"

namespace stackproc::core {

std::array<int64_t, 3> DefaultZarrChunks(const StackShape& shape) {
  return {1, std::clamp<int64_t>(shape.height, 1, 1024), std::clamp<int64_t>(shape.width, 1, 1024)};
}

absl::StatusOr<ZarrCodec> ZarrCodecFor(Compression compression, int level) {
  STACKPROC_RETURN_IF_ERROR(CheckCompressionLevel(compression, level));
  const int l = CompressionLevel(compression, level);
  switch (compression) {
    case Compression::kNone:
      return ZarrCodec{};
    case Compression::kDeflate:
      return ZarrCodec{.id = ZarrCodecId::kZlib, .level = l, .blosc_name = "", .shuffle = 0};
    case Compression::kZstd:
      if (l > 9) {
        return absl::InvalidArgumentError(
            absl::StrCat("zstd:level=", l, ": OME-Zarr's zstd is blosc's, whose levels are 1-9"));
      }
      return ZarrCodec{.id = ZarrCodecId::kBlosc, .level = l, .blosc_name = "zstd", .shuffle = 1};
    case Compression::kDefault:  // lz4: as fast as none, about half the size
                                 // (tests/bench/formats.py)
    case Compression::kLz4:
      return ZarrCodec{.id = ZarrCodecId::kBlosc,
                       .level = CompressionLevel(Compression::kLz4, level),
                       .blosc_name = "lz4",
                       .shuffle = 1};
    case Compression::kLzw:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      CompressionName(compression),
      " is not an OME-Zarr compression (OME-Zarr: ", CodecNames(&CodecInfo::zarr), ")"));
}

absl::Status ValidateZarrWrite(const WriteOptions& options) {
  STACKPROC_RETURN_IF_ERROR(ZarrCodecFor(options.compression, options.compression_level).status());
  if (options.predictor != Predictor::kDefault) {
    return absl::InvalidArgumentError(
        "predictor is a TIFF option (OME-Zarr's blosc codecs shuffle bytes instead)");
  }
  if (options.pyramid_levels < 0 || options.pyramid_levels > kMaxPyramidLevels) {
    return absl::InvalidArgumentError(
        absl::StrCat("pyramid levels ", options.pyramid_levels, ": 0-", kMaxPyramidLevels));
  }
  if (options.chunks && *std::min_element(options.chunks->begin(), options.chunks->end()) < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunks ", absl::StrJoin(*options.chunks, "x"), ": each side at least 1"));
  }
  return absl::OkStatus();
}

}  // namespace stackproc::core
