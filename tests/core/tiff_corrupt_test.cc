// Corrupt, truncated, lying and unsupported files: a clear error naming file, page and reason,
// no crash, no huge allocation, nothing on stderr.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <tiffio.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <opencv2/core.hpp>
#include <vector>

#include "core/io/tiff_io.h"
#include "core/tiff/tiff_reader.h"
#include "core/tiff/tiff_writer.h"
#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc::core {
namespace {

namespace fs = std::filesystem;
using ::stackproc::testing::MakeStack;
using ::stackproc::testing::StatusIs;
using ::stackproc::testing::TempDir;
using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::HasSubstr;

constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;

// A classic little-endian TIFF written byte by byte: one page, the given tags (SHORT or LONG,
// one value each), then `pixels` bytes of data at the offset the StripOffsets tag points to.
class HandTiff {
 public:
  HandTiff& Tag(uint16_t tag, uint32_t value, uint16_t type = 4) {
    tags_.push_back({tag, type, value});
    return *this;
  }
  // `payload`: the strip's bytes (else `pixel_bytes` of filler).
  void Write(const std::string& path, size_t pixel_bytes,
             const std::vector<uint8_t>* payload = nullptr) const {
    std::vector<uint8_t> b = {'I', 'I', 42, 0, 8, 0, 0, 0};
    auto put16 = [&](uint16_t v) { b.push_back(v & 0xff), b.push_back(v >> 8); };
    auto put32 = [&](uint32_t v) {
      for (int i = 0; i < 4; ++i) b.push_back((v >> (8 * i)) & 0xff);
    };
    std::vector<Entry> tags = tags_;
    const uint32_t data_offset = 8 + 2 + 12 * static_cast<uint32_t>(tags.size()) + 4;
    for (Entry& e : tags) {
      if (e.tag == TIFFTAG_STRIPOFFSETS) e.value = data_offset;
    }
    std::sort(tags.begin(), tags.end(), [](auto& a, auto& c) { return a.tag < c.tag; });
    put16(static_cast<uint16_t>(tags.size()));
    for (const Entry& e : tags) {
      put16(e.tag);
      put16(e.type);
      put32(1);
      if (e.type == 3) {
        put16(static_cast<uint16_t>(e.value));
        put16(0);
      } else {
        put32(e.value);
      }
    }
    put32(0);  // no next page
    if (payload != nullptr) {
      b.insert(b.end(), payload->begin(), payload->end());
    } else {
      b.resize(b.size() + pixel_bytes, 0x5a);
    }
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  }

 private:
  struct Entry {
    uint16_t tag, type;
    uint32_t value;
  };
  std::vector<Entry> tags_;
};

// A well-formed single-strip grayscale page of `w` x `h` with `bits`-bit samples.
HandTiff Gray(uint32_t w, uint32_t h, uint16_t bits, uint32_t strip_bytes,
              uint16_t compression = COMPRESSION_NONE) {
  HandTiff t;
  t.Tag(TIFFTAG_IMAGEWIDTH, w)
      .Tag(TIFFTAG_IMAGELENGTH, h)
      .Tag(TIFFTAG_BITSPERSAMPLE, bits, 3)
      .Tag(TIFFTAG_COMPRESSION, compression, 3)
      .Tag(TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK, 3)
      .Tag(TIFFTAG_STRIPOFFSETS, 0)
      .Tag(TIFFTAG_ROWSPERSTRIP, h)
      .Tag(TIFFTAG_STRIPBYTECOUNTS, strip_bytes);
  return t;
}

class CorruptTiffTest : public ::testing::Test {
 protected:
  void SetUp() override { ::testing::internal::CaptureStderr(); }
  void TearDown() override {
    EXPECT_EQ(::testing::internal::GetCapturedStderr(), "") << "libtiff wrote to stderr";
  }
  TempDir dir_;
};

TEST_F(CorruptTiffTest, HandMadeFileIsValid) {
  // The builder itself is right: the same layout with honest sizes reads.
  Gray(16, 8, 16, 16 * 8 * 2).Write(dir_.File("ok.tif"), 16 * 8 * 2);
  ASSERT_OK_AND_ASSIGN(Stack stack, ReadTiff(dir_.File("ok.tif")));
  EXPECT_EQ(stack.shape(), (StackShape{1, 8, 16}));
  EXPECT_EQ(stack.Slice(0).at<uint16_t>(3, 3), 0x5a5a);
}

TEST_F(CorruptTiffTest, MissingFileIsNotFound) {
  EXPECT_THAT(ReadTiff(dir_.File("nope.tif")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope.tif")));
}

TEST_F(CorruptTiffTest, NotATiff) {
  std::ofstream(dir_.File("junk.tif")) << "this is not a tiff file at all, just text";
  EXPECT_THAT(ReadTiff(dir_.File("junk.tif")),
              StatusIs(kInvalid, AllOf(HasSubstr("junk.tif"), HasSubstr("not a readable TIFF"))));
}

TEST_F(CorruptTiffTest, LyingStripByteCount) {
  Gray(64, 64, 16, 100).Write(dir_.File("lying.tif"), 100);
  EXPECT_THAT(ReadTiff(dir_.File("lying.tif")),
              StatusIs(kInvalid, AllOf(HasSubstr("lying.tif: page 0: strip 0"),
                                       AnyOf(HasSubstr("holds 100 bytes but needs 8192"),
                                             HasSubstr("past the end of the file")))));
  // When the pixels are all in the file, libtiff repairs the bogus count of a single
  // uncompressed strip (as ImageJ does) and the page reads, without reading past the data.
  Gray(64, 64, 16, 100).Write(dir_.File("repairable.tif"), 8192);
  ASSERT_OK_AND_ASSIGN(Stack stack, ReadTiff(dir_.File("repairable.tif")));
  EXPECT_EQ(stack.Slice(0).at<uint16_t>(63, 63), 0x5a5a);
}

TEST_F(CorruptTiffTest, StripPastTheEndOfTheFile) {
  Gray(64, 64, 16, 8192).Write(dir_.File("short.tif"), 1000);
  EXPECT_THAT(ReadTiff(dir_.File("short.tif")),
              StatusIs(kInvalid, AllOf(HasSubstr("page 0"), HasSubstr("past the end"))));
}

TEST_F(CorruptTiffTest, HugeDeclaredSizeFailsBeforeAllocating) {
  // 120000 x 120000 x 2 bytes = 28.8 GB declared, 64 bytes present: rejected by the strip check.
  Gray(120000, 120000, 16, 64).Write(dir_.File("huge.tif"), 64);
  EXPECT_THAT(ReadTiff(dir_.File("huge.tif")),
              StatusIs(kInvalid, AllOf(HasSubstr("page 0: strip 0"), HasSubstr("past the end"))));
  // Beyond the side limit: ResourceExhausted naming the limit.
  Gray(1000000, 10, 8, 64).Write(dir_.File("wide.tif"), 64);
  EXPECT_THAT(ReadTiff(dir_.File("wide.tif")),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("pixels per side")));
}

// A deflate stream of `bytes` zeros: a few bytes per MiB.
std::vector<uint8_t> DeflatedZeros(size_t bytes) {
  z_stream z{};
  EXPECT_EQ(deflateInit(&z, Z_BEST_COMPRESSION), Z_OK);
  std::vector<uint8_t> zeros(1 << 20, 0), out, buffer(1 << 16);
  for (size_t fed = 0; fed < bytes;) {
    const size_t n = std::min(zeros.size(), bytes - fed);
    fed += n;
    z.next_in = zeros.data();
    z.avail_in = static_cast<uInt>(n);
    const int flush = fed == bytes ? Z_FINISH : Z_NO_FLUSH;
    do {
      z.next_out = buffer.data();
      z.avail_out = static_cast<uInt>(buffer.size());
      deflate(&z, flush);
      out.insert(out.end(), buffer.data(), buffer.data() + (buffer.size() - z.avail_out));
    } while (z.avail_out == 0);
  }
  deflateEnd(&z);
  return out;
}

TEST_F(CorruptTiffTest, ADecompressionBombDecodesNoMoreThanItsDeclaredPage) {
  // 64 MiB of zeros in ~64 KB, in the one strip of a page declared 1024 x 1024 x 8 bit (1 MiB).
  const std::vector<uint8_t> bomb = DeflatedZeros(size_t{64} << 20);
  ASSERT_LT(bomb.size(), size_t{1} << 20);
  Gray(1024, 1024, 8, static_cast<uint32_t>(bomb.size()), COMPRESSION_ADOBE_DEFLATE)
      .Write(dir_.File("bomb.tif"), 0, &bomb);
  // What is decoded is the declared page (libtiff inflates into the strip's buffer and stops),
  // so the declared size is what the limits and the memory budget judge.
  ASSERT_OK_AND_ASSIGN(Stack stack, ReadTiff(dir_.File("bomb.tif")));
  EXPECT_EQ(stack.shape(), (StackShape{1, 1024, 1024}));
  EXPECT_EQ(cv::countNonZero(stack.Slice(0)), 0);
  ReadOptions small;
  small.limits.max_stack_bytes = 512 << 10;
  EXPECT_THAT(ReadTiff(dir_.File("bomb.tif"), small),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("limit")));
}

TEST_F(CorruptTiffTest, StackByteLimit) {
  ASSERT_OK(WriteTiff(dir_.File("s.tif"), MakeStack({4, 32, 32}, PixelType::kUint16)));
  ReadOptions options;
  options.limits.max_stack_bytes = 4096;
  EXPECT_THAT(ReadTiff(dir_.File("s.tif"), options),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("limit of 4096 bytes (--max-stack-bytes)")));
  options.limits = {};
  options.limits.max_pages = 3;
  EXPECT_THAT(ReadTiff(dir_.File("s.tif"), options),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("more than 3 slices, the limit per stack (--max-slices)")));
  // One page of 4 samples is 4 planes: over a limit of 3 too.
  Gray(8, 8, 8, 256).Tag(TIFFTAG_SAMPLESPERPIXEL, 4, 3).Write(dir_.File("four.tif"), 256);
  EXPECT_THAT(ReadTiff(dir_.File("four.tif"), options),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("1 pages of 4 samples")));
  options.limits.max_pages = 4;
  EXPECT_OK(ReadTiff(dir_.File("four.tif"), options).status());
}

TEST_F(CorruptTiffTest, UnsupportedSampleFormats) {
  Gray(8, 8, 16, 128)
      .Tag(TIFFTAG_SAMPLEFORMAT, SAMPLEFORMAT_INT, 3)
      .Write(dir_.File("i16.tif"), 128);
  EXPECT_THAT(ReadTiff(dir_.File("i16.tif")),
              StatusIs(kInvalid, HasSubstr("16-bit signed samples are not supported")));
  // Three samples a pixel are three planes' bytes: a file holding one plane's is short (libtiff
  // takes the strip for the 3 x 64 bytes its page needs, from byte 8 + 2 + 9 x 12 + 4 = 122).
  Gray(8, 8, 8, 64).Tag(TIFFTAG_SAMPLESPERPIXEL, 3, 3).Write(dir_.File("three.tif"), 64);
  EXPECT_THAT(ReadTiff(dir_.File("three.tif")),
              StatusIs(kInvalid, HasSubstr("strip 0 ends at byte 314 past the end of the file")));
  // YCbCr (JPEG's colour model, subsampled) is not read as channels.
  HandTiff()
      .Tag(TIFFTAG_IMAGEWIDTH, 8)
      .Tag(TIFFTAG_IMAGELENGTH, 8)
      .Tag(TIFFTAG_BITSPERSAMPLE, 8, 3)
      .Tag(TIFFTAG_SAMPLESPERPIXEL, 3, 3)
      .Tag(TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_YCBCR, 3)
      .Tag(TIFFTAG_STRIPOFFSETS, 0)
      .Tag(TIFFTAG_ROWSPERSTRIP, 8)
      .Tag(TIFFTAG_STRIPBYTECOUNTS, 192)
      .Write(dir_.File("ycbcr.tif"), 192);
  EXPECT_THAT(ReadTiff(dir_.File("ycbcr.tif")),
              StatusIs(kInvalid, HasSubstr("photometric interpretation 6 is not supported")));
  Gray(8, 8, 1, 8).Write(dir_.File("bilevel.tif"), 8);
  EXPECT_THAT(ReadTiff(dir_.File("bilevel.tif")),
              StatusIs(kInvalid, HasSubstr("1-bit unsigned samples are not supported")));
}

TEST_F(CorruptTiffTest, UnsupportedCompression) {
  Gray(8, 8, 8, 64, COMPRESSION_LZMA).Write(dir_.File("lzma.tif"), 64);
  EXPECT_THAT(ReadTiff(dir_.File("lzma.tif")),
              StatusIs(kInvalid, AllOf(HasSubstr("page 0"), HasSubstr("is not supported"),
                                       HasSubstr("supported: none, LZW"))));
}

TEST_F(CorruptTiffTest, PagesOfDifferentSizes) {
  const std::string path = dir_.File("mixed.tif");
  TIFF* tif = TIFFOpen(path.c_str(), "w");
  ASSERT_NE(tif, nullptr);
  std::vector<uint8_t> row(64, 7);
  for (uint32_t side : {64u, 32u}) {
    TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, side);
    TIFFSetField(tif, TIFFTAG_IMAGELENGTH, side);
    TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, 8);
    TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, 1);
    TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, side);
    for (uint32_t y = 0; y < side; ++y) TIFFWriteScanline(tif, row.data(), y, 0);
    TIFFWriteDirectory(tif);
  }
  TIFFClose(tif);
  EXPECT_THAT(ReadTiff(path), StatusIs(kInvalid, AllOf(HasSubstr("page 1: 32x32 uint8"),
                                                       HasSubstr("differs from page 0"))));
}

TEST_F(CorruptTiffTest, TruncatedFiles) {
  for (Compression c : {Compression::kNone, Compression::kDeflate}) {
    const std::string path = dir_.File("t.tif");
    WriteOptions options;
    options.compression = c;
    ASSERT_OK(WriteTiff(path, MakeStack({8, 64, 64}, PixelType::kUint16), options));
    fs::resize_file(path, fs::file_size(path) * 6 / 10);
    EXPECT_THAT(ReadTiff(path), StatusIs(kInvalid, AllOf(HasSubstr("t.tif: page "))))
        << CompressionName(c);
  }
}

TEST_F(CorruptTiffTest, GarbageInsideACompressedStrip) {
  const std::string path = dir_.File("g.tif");
  WriteOptions options;
  options.compression = Compression::kDeflate;
  ASSERT_OK(WriteTiff(path, MakeStack({4, 64, 64}, PixelType::kUint16), options));
  // Find page 2's first strip and overwrite it with noise.
  uint64_t offset = 0, bytes = 0;
  {
    TIFF* tif = TIFFOpen(path.c_str(), "r");
    ASSERT_NE(tif, nullptr);
    ASSERT_TRUE(TIFFSetDirectory(tif, 2));
    offset = TIFFGetStrileOffset(tif, 0);
    bytes = TIFFGetStrileByteCount(tif, 0);
    TIFFClose(tif);
  }
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(offset));
  std::vector<char> noise(bytes);
  for (size_t i = 0; i < bytes; ++i) noise[i] = static_cast<char>(i * 131 + 17);
  f.write(noise.data(), static_cast<std::streamsize>(bytes));
  f.close();
  EXPECT_THAT(ReadTiff(path),
              StatusIs(kInvalid, AllOf(HasSubstr("g.tif: page 2: strip 0"), HasSubstr("corrupt"))));
}

}  // namespace
}  // namespace stackproc::core
