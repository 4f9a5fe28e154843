// ImageJ's binary metadata of an image (the IJMetadata and IJMetadataByteCounts tags on page 0,
// as ImageJ and tifffile write them): of its entries, the channels' lookup tables ("luts": a
// channel's colour is its table's brightest entry) and display ranges ("rang"), read into and
// written from the channels' colours and windows. Internal to core/tiff.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/types/span.h"
#include "core/stack/dimensions.h"
#include "core/stack/pixel_type.h"

namespace stackproc::core {

inline constexpr uint16_t kImageJMetadataByteCountsTag = 50838;
inline constexpr uint16_t kImageJMetadataTag = 50839;

// The two tags' values: the entries' bytes, and the byte counts (the header's, then each
// entry's).
struct ImageJMetadata {
  std::vector<uint8_t> data;
  std::vector<uint32_t> counts;
};

// Sets the colours and windows of `dims`' channels from `metadata` (in a file of this byte
// order) where it has a lookup table or a range for every channel; leaves `dims` as it is for
// anything else (other entries, other counts, a malformed header: ImageJ too reads past them).
void ReadImageJChannels(const ImageJMetadata& metadata, bool big_endian, Dimensions& dims);

// The metadata ImageJ reads the channels' colours (a lookup table from black to the colour;
// grey for a channel without one) and windows (the type's range for a channel without one)
// from, in this machine's byte order; nullopt when no channel has a colour or a window.
std::optional<ImageJMetadata> FormatImageJChannels(const Dimensions& dims, PixelType type);

}  // namespace stackproc::core
