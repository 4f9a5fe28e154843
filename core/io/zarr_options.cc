#include "core/io/zarr_options.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "core/tiff/compression.h"
#include "core/zarr/zarr_metadata.h"

namespace stackproc::core {

std::array<int64_t, 3> DefaultZarrChunks(const StackShape& shape, int zarr_format) {
  const int64_t side = zarr_format == 2 ? 1024 : 256;
  return {1, std::clamp<int64_t>(shape.height, 1, side), std::clamp<int64_t>(shape.width, 1, side)};
}

std::array<int64_t, 3> DefaultZarrShards(const StackShape& shape,
                                         const std::array<int64_t, 3>& chunks) {
  const auto whole = [](int64_t n, int64_t chunk) { return ChunksAlong(n, chunk) * chunk; };
  return {whole(kDefaultShardSlices, chunks[0]),
          whole(std::clamp<int64_t>(shape.height, 1, 2048), chunks[1]),
          whole(std::clamp<int64_t>(shape.width, 1, 2048), chunks[2])};
}

absl::StatusOr<ZarrCodec> ZarrCodecFor(Compression compression, int level, int zarr_format) {
  STACKPROC_RETURN_IF_ERROR(CheckCompressionLevel(compression, level));
  const int l = CompressionLevel(compression, level);
  const bool v2 = zarr_format == 2;
  switch (compression) {
    case Compression::kNone:
      return ZarrCodec{};
    case Compression::kDeflate:
      return ZarrCodec{.id = v2 ? ZarrCodecId::kZlib : ZarrCodecId::kGzip,
                       .level = l,
                       .blosc_name = "",
                       .shuffle = 0};
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
  if (options.zarr_format != 2 && options.zarr_format != 3) {
    return absl::InvalidArgumentError(absl::StrCat("zarr format ", options.zarr_format,
                                                   ": 2 (NGFF 0.4) or 3 (NGFF 0.5, sharded)"));
  }
  STACKPROC_RETURN_IF_ERROR(
      ZarrCodecFor(options.compression, options.compression_level, options.zarr_format).status());
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
  if (const auto& shards = options.zarr_shards) {
    if (options.zarr_format == 2) {
      return absl::InvalidArgumentError(
          "shards are Zarr v3's (--zarr-format 3); a v2 store is a file per chunk");
    }
    for (size_t i = 0; i < 3; ++i) {
      const int64_t chunk = options.chunks ? (*options.chunks)[i] : 1;
      if ((*shards)[i] < 1 || (*shards)[i] % chunk != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("shards ", absl::StrJoin(*shards, "x"), ": whole chunks (",
                         options.chunks ? absl::StrJoin(*options.chunks, "x") : "1xYxX",
                         ") a side, at least one"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace stackproc::core
