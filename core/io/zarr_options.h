// What an OME-Zarr output is written with: its default chunks, the codec a --compression stands
// for, and the checks of the write options (before anything is read).
#pragma once

#include <array>
#include <cstdint>

#include "absl/status/statusor.h"
#include "core/stack/stack.h"
#include "core/tiff/tiff_writer.h"
#include "core/zarr/zarr_codec.h"

namespace stackproc::core {

// The chunk shape of an OME-Zarr output when none is asked for: one slice by up to 1024 x 1024
// pixels. A viewer showing a plane reads only that plane's chunks; each slice's chunks are
// encoded in parallel as it is done, holding no slices back; 1-4 MiB a chunk (by pixel type)
// suits local disks and object stores alike.
std::array<int64_t, 3> DefaultZarrChunks(const StackShape& shape);

// The blosc/zlib configuration that `compression` at `level` (0: its default) stands for in an
// OME-Zarr output; InvalidArgument for lzw (TIFF's only) and for zstd above 9 (blosc's clevel).
absl::StatusOr<ZarrCodec> ZarrCodecFor(Compression compression, int level = 0);

// The most levels a pyramid may have below full resolution.
inline constexpr int kMaxPyramidLevels = 8;

// Whether `options` can write a store: a compression OME-Zarr has, 0 to kMaxPyramidLevels
// pyramid levels, chunks of at least one voxel a side. InvalidArgument naming the option.
absl::Status ValidateZarrWrite(const WriteOptions& options);

}  // namespace stackproc::core
