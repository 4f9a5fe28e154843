// ImageJ's binary metadata: channel colours and windows written as ImageJ reads them (its LUTs
// and Ranges; ImageJ itself and tifffile check the files in tests/core/channels.py), read back,
// and malformed metadata read past without harm.
#include "core/tiff/imagej_metadata.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "tests/test_util/test_util.h"

namespace stackproc::core {
namespace {

// What a reader of a file of this byte order makes of `metadata`'s channels.
void ReadImageJChannels(const ImageJMetadata& metadata, bool big_endian, Dimensions& dims) {
  ApplyImageJChannels(ParseImageJChannels(metadata, big_endian), dims);
}

Dimensions TwoChannels() { return ::stackproc::testing::TwoColouredChannels(); }

TEST(ImageJMetadataTest, ColoursAndWindowsGoThroughImageJsEntries) {
  const std::optional<ImageJMetadata> written = FormatImageJChannels(TwoChannels());
  ASSERT_TRUE(written.has_value());
  // Header: magic, then (ranges, 1) and (luts, 2): 4 + 2 x 8 bytes; one range entry of 2 x 2
  // doubles; two LUTs of 768 bytes.
  EXPECT_EQ(written->counts, (std::vector<uint32_t>{20, 32, 768, 768}));
  EXPECT_EQ(written->data.size(), 20u + 32 + 768 * 2);
  Dimensions read;
  read.channels = 2;
  ReadImageJChannels(*written, /*big_endian=*/false, read);
  ASSERT_EQ(read.channel_info.size(), 2u);
  EXPECT_EQ(read.channel_info[0].rgba, 0x00FF00FFu);
  EXPECT_EQ(read.channel_info[1].rgba, 0xFF00FFFFu);
  EXPECT_EQ(read.channel_info[0].window_start, 10);
  EXPECT_EQ(read.channel_info[0].window_end, 900);
  EXPECT_EQ(read.channel_info[1].window_start, 20);
  EXPECT_EQ(read.channel_info[1].window_end, 1800);
  // A LUT from black to the colour, as ImageJ makes one: entry i is i x colour / 255.
  const uint8_t* green = written->data.data() + 20 + 32 + 256;
  EXPECT_EQ(green[0], 0);
  EXPECT_EQ(green[128], 128);
  EXPECT_EQ(green[255], 255);

  // A channel without a window: no ranges at all (ImageJ would take the filled-in ones over the
  // description's min and max); the colours still go.
  Dimensions partly = TwoChannels();
  partly.channel_info[1].window_start.reset();
  partly.channel_info[1].window_end.reset();
  const std::optional<ImageJMetadata> luts_only = FormatImageJChannels(partly);
  ASSERT_TRUE(luts_only.has_value());
  EXPECT_EQ(luts_only->counts, (std::vector<uint32_t>{12, 768, 768}));
  Dimensions back;
  back.channels = 2;
  ReadImageJChannels(*luts_only, /*big_endian=*/false, back);
  ASSERT_EQ(back.channel_info.size(), 2u);
  EXPECT_EQ(back.channel_info[1].rgba, 0xFF00FFFFu);
  EXPECT_FALSE(back.channel_info[0].window_start.has_value());
}

TEST(ImageJMetadataTest, ALookupTableThatIsNoRampFromBlackGivesNoColour) {
  ImageJMetadata inverted = *FormatImageJChannels(TwoChannels());
  uint8_t* lut = inverted.data.data() + 20 + 32;  // channel 0's: made to run white to black
  for (int colour = 0; colour < 3; ++colour) {
    for (int i = 0; i < 256; ++i) lut[256 * colour + i] = static_cast<uint8_t>(255 - i);
  }
  Dimensions read;
  read.channels = 2;
  ReadImageJChannels(inverted, /*big_endian=*/false, read);
  ASSERT_EQ(read.channel_info.size(), 2u);
  EXPECT_FALSE(read.channel_info[0].rgba.has_value());  // not black
  EXPECT_EQ(read.channel_info[1].rgba, 0xFF00FFFFu);
  EXPECT_EQ(read.channel_info[0].window_start, 10);  // the ranges still hold
}

TEST(ImageJMetadataTest, ABigEndianFilesEntriesAreRead) {
  ImageJMetadata big;
  auto put32 = [&](uint32_t v) {
    for (int shift : {24, 16, 8, 0}) big.data.push_back(static_cast<uint8_t>(v >> shift));
  };
  put32(0x494a494a);  // "IJIJ"
  put32(0x6c757473);  // luts
  put32(1);
  for (int colour = 0; colour < 3; ++colour) {
    for (int i = 0; i < 256; ++i) big.data.push_back(colour == 2 ? static_cast<uint8_t>(i) : 0);
  }
  big.counts = {12, 768};
  Dimensions dims;
  ReadImageJChannels(big, /*big_endian=*/true, dims);
  ASSERT_EQ(dims.channel_info.size(), 1u);
  EXPECT_EQ(dims.channel_info[0].rgba, 0x0000FFFFu);  // blue
  EXPECT_FALSE(dims.channel_info[0].window_start.has_value());
}

TEST(ImageJMetadataTest, MalformedMetadataLeavesTheChannelsAsTheyAre) {
  const ImageJMetadata good = *FormatImageJChannels(TwoChannels());
  std::vector<ImageJMetadata> bad;
  bad.push_back(good);
  bad.back().data.resize(100);  // cut short
  bad.push_back(good);
  bad.back().data[0] ^= 0xFF;  // another magic
  bad.push_back(good);
  bad.back().counts.pop_back();  // a count missing
  bad.push_back(good);
  bad.back().counts[0] = 7;  // a header too short
  bad.push_back(good);
  bad.back().counts[2] = 0xFFFFFFFF;  // an entry past the end
  bad.push_back({});
  for (size_t i = 0; i < bad.size(); ++i) {
    Dimensions dims;
    dims.channels = 2;
    ReadImageJChannels(bad[i], /*big_endian=*/false, dims);
    EXPECT_TRUE(dims.channel_info.empty()) << i;
  }
  // Three channels' worth of metadata on a stack of two: not these channels'.
  Dimensions three = TwoChannels();
  three.channels = 3;
  three.channel_info.resize(3);
  three.channel_info[2].rgba = 0xFFFFFFFF;
  Dimensions dims;
  dims.channels = 2;
  ReadImageJChannels(*FormatImageJChannels(three), false, dims);
  EXPECT_TRUE(dims.channel_info.empty());
  // Nothing to say: no metadata.
  Dimensions plain;
  plain.channels = 2;
  plain.channel_info.resize(2);
  EXPECT_FALSE(FormatImageJChannels(plain).has_value());
}

}  // namespace
}  // namespace stackproc::core
