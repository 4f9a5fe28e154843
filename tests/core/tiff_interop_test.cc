// Files written by other tools (tifffile, libtiff's tiffcp) load exactly; files we write load
// exactly in tifffile; metadata crosses both ways and follows geometry changes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <tbb/task_arena.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/io/tiff_io.h"
#include "core/process/process_file.h"
#include "core/tiff/tiff_reader.h"
#include "core/tiff/tiff_writer.h"
#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc::core {
namespace {

using ::stackproc::testing::MakeStack;
using ::stackproc::testing::Ops;
using ::stackproc::testing::RunCommand;
using ::stackproc::testing::SourceDir;
using ::stackproc::testing::StacksEqual;
using ::stackproc::testing::StatusIs;
using ::stackproc::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

struct Variant {
  std::string name;
  PixelType type;
  StackShape shape;
};

class ForeignFilesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    std::string listing = dir_->File("listing.txt");
    ASSERT_EQ(
        RunCommand(absl::StrCat(STACKPROC_PYTHON, " ", SourceDir(), "/tests/core/tiff_variants.py ",
                                dir_->path().string(), " > ", listing)),
        0);
    std::ifstream in(listing);
    std::string name, kind;
    int64_t d, h, w;
    variants_ = new std::vector<Variant>;
    while (in >> name >> kind >> d >> h >> w) {
      PixelType type = kind == "u8"    ? PixelType::kUint8
                       : kind == "u16" ? PixelType::kUint16
                                       : PixelType::kFloat32;
      variants_->push_back({name, type, {d, h, w}});
    }
  }
  static void TearDownTestSuite() {
    delete variants_;
    delete dir_;
  }

  static Stack Raw(const Variant& v) {
    absl::StatusOr<Stack> stack = Stack::Allocate(v.shape, v.type);
    std::ifstream in(dir_->File(v.name + ".raw"), std::ios::binary);
    in.read(reinterpret_cast<char*>(stack->data()),
            static_cast<std::streamsize>(stack->size_bytes()));
    EXPECT_TRUE(in.good()) << v.name;
    return std::move(stack).value();
  }

  static TempDir* dir_;
  static std::vector<Variant>* variants_;
};
TempDir* ForeignFilesTest::dir_ = nullptr;
std::vector<Variant>* ForeignFilesTest::variants_ = nullptr;

TEST_F(ForeignFilesTest, EveryLayoutLoadsExactly) {
  ASSERT_GE(variants_->size(), 20u);
  for (const Variant& v : *variants_) {
    SCOPED_TRACE(v.name);
    ASSERT_OK_AND_ASSIGN(Stack stack, ReadTiff(dir_->File(v.name + ".tif")));
    EXPECT_TRUE(StacksEqual(stack, Raw(v)));
  }
}

TEST_F(ForeignFilesTest, ProbeReportsLayout) {
  ASSERT_OK_AND_ASSIGN(TiffInfo big, ProbeTiff(dir_->File("u16_bigtiff_bigendian_tiled.tif")));
  EXPECT_TRUE(big.bigtiff);
  EXPECT_TRUE(big.big_endian);
  EXPECT_TRUE(big.tiled);
  ASSERT_OK_AND_ASSIGN(TiffInfo zstd, ProbeTiff(dir_->File("u16_zstd.tif")));
  EXPECT_FALSE(zstd.bigtiff);
  EXPECT_EQ(zstd.compression, 50000);  // COMPRESSION_ZSTD
  EXPECT_EQ(zstd.page_offsets.size(), 5u);
}

TEST_F(ForeignFilesTest, AnImageJRawStackIsItsPlanes) {
  ASSERT_OK_AND_ASSIGN(TiffInfo info, ProbeTiff(dir_->File("u16_imagej_raw_bigendian.tif")));
  EXPECT_EQ(info.page_offsets.size(), 1u);  // one directory for five planes
  EXPECT_EQ(info.shape, (StackShape{5, 67, 93}));
  EXPECT_TRUE(info.contiguous_planes_at.has_value());
  // The planes through the engine, page by page, as a path job reads them.
  ASSERT_OK_AND_ASSIGN(InputFile file, InputFile::Open(dir_->File("u16_imagej_raw_bigendian.tif")));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TiffPageReader> reader, TiffPageReader::Open(file));
  const Variant v{"u16_imagej_raw_bigendian", PixelType::kUint16, {5, 67, 93}};
  const Stack expected = Raw(v);
  std::vector<uint8_t> page(expected.slice_bytes());
  ASSERT_OK(reader->ReadPage(4, page.data()));
  EXPECT_EQ(std::memcmp(page.data(), expected.slice_data(4), page.size()), 0);

  // Truncated by a byte: the last plane is not all there, and the probe says so.
  TempDir dir;
  const std::string cut = dir.File("cut.tif");
  std::filesystem::copy_file(dir_->File("u8_imagej_raw.tif"), cut);
  std::filesystem::resize_file(cut, std::filesystem::file_size(cut) - 1);
  EXPECT_THAT(ProbeTiff(cut), StatusIs(absl::StatusCode::kInvalidArgument,
                                       AllOf(HasSubstr("images=5"), HasSubstr("truncated"))));
}

TEST_F(ForeignFilesTest, SingleThreadedReadEqualsParallelRead) {
  tbb::task_arena one(1);
  ReadOptions serial;
  serial.arena = &one;
  for (const char* name : {"u16_tiled_zstd", "f32_deflate_floatpred", "u16_rows7"}) {
    ASSERT_OK_AND_ASSIGN(Stack a, ReadTiff(dir_->File(std::string(name) + ".tif"), serial));
    ASSERT_OK_AND_ASSIGN(Stack b, ReadTiff(dir_->File(std::string(name) + ".tif")));
    EXPECT_TRUE(StacksEqual(a, b)) << name;
  }
}

TEST(OurFilesTest, TifffileReadsEveryTypeAndCompression) {
  TempDir dir;
  std::string args;
  int n = 0;
  for (PixelType type : kAllPixelTypes) {
    for (Compression c :
         {Compression::kNone, Compression::kDeflate, Compression::kZstd, Compression::kLzw}) {
      Stack stack = MakeStack({4, 61, 75}, type, static_cast<uint32_t>(++n));
      std::string name = absl::StrCat(PixelTypeName(type), "_", CompressionName(c));
      WriteOptions options;
      options.compression = c;
      ASSERT_OK(WriteTiff(dir.File(name + ".tif"), stack, options));
      std::ofstream(dir.File(name + ".raw"), std::ios::binary)
          .write(reinterpret_cast<const char*>(stack.data()),
                 static_cast<std::streamsize>(stack.size_bytes()));
      absl::StrAppend(&args, " ", name, " ", PixelTypeName(type), " 4 61 75");
    }
  }
  EXPECT_EQ(RunCommand(absl::StrCat(STACKPROC_PYTHON, " ", SourceDir(),
                                    "/tests/core/check_written.py ", dir.path().string(), args)),
            0);
}

// Pages of several strips: deflate and zstd strips are compressed in parallel and written by
// index; tifffile (deflate) and tiffcp (zstd) must read them back exactly.
TEST(OurFilesTest, MultiStripPagesCompressedInParallelReadBack) {
  TempDir dir;
  std::string args;
  for (PixelType type : {PixelType::kUint8, PixelType::kUint16}) {
    for (Compression c : {Compression::kDeflate, Compression::kZstd}) {
      // 1500 rows of 700 pixels: 749 (uint8) or 374 (uint16) rows per 512 KiB strip.
      Stack stack = MakeStack({3, 1500, 700}, type, 77);
      std::string name = absl::StrCat("multi_", PixelTypeName(type), "_", CompressionName(c));
      WriteOptions options;
      options.compression = c;
      ASSERT_OK(WriteTiff(dir.File(name + ".tif"), stack, options));
      ASSERT_OK_AND_ASSIGN(Stack back, ReadTiff(dir.File(name + ".tif")));
      EXPECT_TRUE(StacksEqual(back, stack)) << name;
      std::ofstream(dir.File(name + ".raw"), std::ios::binary)
          .write(reinterpret_cast<const char*>(stack.data()),
                 static_cast<std::streamsize>(stack.size_bytes()));
      absl::StrAppend(&args, " ", name, " ", PixelTypeName(type), " 3 1500 700");
    }
  }
  EXPECT_EQ(RunCommand(absl::StrCat(STACKPROC_PYTHON, " ", SourceDir(),
                                    "/tests/core/check_written.py ", dir.path().string(), args)),
            0);
  EXPECT_EQ(RunCommand(absl::StrCat("tiffinfo ", dir.File("multi_uint16_zstd.tif"),
                                    " | grep -q 'Rows/Strip: 374'")),
            0);
}

// Runs a Python snippet with tifffile/numpy; `D` is the test's directory.
int Python(const TempDir& dir, const std::string& code) {
  std::string script = dir.File("snippet.py");
  std::ofstream(script) << "import sys, numpy as np, tifffile\nD = sys.argv[1]\n" << code;
  return RunCommand(absl::StrCat(STACKPROC_PYTHON, " ", script, " ", dir.path().string()));
}

TEST(MetadataInteropTest, ImageJMetadataFollowsResize) {
  TempDir dir;
  ASSERT_EQ(Python(dir, R"(
a = (np.arange(6 * 40 * 60) % 4000).astype(np.uint16).reshape(6, 40, 60)
tifffile.imwrite(f"{D}/in.tif", a, imagej=True, resolution=(1 / 0.65, 1 / 0.65),
                 metadata={"spacing": 2.5, "unit": "um", "axes": "ZYX"})
)"),
            0);
  ASSERT_OK_AND_ASSIGN(TiffInfo info, ProbeTiff(dir.File("in.tif")));
  EXPECT_THAT(info.metadata.description, HasSubstr("spacing=2.5"));
  ASSERT_TRUE(info.metadata.x_resolution.has_value());
  EXPECT_NEAR(*info.metadata.x_resolution, 1 / 0.65, 1e-4);

  ProcessRequest request;
  request.input_path = dir.File("in.tif");
  request.output_path = dir.File("out.tif");
  request.ops = Ops({"resize:scale=0.5"});
  ASSERT_OK(ProcessFile(request));
  // tifffile reads the new truth: half the pixels, twice the pixel size, same Z spacing.
  EXPECT_EQ(Python(dir, R"(
with tifffile.TiffFile(f"{D}/out.tif") as t:
    ij = t.imagej_metadata
    assert t.series[0].shape == (6, 20, 30), t.series[0].shape
    assert ij["spacing"] == 2.5 and ij["unit"] == "um" and ij["slices"] == 6, ij
    xres = t.pages[0].tags["XResolution"].value
    assert abs(xres[1] / xres[0] - 1.3) < 1e-4, xres
)"),
            0);
}

TEST(MetadataInteropTest, TifffileDefaultJsonFollowsResizeAndCrop) {
  TempDir dir;
  // tifffile's defaults: a JSON description stating the shape, which tifffile trusts on read.
  ASSERT_EQ(Python(dir, R"(
a = (np.arange(6 * 40 * 60) % 250).astype(np.uint8).reshape(6, 40, 60)
tifffile.imwrite(f"{D}/in.tif", a)
with tifffile.TiffFile(f"{D}/in.tif") as t:
    assert t.pages[0].description.startswith('{"shape"'), t.pages[0].description
)"),
            0);
  ProcessRequest request;
  request.input_path = dir.File("in.tif");
  request.output_path = dir.File("out.tif");
  request.ops = Ops({"resize:scale=0.5", "crop:x=2,y=1,width=25,height=17"});
  ASSERT_OK(ProcessFile(request));
  EXPECT_EQ(Python(dir, R"(
with tifffile.TiffFile(f"{D}/out.tif") as t:
    assert t.pages[0].description.startswith('{"shape": [6, 17, 25]'), t.pages[0].description
    assert t.series[0].shape == (6, 17, 25), t.series[0].shape
    assert tifffile.imread(f"{D}/out.tif").shape == (6, 17, 25)
)"),
            0);
}

TEST(MetadataInteropTest, OmeXmlFollowsCrop) {
  TempDir dir;
  ASSERT_EQ(Python(dir, R"(
a = np.zeros((3, 50, 80), np.uint8)
tifffile.imwrite(f"{D}/in.ome.tif", a, ome=True, photometric="minisblack",
                 metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
)"),
            0);
  ProcessRequest request;
  request.input_path = dir.File("in.ome.tif");
  request.output_path = dir.File("out.ome.tif");
  request.ops = Ops({"crop:x=10,y=5,width=40,height=20", "resize:scale=0.5", "convert:to=uint16"});
  ASSERT_OK(ProcessFile(request));
  EXPECT_EQ(Python(dir, R"(
import xml.etree.ElementTree as ET
with tifffile.TiffFile(f"{D}/out.ome.tif") as t:
    root = ET.fromstring(t.ome_metadata)
    px = [e for e in root.iter() if e.tag.endswith("Pixels")][0].attrib
    assert (px["SizeX"], px["SizeY"], px["SizeZ"], px["Type"]) == ("20", "10", "3", "uint16"), px
    assert float(px["PhysicalSizeX"]) == 1.0 and float(px["PhysicalSizeY"]) == 1.0, px
    assert t.series[0].shape == (3, 10, 20), t.series[0].shape
)"),
            0);
}

}  // namespace
}  // namespace stackproc::core
