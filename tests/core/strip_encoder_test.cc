// The strip encoder writes the same bytes for the same strip whatever it compressed before on
// that thread and in whichever process: byte-equal outputs (a cluster's shards against a whole
// run, a taken-up stream against an unbroken one) rest on it.
#include "core/tiff/strip_encoder.h"

#include <gtest/gtest.h>
#include <isa-l/igzip_lib.h>
#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace stackproc::core {
namespace {

// 16-bit camera-like strips: a slow ramp under noise, different for each seed.
std::vector<uint8_t> Strip(uint32_t seed, size_t size = 270000) {
  std::mt19937 random(seed);
  std::vector<uint8_t> bytes(size);
  for (size_t i = 0; i + 1 < bytes.size(); i += 2) {
    const auto value = static_cast<uint16_t>(1000 + (i / 64) % 300 + random() % 40);
    bytes[i] = static_cast<uint8_t>(value);
    bytes[i + 1] = static_cast<uint8_t>(value >> 8);
  }
  return bytes;
}

TEST(StripEncoderTest, AStripEncodesAlikeWhateverCameBefore) {
  for (int level : {1, 2, 3, 6}) {
    for (uint32_t seed = 0; seed < 20; ++seed) {
      const std::vector<uint8_t> strip = Strip(seed), other = Strip(seed + 1000);
      std::vector<uint8_t> first, between, again;
      ASSERT_TRUE(EncodeDeflate(level, false, strip.data(), strip.size(), first).ok());
      ASSERT_TRUE(EncodeDeflate(level, false, other.data(), other.size(), between).ok());
      // A page's last strip is shorter: strips of other sizes come between.
      for (size_t size : {size_t{1000}, size_t{20000}, size_t{100000}, other.size() / 3}) {
        ASSERT_TRUE(EncodeDeflate(level, false, other.data() + seed, size, between).ok());
      }
      ASSERT_TRUE(EncodeDeflate(level, false, strip.data(), strip.size(), again).ok());
      EXPECT_TRUE(first == again) << "level " << level << ", strip " << seed << ": " << first.size()
                                  << " then " << again.size() << " bytes";
    }
  }
}

TEST(StripEncoderTest, AStripEncodesAlikeWhereverItLies) {
  for (int level : {1, 2, 3, 6}) {
    const std::vector<uint8_t> strip = Strip(11);
    std::vector<uint8_t> first;
    ASSERT_TRUE(EncodeDeflate(level, false, strip.data(), strip.size(), first).ok());
    std::vector<uint8_t> room(strip.size() + 64);
    for (size_t shift = 1; shift < 64; ++shift) {
      std::copy(strip.begin(), strip.end(), room.begin() + static_cast<std::ptrdiff_t>(shift));
      std::vector<uint8_t> again;
      ASSERT_TRUE(EncodeDeflate(level, false, room.data() + shift, strip.size(), again).ok());
      EXPECT_TRUE(first == again) << "level " << level << ", " << shift
                                  << " bytes further: " << first.size() << " then " << again.size()
                                  << " bytes";
    }
  }
}

// Leaves `seed`'s bytes on the stack below the caller, where the encoder's locals will lie.
__attribute__((noinline)) void DirtyTheStack(uint32_t seed) {
  volatile uint8_t junk[1 << 16];
  std::mt19937 random(seed);
  for (volatile uint8_t& b : junk) b = static_cast<uint8_t>(random());
}

TEST(StripEncoderTest, AStripEncodesAlikeWhateverTheStackHeld) {
  for (int level : {1, 2, 3}) {
    const std::vector<uint8_t> strip = Strip(7);
    std::vector<uint8_t> first;
    ASSERT_TRUE(EncodeDeflate(level, false, strip.data(), strip.size(), first).ok());
    for (uint32_t seed = 0; seed < 20; ++seed) {
      std::vector<uint8_t> again;
      DirtyTheStack(seed);
      ASSERT_TRUE(EncodeDeflate(level, false, strip.data(), strip.size(), again).ok());
      EXPECT_TRUE(first == again) << "level " << level << ", stack " << seed << ": " << first.size()
                                  << " then " << again.size() << " bytes";
    }
  }
}

// igzip's levels 1 and 2 now and then write other bytes for a strip in another process (where
// the process lies in memory: tests/bench/deflate_processes.cc counts it, about one process in
// 17 over 100 MB), which one process cannot show; its level 3 does not. So levels 1-3 are
// igzip's level 3: the same bytes as igzip called at that level here, and zlib inflates them.
TEST(StripEncoderTest, LevelsOneToThreeAreIgzipsLevelThree) {
  const std::vector<uint8_t> strip = Strip(5);
  std::vector<uint8_t> level_buffer(ISAL_DEF_LVL3_DEFAULT), expected(strip.size() + 1024);
  isal_zstream stream;
  isal_deflate_stateless_init(&stream);
  stream.hist_bits = 0;
  stream.level = 3;
  stream.level_buf = level_buffer.data();
  stream.level_buf_size = static_cast<uint32_t>(level_buffer.size());
  stream.gzip_flag = IGZIP_ZLIB;
  stream.end_of_stream = 1;
  stream.next_in = const_cast<uint8_t*>(strip.data());
  stream.avail_in = static_cast<uint32_t>(strip.size());
  stream.next_out = expected.data();
  stream.avail_out = static_cast<uint32_t>(expected.size());
  ASSERT_EQ(isal_deflate_stateless(&stream), COMP_OK);
  expected.resize(stream.total_out);
  for (int level : {1, 2, 3}) {
    std::vector<uint8_t> out, inflated(strip.size());
    ASSERT_TRUE(EncodeDeflate(level, false, strip.data(), strip.size(), out).ok());
    EXPECT_TRUE(out == expected) << "level " << level << ": " << out.size() << " bytes, igzip's "
                                 << "level 3 " << expected.size();
    uLongf size = inflated.size();
    ASSERT_EQ(uncompress(inflated.data(), &size, out.data(), out.size()), Z_OK);
    EXPECT_EQ(size, strip.size());
    EXPECT_TRUE(inflated == strip) << "level " << level;
  }
}

}  // namespace
}  // namespace stackproc::core
