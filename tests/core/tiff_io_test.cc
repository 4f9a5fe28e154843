// Our writer and reader: exact round trips, BigTIFF, atomic replacement, cancellation.
#include "core/io/tiff_io.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/tiff/tiff_directory.h"
#include "core/tiff/tiff_reader.h"
#include "core/tiff/tiff_writer.h"
#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc::core {
namespace {

namespace fs = std::filesystem;
using ::stackproc::testing::MakeStack;
using ::stackproc::testing::RunCommand;
using ::stackproc::testing::StacksEqual;
using ::stackproc::testing::StatusIs;
using ::stackproc::testing::TempDir;
using ::testing::HasSubstr;

constexpr Compression kCompressions[] = {Compression::kNone, Compression::kDeflate,
                                         Compression::kZstd, Compression::kLzw};

std::vector<std::string> DirEntries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename());
  return names;
}

TEST(TiffRoundTripTest, EveryTypeAndCompressionIsExact) {
  TempDir dir;
  for (PixelType type : kAllPixelTypes) {
    for (Compression c : kCompressions) {
      SCOPED_TRACE(absl::StrCat(PixelTypeName(type), " ", CompressionName(c)));
      Stack stack = MakeStack({7, 130, 97}, type);
      stack.metadata().description = "ImageJ=1.54f\nimages=7\nslices=7\nspacing=3\nunit=um\n";
      stack.metadata().x_resolution = 2.0;
      stack.metadata().y_resolution = 4.0;
      stack.metadata().resolution_unit = ResolutionUnit::kCentimeter;
      WriteOptions options;
      options.compression = c;
      const std::string path = dir.File("stack.tif");
      ASSERT_OK(WriteTiff(path, stack, options));
      ASSERT_OK_AND_ASSIGN(Stack back, ReadTiff(path));
      EXPECT_TRUE(StacksEqual(back, stack));
      EXPECT_EQ(back.metadata().description, stack.metadata().description);
      EXPECT_EQ(back.metadata().x_resolution, 2.0);
      EXPECT_EQ(back.metadata().y_resolution, 4.0);
      EXPECT_EQ(back.metadata().resolution_unit, ResolutionUnit::kCentimeter);
    }
  }
}

// Noise does not compress: igzip (levels 1-3) and libdeflate (4-9) must still fit each strip in
// the output they are given (stored blocks) and read back exactly. Pages of 2 strips, the last
// short.
TEST(TiffRoundTripTest, DeflateKeepsNoiseAtEveryEncoder) {
  TempDir dir;
  for (PixelType type : {PixelType::kUint8, PixelType::kUint16}) {
    ASSERT_OK_AND_ASSIGN(Stack stack, Stack::Allocate({3, 700, 1000}, type));
    std::mt19937 random(7);
    for (size_t i = 0; i < stack.size_bytes(); ++i)
      stack.data()[i] = static_cast<uint8_t>(random());
    for (int level : {1, 3, 4, 9}) {
      SCOPED_TRACE(absl::StrCat(PixelTypeName(type), " deflate:level=", level));
      WriteOptions options;
      options.compression = Compression::kDeflate;
      options.compression_level = level;
      const std::string path = dir.File("noise.tif");
      ASSERT_OK(WriteTiff(path, stack, options));
      EXPECT_GT(std::filesystem::file_size(path), stack.size_bytes());  // stored, not shrunk
      ASSERT_OK_AND_ASSIGN(Stack back, ReadTiff(path));
      EXPECT_TRUE(StacksEqual(back, stack));
    }
  }
}

TEST(TiffRoundTripTest, CompressionShrinksSmoothData) {
  TempDir dir;
  Stack stack = MakeStack({4, 256, 256}, PixelType::kUint16);
  WriteOptions options;
  ASSERT_OK(WriteTiff(dir.File("plain.tif"), stack, options));
  options.compression = Compression::kZstd;
  ASSERT_OK(WriteTiff(dir.File("zstd.tif"), stack, options));
  EXPECT_LT(fs::file_size(dir.File("zstd.tif")), fs::file_size(dir.File("plain.tif")) * 3 / 4);
}

TEST(TiffRoundTripTest, BigTiffAboveThreshold) {
  TempDir dir;
  Stack stack = MakeStack({3, 40, 50}, PixelType::kUint16);
  WriteOptions options;
  ASSERT_OK(WriteTiff(dir.File("small.tif"), stack, options));
  ASSERT_OK_AND_ASSIGN(TiffInfo small, ProbeTiff(dir.File("small.tif")));
  EXPECT_FALSE(small.bigtiff);

  options.bigtiff_threshold = stack.size_bytes() - 1;
  options.compression = Compression::kDeflate;
  ASSERT_OK(WriteTiff(dir.File("big.tif"), stack, options));
  ASSERT_OK_AND_ASSIGN(TiffInfo big, ProbeTiff(dir.File("big.tif")));
  EXPECT_TRUE(big.bigtiff);
  ASSERT_OK_AND_ASSIGN(Stack back, ReadTiff(dir.File("big.tif")));
  EXPECT_TRUE(StacksEqual(back, stack));

  // Uncompressed, its directories written by hand (tiff_directory.h): 20-byte entries, LONG8
  // strip arrays, rationals inline; libtiff and tifffile read the pixels and the resolution.
  stack.metadata().x_resolution = 1 / 0.325;
  stack.metadata().y_resolution = 1 / 0.65;
  stack.metadata().resolution_unit = ResolutionUnit::kCentimeter;
  options.compression = Compression::kNone;
  ASSERT_OK(WriteTiff(dir.File("big-none.tif"), stack, options));
  ASSERT_OK_AND_ASSIGN(TiffInfo plain, ProbeTiff(dir.File("big-none.tif")));
  EXPECT_TRUE(plain.bigtiff);
  ASSERT_OK_AND_ASSIGN(back, ReadTiff(dir.File("big-none.tif")));
  EXPECT_TRUE(StacksEqual(back, stack));
  EXPECT_NEAR(*back.metadata().x_resolution, 1 / 0.325, 1e-5);
  EXPECT_NEAR(*back.metadata().y_resolution, 1 / 0.65, 1e-5);
  std::ofstream(dir.File("want.raw"), std::ios::binary)
      .write(reinterpret_cast<const char*>(stack.data()),
             static_cast<std::streamsize>(stack.size_bytes()));
  EXPECT_EQ(RunCommand(absl::StrCat(STACKPROC_PYTHON, " -c '", R"(
import sys, numpy, tifffile
with tifffile.TiffFile(sys.argv[1]) as tif:
    page = tif.pages[0]
    (xn, xd), (yn, yd) = page.tags["XResolution"].value, page.tags["YResolution"].value
    ok = tif.is_bigtiff and len(tif.pages) == 3 and page.tags["ResolutionUnit"].value == 3
    ok = ok and abs(xn / xd - 1 / 0.325) < 1e-6 and abs(yn / yd - 1 / 0.65) < 1e-6
    want = numpy.fromfile(sys.argv[2], numpy.uint16).reshape(3, 40, 50)
    ok = ok and numpy.array_equal(tif.asarray(), want)
sys.exit(0 if ok else 1))",
                                    "' ", dir.File("big-none.tif"), " ", dir.File("want.raw"))),
            0);
}

// A directory's bytes worked out by hand from the TIFF 6.0 and BigTIFF layouts (little-endian
// machines): entries sorted by tag, values of up to 4 (8) bytes inline, longer ones after the
// next-directory offset, at even offsets.
TEST(TiffDirectoryTest, BytesAsTheSpecLaysThemOut) {
  ASSERT_EQ(std::endian::native, std::endian::little);
  using namespace std::string_literals;
  TiffDirectory classic(false);
  classic.Ascii(305, "hello");  // 6 bytes with its NUL: after the entries
  classic.Short(256, 7);
  std::string out;
  classic.AppendTo(8, 0, out);
  EXPECT_EQ(classic.size(), 2u + 2 * 12 + 4 + 6);
  EXPECT_EQ(out,
            "\x02\x00"s                                          // 2 entries
            "\x00\x01\x03\x00\x01\x00\x00\x00\x07\x00\x00\x00"s  // 256 SHORT 1: 7
            "\x31\x01\x02\x00\x06\x00\x00\x00\x26\x00\x00\x00"s  // 305 ASCII 6 at 38
            "\x00\x00\x00\x00"s                                  // no next directory
            "hello\x00"s);
  TiffDirectory big(true);
  big.Offsets(273, {0x0102030405ull});  // one LONG8: inline
  big.Ascii(270, "abc");                // 4 bytes: inline
  out.clear();
  big.AppendTo(16, 4096, out);
  EXPECT_EQ(big.size(), 8u + 2 * 20 + 8);
  EXPECT_EQ(out,
            "\x02\x00\x00\x00\x00\x00\x00\x00"s
            "\x0e\x01\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00"s
            "abc\x00\x00\x00\x00\x00"s
            "\x11\x01\x10\x00\x01\x00\x00\x00\x00\x00\x00\x00"
            "\x05\x04\x03\x02\x01\x00\x00\x00"s
            "\x00\x10\x00\x00\x00\x00\x00\x00"s);
  EXPECT_EQ(TiffHeader(true, 4096), "II\x2b\x00\x08\x00\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00"s);
  EXPECT_EQ(TiffHeader(false, 8), "II\x2a\x00\x08\x00\x00\x00"s);
}

TEST(TiffRoundTripTest, DescriptionDefaultsToImageJStack) {
  TempDir dir;
  Stack stack = MakeStack({5, 8, 8}, PixelType::kUint8);
  ASSERT_OK(WriteTiff(dir.File("s.tif"), stack));
  ASSERT_OK_AND_ASSIGN(TiffInfo info, ProbeTiff(dir.File("s.tif")));
  EXPECT_THAT(info.metadata.description, HasSubstr("images=5\nslices=5\n"));
}

TEST(TiffAtomicWriteTest, CancelledWriteKeepsTheOldFileAndLeavesNoTemp) {
  TempDir dir;
  const std::string path = dir.File("out.tif");
  std::ofstream(path) << "previous result";
  CancelToken cancel;
  cancel.Cancel();
  WriteOptions options;
  options.cancel = &cancel;
  EXPECT_THAT(WriteTiff(path, MakeStack({3, 16, 16}, PixelType::kUint8), options),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("slice 0")));
  std::ifstream in(path);
  std::string content((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(content, "previous result");
  EXPECT_THAT(DirEntries(dir.path()), ::testing::ElementsAre("out.tif"));
}

TEST(TiffAtomicWriteTest, RefusesToOverwriteWhenAsked) {
  TempDir dir;
  const std::string path = dir.File("out.tif");
  std::ofstream(path) << "keep me";
  WriteOptions options;
  options.overwrite = false;
  EXPECT_THAT(WriteTiff(path, MakeStack({1, 4, 4}, PixelType::kUint8), options),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(path)));
  EXPECT_EQ(fs::file_size(path), 7u);
  EXPECT_THAT(DirEntries(dir.path()), ::testing::ElementsAre("out.tif"));
}

TEST(TiffAtomicWriteTest, AFileThatAppearsDuringTheWriteIsNotReplacedWithoutOverwrite) {
  TempDir dir;
  const std::string path = dir.File("out.tif");
  const Stack stack = MakeStack({2, 4, 4}, PixelType::kUint8);
  WriteOptions options;
  options.overwrite = false;
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<TiffPageWriter> writer,
      TiffPageWriter::Create(path, stack.shape(), stack.pixel_type(), {}, options));
  for (int64_t z = 0; z < 2; ++z) ASSERT_OK(writer->WritePage(stack.slice_data(z)));
  std::ofstream(path) << "someone else's";  // between the check and the rename
  EXPECT_THAT(writer->Commit(),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("appeared while")));
  writer.reset();
  EXPECT_EQ(fs::file_size(path), 14u);
  EXPECT_THAT(DirEntries(dir.path()), ::testing::ElementsAre("out.tif"));  // no temp left
}

TEST(TiffAtomicWriteTest, AFullDiskFailsCleanlyAndKeepsTheOldFile) {
  TempDir dir;
  const std::string path = dir.File("out.tif");
  std::ofstream(path) << "previous result";
  const Stack stack = MakeStack({8, 256, 256}, PixelType::kUint16);  // 1 MiB
  for (Compression c : {Compression::kNone, Compression::kDeflate}) {
    absl::Status status;
    {
      ::stackproc::testing::FileSizeLimit full(64 << 10);
      WriteOptions options;
      options.compression = c;
      status = WriteTiff(path, stack, options);
    }
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kResourceExhausted,
                                 HasSubstr("the file size limit is reached")))
        << CompressionName(c);
    std::ifstream in(path);
    EXPECT_EQ(std::string((std::istreambuf_iterator<char>(in)), {}), "previous result");
    EXPECT_THAT(DirEntries(dir.path()), ::testing::ElementsAre("out.tif"));  // no temp left
  }
}

TEST(TiffAtomicWriteTest, MissingDirectoryIsAClearError) {
  TempDir dir;
  const std::string path = dir.File("no/such/dir/out.tif");
  absl::Status status = WriteTiff(path, MakeStack({1, 4, 4}, PixelType::kUint8));
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("no/such/dir"));
  EXPECT_FALSE(fs::exists(path));
}

TEST(TiffReadTest, CancelledReadReturnsCancelled) {
  TempDir dir;
  ASSERT_OK(WriteTiff(dir.File("s.tif"), MakeStack({6, 16, 16}, PixelType::kUint16)));
  CancelToken cancel;
  cancel.Cancel();
  ReadOptions options;
  options.cancel = &cancel;
  EXPECT_THAT(ReadTiff(dir.File("s.tif"), options),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("cancelled")));
}

}  // namespace
}  // namespace stackproc::core
