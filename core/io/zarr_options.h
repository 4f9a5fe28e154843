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

// The chunk shape of an OME-Zarr output when none is asked for. Zarr v2 (a file per chunk): one
// slice by up to 1024 x 1024 pixels; a viewer showing a plane reads only that plane's chunks,
// and 1-4 MiB a file (by pixel type) suits local disks and object stores alike. Zarr v3, where
// chunks are packed in shards: one slice by up to 256 x 256, the tiles viewers fetch (64-256
// KiB, read through the shard's index).
std::array<int64_t, 3> DefaultZarrChunks(const StackShape& shape, int zarr_format);

// The shard shape of a Zarr v3 output when none is asked for: kDefaultShardSlices slices by the
// whole plane up to 2048 x 2048 (rounded up to whole chunks). Each file then holds 16 planes:
// the seed's 4000 x 2048 x 2048 stack is 250 files (a v2 store of 1 x 1024 x 1024 chunks has
// 16,000), and a writer gathers 16 slices before it writes a shard (its memory bound, with a
// layer of encoded chunks: ZarrSink::TraitsFor).
inline constexpr int64_t kDefaultShardSlices = 16;
std::array<int64_t, 3> DefaultZarrShards(const StackShape& shape,
                                         const std::array<int64_t, 3>& chunks);

// The codec that `compression` at `level` (0: its default) stands for in an OME-Zarr output of
// `zarr_format`: lz4 (the default) and zstd (levels 1-9) blosc's with byte shuffle (on 16-bit
// microscopy-like data blosc-zstd writes 1.7x faster than the bare zstd codec:
// tests/bench/formats.py); deflate zlib in v2, gzip in v3 (v3 has no zlib codec).
// InvalidArgument for lzw (TIFF's only) and for a level the codec lacks.
absl::StatusOr<ZarrCodec> ZarrCodecFor(Compression compression, int level = 0, int zarr_format = 3);

// The most levels a pyramid may have below full resolution.
inline constexpr int kMaxPyramidLevels = 8;

// Whether `options` can write a store: Zarr format 2 or 3, a compression OME-Zarr has, 0 to
// kMaxPyramidLevels pyramid levels, chunks (and v3's shards) of at least one voxel a side,
// shards that are whole chunks. InvalidArgument naming the option.
absl::Status ValidateZarrWrite(const WriteOptions& options);

}  // namespace stackproc::core
