// The JSON of a Zarr v2 store that stackproc reads and writes: an array's .zarray and an OME-NGFF
// 0.4 image's multiscales (.zattrs). See https://zarr-specs.readthedocs.io (v2) and
// https://ngff.openmicroscopy.org/0.4/.
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

// .zarray and .zattrs are small: a larger one is not what it claims to be.
inline constexpr uint64_t kMaxZarrMetadataBytes = uint64_t{16} << 20;

// How many chunks of `chunk` elements cover `length`.
inline int64_t ChunksAlong(int64_t length, int64_t chunk) { return (length + chunk - 1) / chunk; }

// An array's .zarray: C order, no filters (what stackproc reads and writes).
struct ZarrArrayMeta {
  std::vector<int64_t> shape;
  std::vector<int64_t> chunks;  // as many as shape; an edge chunk is stored whole (padded)
  PixelType type = PixelType::kUint8;
  bool big_endian = false;
  ZarrCodec codec;
  double fill_value = 0;  // of a chunk that is not stored ("null": 0)
  bool nested = false;    // dimension_separator "/": chunk "0/1/2", else "0.1.2"

  int64_t chunk_elements() const;
};

// Parses a .zarray; `name` (its file) heads errors. InvalidArgument for what stackproc does not
// read: another zarr_format, a dtype other than uint8/uint16/float32 in either byte order, "F"
// order, filters, an unknown compressor (naming it), chunks that do not match the shape.
absl::StatusOr<ZarrArrayMeta> ParseZarray(absl::string_view text, const std::string& name);
std::string FormatZarray(const ZarrArrayMeta& meta);

// The key of the chunk at `index` (one number per axis): "3.0.1", or "3/0/1" when nested.
std::string ChunkKey(const ZarrArrayMeta& meta, const std::vector<int64_t>& index);

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
  std::string provenance;             // the "stackproc" attribute as JSON (provenance.h); or ""

  // The number of spatial axes (2 or 3): those at the end.
  int spatial() const;
};

// Parses a group's .zattrs: nullopt when it holds no multiscales (a plain group). Axes before
// z, y, x may be one time and one channel axis, in that order; any other axis, spatial axes
// after a non-spatial one, or fewer than two spatial axes, are refused with InvalidArgument, as
// are datasets without a path.
absl::StatusOr<std::optional<NgffImage>> ParseNgffAttributes(absl::string_view text,
                                                             const std::string& name);
// .zattrs for `image` (NGFF 0.4: its t and c axes, then z, y, x in `image.unit`; omero
// channels when it has them).
std::string FormatNgffAttributes(const NgffImage& image);

// A .zgroup.
std::string FormatZgroup();

}  // namespace stackproc::core
