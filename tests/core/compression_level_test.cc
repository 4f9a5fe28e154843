// Compression levels: the --compression grammar (worked out by hand), and files written at
// several levels read back by other tools — tifffile (deflate), libtiff's tiffcp (zstd: the
// Debian tifffile has no zstd codec) and zarr-python — equal to the stack written.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "core/io/formats.h"
#include "core/io/tiff_io.h"
#include "core/tiff/strip_encoder.h"
#include "core/tiff/tiff_writer.h"
#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc::core {
namespace {

using ::stackproc::testing::MakeStack;
using ::stackproc::testing::RunCommand;
using ::stackproc::testing::StatusIs;
using ::stackproc::testing::TempDir;
using ::testing::HasSubstr;

TEST(CompressionLevelTest, TheGrammarTakesALevelPerCodecAndRefusesTheRest) {
  WriteOptions w;
  w.compression_level = -1;
  ASSERT_OK(ParseCompressionText("deflate:level=9", w));
  EXPECT_EQ(w.compression, Compression::kDeflate);
  EXPECT_EQ(w.compression_level, 9);
  EXPECT_EQ(w.predictor, Predictor::kDefault);
  ASSERT_OK(ParseCompressionText("zstd", w));
  EXPECT_EQ(w.compression, Compression::kZstd);
  EXPECT_EQ(w.compression_level, 0);
  ASSERT_OK(ParseCompressionText("deflate:predictor=differencing,level=6", w));
  EXPECT_EQ(w.compression_level, 6);
  EXPECT_EQ(w.predictor, Predictor::kDifferencing);
  EXPECT_EQ(CompressionText(w.compression, w.compression_level, w.predictor),
            "deflate:level=6,predictor=differencing");
  ASSERT_OK(ParseCompressionText("lzw:predictor=none", w));
  EXPECT_EQ(w.predictor, Predictor::kNone);
  EXPECT_EQ(CompressionLevel(Compression::kZstd, 0), 1);  // the defaults (tests/bench/levels.py)
  EXPECT_EQ(CompressionLevel(Compression::kDeflate, 0), 1);
  EXPECT_EQ(CompressionLevel(Compression::kLz4, 0), 5);
  EXPECT_EQ(CompressionText(Compression::kZstd, 19), "zstd:level=19");
  EXPECT_EQ(CompressionText(Compression::kLz4, 0), "lz4");
  const struct {
    const char* text;
    const char* why;
  } bad[] = {
      {"deflate:level=10", "outside 1-9"},
      {"zstd:level=20", "outside 1-19"},
      {"lzw:level=2", "takes no level"},
      {"none:level=1", "takes no level"},
      {"default:level=3", "takes no level"},
      {"deflate:lvl=3", "NAME:level=N"},
      {"deflate:level=0", "NAME:level=N"},
      {"brotli", "unknown compression"},
      {"none:predictor=none", "takes no predictor"},
      {"lz4:predictor=differencing", "no predictor"},
      {"deflate:predictor=yes", "predictor=none|differencing"},
      {"deflate:level=3,", "NAME:level=N"},
  };
  for (const auto& b : bad) {
    EXPECT_THAT(ParseCompressionText(b.text, w),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(b.why)))
        << b.text;
  }
}

TEST(CompressionLevelTest, FilesAtEachLevelReadBackEqualInOtherTools) {
  TempDir dir;
  const Stack stack = MakeStack({6, 96, 128}, PixelType::kUint16, 4);
  ASSERT_OK(WriteTiff(dir.File("ref.tif"), stack));
  std::vector<uintmax_t> deflate_sizes;
  for (const char* text : {"deflate:level=1", "deflate:level=9", "zstd:level=1", "zstd:level=19",
                           "zstd:level=9", "lz4:level=1"}) {
    SCOPED_TRACE(text);
    WriteOptions options;
    ASSERT_OK(ParseCompressionText(text, options));
    const bool zarr = std::string(text) == "zstd:level=9" || std::string(text) == "lz4:level=1";
    const std::string out = dir.File(zarr ? "out.zarr" : "out.tif");
    options.zarr_format = 2;  // NGFF 0.4, what zarr-python 2 reads
    std::filesystem::remove_all(out);
    ASSERT_OK(WriteStack(out, stack, options));
    if (zarr) {
      // The level is the store's (blosc's clevel), and zarr-python reads the pixels.
      EXPECT_EQ(RunCommand(absl::StrCat(STACKPROC_PYTHON, " -c '", R"(
import json, sys, numpy, tifffile, zarr
meta = json.load(open(sys.argv[1] + "/0/.zarray"))
ok = meta["compressor"]["clevel"] == int(sys.argv[3])
ok = ok and numpy.array_equal(zarr.open_group(sys.argv[1], "r")["0"][...], tifffile.imread(sys.argv[2]))
sys.exit(0 if ok else 1))",
                                        "' ", out, " ", dir.File("ref.tif"), " ",
                                        options.compression_level)),
                0);
    } else if (options.compression == Compression::kDeflate) {
      deflate_sizes.push_back(std::filesystem::file_size(out));
      EXPECT_EQ(RunCommand(
                    absl::StrCat(STACKPROC_PYTHON,
                                 " -c 'import sys, numpy, tifffile; sys.exit(not numpy.array_equal("
                                 "tifffile.imread(sys.argv[1]), tifffile.imread(sys.argv[2])))' ",
                                 out, " ", dir.File("ref.tif"))),
                0);
    } else {  // zstd: libtiff decodes it into an uncompressed copy
      ASSERT_EQ(RunCommand(absl::StrCat("tiffcp -c none ", out, " ", dir.File("plain.tif"))), 0);
      EXPECT_EQ(RunCommand(
                    absl::StrCat(STACKPROC_PYTHON,
                                 " -c 'import sys, numpy, tifffile; sys.exit(not numpy.array_equal("
                                 "tifffile.imread(sys.argv[1]), tifffile.imread(sys.argv[2])))' ",
                                 dir.File("plain.tif"), " ", dir.File("ref.tif"))),
                0);
    }
  }
  ASSERT_EQ(deflate_sizes.size(), 2u);
  EXPECT_NE(deflate_sizes[0], deflate_sizes[1]);  // the level reached the encoder
}

// Leaves `value` in every 16-bit word of the stack below the caller's frame, where the next
// call's locals will be: what a stack of earlier work leaves there.
[[gnu::noinline]] void LeaveOnTheStack(uint16_t value) {
  volatile uint16_t words[1 << 16];
  for (auto& w : words) w = value;
}

// The same strip makes the same bytes whatever was on the stack before: igzip's stream has a
// field (hist_bits, the window's size) that its stateless init leaves as it finds it, and any
// of 1-15 there would shrink the window (a strip compressed differently, now and then, from
// one run to the next).
TEST(CompressionLevelTest, AStripCompressesToTheSameBytesWhateverWasOnTheStack) {
  std::vector<uint8_t> strip(64 * 1024);
  for (size_t i = 0; i < strip.size(); ++i) {
    strip[i] = static_cast<uint8_t>((i * 7919 % 251) ^ (i / 512));
  }
  for (int level : {1, 2, 3}) {
    std::vector<uint8_t> scratch, clean, dirty;
    LeaveOnTheStack(0);
    ASSERT_OK(EncodeStrip(Compression::kDeflate, level, PixelType::kUint8, false, strip.data(), 64,
                          1024, scratch, clean));
    for (uint16_t bits : {5, 9, 12}) {
      LeaveOnTheStack(bits);
      ASSERT_OK(EncodeStrip(Compression::kDeflate, level, PixelType::kUint8, false, strip.data(),
                            64, 1024, scratch, dirty));
      EXPECT_EQ(dirty, clean) << "level " << level << ", " << bits << " on the stack";
    }
  }
}

}  // namespace
}  // namespace stackproc::core
