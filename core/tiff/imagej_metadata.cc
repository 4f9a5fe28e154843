#include "core/tiff/imagej_metadata.h"

#include <array>
#include <bit>
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

}  // namespace

void ReadImageJChannels(const ImageJMetadata& metadata, bool big_endian, Dimensions& dims) {
  const std::vector<uint32_t>& counts = metadata.counts;
  const std::vector<uint8_t>& data = metadata.data;
  if (counts.empty() || counts[0] < 12 || counts[0] > data.size() || (counts[0] - 4) % 8 != 0 ||
      Get<uint32_t>(data.data(), big_endian) != kMagic) {
    return;
  }
  const size_t types = (counts[0] - 4) / 8;
  std::vector<std::array<double, 2>> ranges;
  std::vector<uint32_t> colours;  // 0xRRGGBBAA
  size_t entry = 1;               // counts[entry]: the next entry's bytes
  size_t at = counts[0];          // where they are
  for (size_t i = 0; i < types; ++i) {
    const uint32_t type = Get<uint32_t>(data.data() + 4 + 8 * i, big_endian);
    const uint32_t n = Get<uint32_t>(data.data() + 8 + 8 * i, big_endian);
    for (uint32_t j = 0; j < n; ++j, ++entry) {
      if (entry >= counts.size() || counts[entry] > data.size() - at) return;  // cut short
      const uint8_t* bytes = data.data() + at;
      const size_t size = counts[entry];
      at += size;
      if (type == kRanges && size % 16 == 0) {
        for (size_t k = 0; k < size; k += 16) {
          ranges.push_back(
              {Get<double>(bytes + k, big_endian), Get<double>(bytes + k + 8, big_endian)});
        }
      } else if (type == kLuts && size == kLutBytes) {
        colours.push_back(uint32_t{bytes[255]} << 24 | uint32_t{bytes[511]} << 16 |
                          uint32_t{bytes[767]} << 8 | 0xFF);
      }
    }
  }
  const auto channels = static_cast<size_t>(dims.channels);
  const bool by_range = ranges.size() == channels;
  const bool by_colour = colours.size() == channels;
  if (!by_range && !by_colour) return;
  dims.channel_info.resize(channels);
  for (size_t c = 0; c < channels; ++c) {
    ChannelInfo& channel = dims.channel_info[c];
    if (by_colour && !channel.rgba) channel.rgba = colours[c];
    if (by_range && !channel.window_start && ranges[c][0] < ranges[c][1]) {
      channel.window_start = ranges[c][0];
      channel.window_end = ranges[c][1];
    }
  }
}

std::optional<ImageJMetadata> FormatImageJChannels(const Dimensions& dims, PixelType type) {
  bool coloured = false, windowed = false;
  for (const ChannelInfo& c : dims.channel_info) {
    coloured = coloured || c.rgba.has_value();
    windowed = windowed || (c.window_start && c.window_end);
  }
  if (dims.channel_info.empty() || (!coloured && !windowed)) return std::nullopt;
  const double most = type == PixelType::kUint8 ? 255 : type == PixelType::kUint16 ? 65535 : 1;
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
      const bool has = c.window_start && c.window_end;
      Put<double>(out.data, has ? *c.window_start : 0);
      Put<double>(out.data, has ? *c.window_end : most);
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
