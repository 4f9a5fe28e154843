// ImageJ's binary metadata of an image (the IJMetadata and IJMetadataByteCounts tags on page 0,
// as ImageJ and tifffile write them): of its entries, the channels' lookup tables ("luts": a
// channel's colour is its table's brightest entry) and display ranges ("rang"), read into and
// written from the channels' colours and windows. Internal to core/tiff.
#pragma once

#include <array>
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

// What the metadata says of channels, in order: each lookup table's colour (nullopt for a table
// that is no ramp from black to a colour: Fire, an inverted one), each display range. Empty for
// metadata without them, malformed or cut short (ImageJ too reads past it).
struct ImageJChannels {
  std::vector<std::optional<uint32_t>> colours;  // 0xRRGGBBAA
  std::vector<std::array<double, 2>> ranges;
};
ImageJChannels ParseImageJChannels(const ImageJMetadata& metadata, bool big_endian);
// Sets the colours and windows of `dims`' channels where `channels` has a table or a range for
// every one of them; leaves `dims` as it is else.
void ApplyImageJChannels(const ImageJChannels& channels, Dimensions& dims);

// The metadata ImageJ reads the channels' colours (a lookup table from black to the colour;
// grey for a channel without one) and windows (when every channel has one) from, in this
// machine's byte order; nullopt when there is neither.
std::optional<ImageJMetadata> FormatImageJChannels(const Dimensions& dims);

}  // namespace stackproc::core
