#include "core/tiff/imagej_metadata.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <string>

namespace stackproc::core {
namespace {

// Entry types (ImageJ's TiffDecoder), and the header's magic number: "IJIJ" read in the file's
// byte order.
constexpr uint32_t kMagic = 0x494a494a;
constexpr uint32_t kRanges = 0x72616e67;  // "rang"
constexpr uint32_t kLuts = 0x6c757473;    // "luts"
constexpr size_t kLutBytes = 768;         // 256 reds, 256 greens, 256 blues

template <typename T>
T Get(const uint8_t* at, bool big_endian) {
  T value;
  std::memcpy(&value, at, sizeof value);
  if (big_endian != (std::endian::native == std::endian::big)) {
    uint8_t bytes[sizeof value];
    std::memcpy(bytes, &value, sizeof value);
    for (size_t i = 0; i < sizeof value / 2; ++i) std::swap(bytes[i], bytes[sizeof value - 1 - i]);
    std::memcpy(&value, bytes, sizeof value);
  }
  return value;
}

template <typename T>
void Put(std::vector<uint8_t>& out, T value) {
  uint8_t bytes[sizeof value];
  std::memcpy(bytes, &value, sizeof value);
  out.insert(out.end(), bytes, bytes + sizeof value);
}

// A lookup table's colour: its brightest entry, when it ramps up from black to it.
std::optional<uint32_t> RampColour(const uint8_t* lut) {
  for (int colour = 0; colour < 3; ++colour) {
    const uint8_t* ramp = lut + 256 * colour;
    if (ramp[0] != 0) return std::nullopt;
    for (int i = 1; i < 256; ++i) {
      if (ramp[i] < ramp[i - 1]) return std::nullopt;
    }
  }
  const uint32_t rgb =
      uint32_t{lut[255]} << 24 | uint32_t{lut[511]} << 16 | uint32_t{lut[767]} << 8;
  if (rgb == 0) return std::nullopt;  // black throughout
  return rgb | 0xFF;
}

}  // namespace

ImageJChannels ParseImageJChannels(const ImageJMetadata& metadata, bool big_endian) {
  const std::vector<uint32_t>& counts = metadata.counts;
  const std::vector<uint8_t>& data = metadata.data;
  if (counts.empty() || counts[0] < 12 || counts[0] > data.size() || (counts[0] - 4) % 8 != 0 ||
      Get<uint32_t>(data.data(), big_endian) != kMagic) {
    return {};
  }
  const size_t types = (counts[0] - 4) / 8;
  ImageJChannels found;
  size_t entry = 1;       // counts[entry]: the next entry's bytes
  size_t at = counts[0];  // where they are
  for (size_t i = 0; i < types; ++i) {
    const uint32_t type = Get<uint32_t>(data.data() + 4 + 8 * i, big_endian);
    const uint32_t n = Get<uint32_t>(data.data() + 8 + 8 * i, big_endian);
    for (uint32_t j = 0; j < n; ++j, ++entry) {
      if (entry >= counts.size() || counts[entry] > data.size() - at) return {};  // cut short
      const uint8_t* bytes = data.data() + at;
      const size_t size = counts[entry];
      at += size;
      if (type == kRanges && size % 16 == 0) {
        for (size_t k = 0; k < size; k += 16) {
          found.ranges.push_back(
              {Get<double>(bytes + k, big_endian), Get<double>(bytes + k + 8, big_endian)});
        }
      } else if (type == kLuts && size == kLutBytes) {
        found.colours.push_back(RampColour(bytes));
      }
    }
  }
  return found;
}

void ApplyImageJChannels(const ImageJChannels& found, Dimensions& dims) {
  const auto channels = static_cast<size_t>(dims.channels);
  const bool by_range = found.ranges.size() == channels;
  const bool by_colour = found.colours.size() == channels;
  if (!by_range && !by_colour) return;
  dims.channel_info.resize(channels);
  for (size_t c = 0; c < channels; ++c) {
    ChannelInfo& channel = dims.channel_info[c];
    if (by_colour && !channel.rgba) channel.rgba = found.colours[c];
    const auto [start, end] = by_range ? found.ranges[c] : std::array<double, 2>{1, 0};
    if (!channel.window_start && std::isfinite(start) && std::isfinite(end) && start <= end) {
      channel.window_start = start;
      channel.window_end = end;
    }
  }
}

std::optional<ImageJMetadata> FormatImageJChannels(const Dimensions& dims) {
  bool coloured = false, windowed = !dims.channel_info.empty();
  for (const ChannelInfo& c : dims.channel_info) {
    coloured = coloured || c.rgba.has_value();
    windowed = windowed && c.window_start && c.window_end;
  }
  if (dims.channel_info.empty() || (!coloured && !windowed)) return std::nullopt;
  ImageJMetadata out;
  const uint32_t types = (windowed ? 1 : 0) + (coloured ? 1 : 0);
  Put<uint32_t>(out.data, kMagic);
  if (windowed) Put<uint32_t>(out.data, kRanges), Put<uint32_t>(out.data, 1);
  if (coloured) {
    Put<uint32_t>(out.data, kLuts);
    Put<uint32_t>(out.data, static_cast<uint32_t>(dims.channel_info.size()));
  }
  out.counts.push_back(4 + 8 * types);
  if (windowed) {
    for (const ChannelInfo& c : dims.channel_info) {
      Put<double>(out.data, *c.window_start);
      Put<double>(out.data, *c.window_end);
    }
    out.counts.push_back(static_cast<uint32_t>(16 * dims.channel_info.size()));
  }
  if (coloured) {
    for (const ChannelInfo& c : dims.channel_info) {
      const uint32_t rgba = c.rgba.value_or(0xFFFFFFFF);
      for (int shift : {24, 16, 8}) {  // from black to the colour, as ImageJ's LUTs are
        const uint32_t full = (rgba >> shift) & 0xFF;
        for (uint32_t i = 0; i < 256; ++i) out.data.push_back(static_cast<uint8_t>(i * full / 255));
      }
      out.counts.push_back(kLutBytes);
    }
  }
  return out;
}

}  // namespace stackproc::core
