// The JSON of a Zarr store that stackproc reads and writes: an array's .zarray (v2) or zarr.json
// (v3), and an OME-NGFF image's multiscales (0.4: .zattrs; 0.5: a v3 group's zarr.json). See
// https://zarr-specs.readthedocs.io and https://ngff.openmicroscopy.org/.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/stack/dimensions.h"
#include "core/stack/pixel_type.h"
#include "core/stack/voxel_size.h"
#include "core/zarr/zarr_codec.h"

namespace stackproc::core {

// The most bytes one chunk may hold, decoded: a larger one is refused before it is read (and
// not written).
inline constexpr int64_t kMaxChunkBytes = int64_t{1} << 30;
// The most inner chunks a v3 shard may hold: its index (16 bytes a chunk) is read whole; and the
// most index bytes of the shards one row of chunks spans (a reader holds them while it reads
// the row).
inline constexpr int64_t kMaxChunksPerShard = int64_t{1} << 20;
inline constexpr int64_t kMaxIndexBytesPerRow = int64_t{256} << 20;

// .zarray and .zattrs are small: a larger one is not what it claims to be.
inline constexpr uint64_t kMaxZarrMetadataBytes = uint64_t{16} << 20;

// How many chunks of `chunk` elements cover `length`.
inline int64_t ChunksAlong(int64_t length, int64_t chunk) { return (length + chunk - 1) / chunk; }

// An array's metadata, Zarr v2 (.zarray: C order, no filters) or v3 (zarr.json: the codecs
// below), as stackproc reads and writes it.
struct ZarrArrayMeta {
  int zarr_format = 2;
  std::vector<int64_t> shape;
  // As many as shape: the chunk's (the inner chunk's, when sharded); an edge chunk is stored
  // whole (padded).
  std::vector<int64_t> chunks;
  // v3's sharding_indexed: each file a shard of this shape (a multiple of chunks), its chunks
  // found through an index (zarr_shard.h); empty: a file per chunk.
  std::vector<int64_t> shards;
  PixelType type = PixelType::kUint8;
  bool big_endian = false;
  ZarrCodec codec;
  // v3: a chunk's axes as stored (the transpose codec's order: stored axis i is axis
  // transpose[i]); empty: C order. Read only.
  std::vector<int> transpose;
  bool chunk_crc32c = false;    // v3: a chunk's bytes end with their crc32c
  bool index_at_start = false;  // v3 shards: where the index is ("start" or "end")
  bool index_crc32c = true;     // v3 shards: the index ends with its crc32c
  double fill_value = 0;        // of a chunk that is not stored ("null": 0)
  bool nested = false;          // "/" separates a chunk key's indices, else "."
  bool key_prefix = false;      // v3's default chunk key encoding: "c/0/1/2"

  int64_t chunk_elements() const;
  // The shape of what one file holds: a shard, or a chunk.
  const std::vector<int64_t>& grid() const { return shards.empty() ? chunks : shards; }
  // "zarr.json" (v3) or ".zarray" (v2).
  const char* metadata_file() const { return zarr_format == 3 ? "zarr.json" : ".zarray"; }
};

// Parses a .zarray; `name` (its file) heads errors. InvalidArgument for what stackproc does not
// read: another zarr_format, a dtype other than uint8/uint16/float32 in either byte order, "F"
// order, filters, an unknown compressor (naming it), chunks that do not match the shape.
absl::StatusOr<ZarrArrayMeta> ParseZarray(absl::string_view text, const std::string& name);
std::string FormatZarray(const ZarrArrayMeta& meta);

// The key of the file (chunk, or shard) at `index` in the grid (one number per axis): "3.0.1",
// "3/0/1" when nested, "c/3/0/1" with v3's default encoding.
std::string ChunkKey(const ZarrArrayMeta& meta, const std::vector<int64_t>& index);

// Parses an array's zarr.json (Zarr v3, zarr_v3.cc); `name` heads errors. InvalidArgument for
// what stackproc does not read, naming it: a data type, an unknown codec or chunk grid, shards
// that are not a multiple of their chunks, nested sharding.
absl::StatusOr<ZarrArrayMeta> ParseZarrJson(absl::string_view text, const std::string& name);
// zarr.json of a v3 array: bytes (little endian), then `codec`, in shards of `shards` with a
// crc32c'd index at the end when sharded; "/" keys with the "c" prefix; t, c, z, y, x named.
std::string FormatZarrJson(const ZarrArrayMeta& meta, const std::vector<std::string>& axes);

// One OME-NGFF image: the datasets of its first multiscale, finest first, with the scale of the
// last three (z, y, x) axes; what its axes are (NGFF's order: t, then c, then space); and its
// channels as omero states them.
struct NgffImage {
  struct Level {
    std::string path;
    std::array<double, 3> scale = {1, 1, 1};  // z, y, x
  };
  std::vector<Level> levels;
  std::string unit;  // of the spatial axes, an NGFF unit name or ""
  std::string name;
  // Each axis: "t" (type time), "c" (type channel) or "space"; empty when the image names none
  // (NGFF before 0.3: z, y, x).
  std::vector<std::string> axes;
  std::vector<ChannelInfo> channels;  // omero.channels: label, color, window
  // The values the pixels can take (an integer type's range), the windows' min and max; unset:
  // each window's own start and end.
  std::optional<std::array<double, 2>> pixel_range;
  std::string provenance;             // the "stackproc" attribute as JSON (provenance.h); or ""

  // The number of spatial axes (2 or 3): those at the end.
  int spatial() const;
};

// Parses a group's .zattrs (NGFF 0.4), or its zarr.json (NGFF 0.5: the image under the "ome"
// attribute): nullopt when it holds no multiscales (a plain group). Axes before
// z, y, x may be one time and one channel axis, in that order; any other axis, spatial axes
// after a non-spatial one, or fewer than two spatial axes, are refused with InvalidArgument, as
// are datasets without a path.
absl::StatusOr<std::optional<NgffImage>> ParseNgffAttributes(absl::string_view text,
                                                             const std::string& name);
// .zattrs for `image` (NGFF 0.4: its t and c axes, then z, y, x in `image.unit`; omero
// channels when it has them).
std::string FormatNgffAttributes(const NgffImage& image);
// A v3 group's zarr.json for `image` (NGFF 0.5: the same image under "ome", with its version).
std::string FormatNgffGroup(const NgffImage& image);

// A .zgroup.
std::string FormatZgroup();

}  // namespace stackproc::core
