// OME-Zarr and Zarr v2 inputs written by zarr-python and numcodecs (tests/core/zarr_stores.py):
// every compressor, both byte orders, the three pixel types, nested keys, fill values, leading
// axes of length one; read through a path job (ProcessFile) and compared with the stack that
// numpy wrote. Bad stores are refused naming the file, and nothing is written.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/io/formats.h"
#include "core/io/zarr_source.h"
#include "core/process/process_file.h"
#include "core/stack/voxel_size.h"
#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc::core {
namespace {

using ::stackproc::testing::RunCommand;
using ::stackproc::testing::SourceDir;
using ::stackproc::testing::StatusIs;
using ::stackproc::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

class ZarrInputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    ASSERT_EQ(RunCommand(absl::StrCat(STACKPROC_PYTHON, " ", SourceDir(),
                                      "/tests/core/zarr_stores.py ", dir_->path().string())),
              0);
  }
  static void TearDownTestSuite() { delete dir_; }

  // The stack numpy wrote to `raw`, as `type`.
  static Stack Reference(const std::string& raw, PixelType type) {
    absl::StatusOr<Stack> stack = Stack::Allocate({13, 70, 90}, type);
    std::ifstream in(dir_->File(raw), std::ios::binary);
    in.read(reinterpret_cast<char*>(stack->data()),
            static_cast<std::streamsize>(stack->size_bytes()));
    EXPECT_TRUE(in.good()) << raw;
    return std::move(stack).value();
  }

  // What a job with no steps reads from `input` (the engine's path, the server's too).
  static absl::StatusOr<Stack> Read(const std::string& input) {
    ProcessRequest request;
    request.input_path = dir_->File(input);
    absl::StatusOr<ProcessSummary> summary = ProcessFile(request);
    if (!summary.ok()) return summary.status();
    return std::move(summary->result).value();
  }

  static TempDir* dir_;
};
TempDir* ZarrInputTest::dir_ = nullptr;

TEST_F(ZarrInputTest, EveryCompressorAndByteOrderReadsTheStackNumpyWrote) {
  const Stack u16 = Reference("ref_u16.raw", PixelType::kUint16);
  for (const char* store :
       {"none.zarr", "zlib.zarr", "gzip.zarr", "zstd.zarr", "blosc_zstd_bit.zarr",
        "blosc_zlib.zarr", "blosc_lz4hc.zarr", "big_endian.zarr", "nested.zarr", "ngff.zarr",
        "ngff.zarr/", "tczyx.zarr", "ngff.zarr/s0"}) {
    SCOPED_TRACE(store);
    ASSERT_OK_AND_ASSIGN(Stack got, Read(store));
    EXPECT_TRUE(::stackproc::testing::StacksEqual(got, u16));
  }
  ASSERT_OK_AND_ASSIGN(Stack u8, Read("uint8.zarr"));
  EXPECT_TRUE(::stackproc::testing::StacksEqual(u8, Reference("ref_u8.raw", PixelType::kUint8)));
  ASSERT_OK_AND_ASSIGN(Stack f32, Read("float32_be.zarr"));
  EXPECT_TRUE(
      ::stackproc::testing::StacksEqual(f32, Reference("ref_f32.raw", PixelType::kFloat32)));
}

TEST_F(ZarrInputTest, ChunksNeverWrittenReadAsTheFillValue) {
  ASSERT_OK_AND_ASSIGN(Stack got, Read("sparse.zarr"));
  EXPECT_TRUE(::stackproc::testing::StacksEqual(got, Reference("sparse.raw", PixelType::kUint16)));
}

TEST_F(ZarrInputTest, TheImagesScaleAndUnitBecomeTheStacksVoxelSize) {
  const LocalFiles files;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SliceSource> ngff,
                       OpenInput(files, dir_->File("ngff.zarr")));
  EXPECT_EQ(ngff->info().shape, (StackShape{13, 70, 90}));
  const VoxelSize size = VoxelSizeOf(ngff->info().metadata);
  EXPECT_EQ(size.unit, "micrometer");
  EXPECT_DOUBLE_EQ(size.z.value_or(0), 2.0);
  EXPECT_DOUBLE_EQ(size.y.value_or(0), 0.5);
  EXPECT_DOUBLE_EQ(size.x.value_or(0), 0.25);
  // Chunks of 4 slices: the source says so, and the plan holds those z-chunks.
  EXPECT_EQ(ngff->traits().chunk_slices, 4);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SliceSource> tczyx,
                       OpenInput(files, dir_->File("tczyx.zarr")));
  EXPECT_DOUBLE_EQ(VoxelSizeOf(tczyx->info().metadata).z.value_or(0), 3.0);
  // A plain array states no size.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SliceSource> plain,
                       OpenInput(files, dir_->File("zstd.zarr")));
  EXPECT_FALSE(VoxelSizeOf(plain->info().metadata).x.has_value());
}

TEST_F(ZarrInputTest, TheLimitsOfTheJobApplyAsToATiff) {
  // The server's --max-side, --max-slices and --max-stack-bytes, as StackLimits.
  const LocalFiles files;
  StackLimits limits;
  limits.max_side = 80;  // the stack is 70x90
  EXPECT_THAT(ZarrSource::Open(files, dir_->File("zstd.zarr"), limits),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("90x70 pixels")));
  limits = StackLimits{};
  limits.max_pages = 12;
  EXPECT_THAT(ZarrSource::Open(files, dir_->File("zstd.zarr"), limits),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("13 slices")));
  limits = StackLimits{};
  limits.max_stack_bytes = 13 * 70 * 90 * 2 - 1;
  EXPECT_THAT(ZarrSource::Open(files, dir_->File("zstd.zarr"), limits),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("exceeds the limit")));
}

TEST_F(ZarrInputTest, BadStoresAreRefusedNamingTheFileAndNothingIsWritten) {
  const auto process = [&](const std::string& store) {
    ProcessRequest request;
    request.input_path = dir_->File(store);
    request.output_path = dir_->File("out.tif");
    request.ops = ::stackproc::testing::Ops({"invert"});
    return ProcessFile(request).status();
  };
  EXPECT_THAT(process("four_d.zarr"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("four_d.zarr/.zarray"), HasSubstr("4-D"),
                             HasSubstr("[2, 13, 70, 90]"))));
  EXPECT_THAT(process("lzma.zarr"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("lzma.zarr/.zarray"), HasSubstr("\"lzma\""))));
  EXPECT_THAT(process("fortran.zarr"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("order \"F\"")));
  EXPECT_THAT(process("int16.zarr"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dtype \"<i2\"")));
  EXPECT_THAT(process("filters.zarr"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("delta")));
  EXPECT_THAT(process("plain_group.zarr"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("no \"multiscales\""), HasSubstr("arrays instead: a"))));
  EXPECT_THAT(process("missing.zarr"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.zarr: no such folder")));
  std::filesystem::create_directory(dir_->File("empty.zarr"));
  EXPECT_THAT(process("empty.zarr"), StatusIs(absl::StatusCode::kInvalidArgument,
                                              HasSubstr("neither a .zarray nor a .zattrs")));
  // Found only as the slices are read: the chunk's file is named.
  EXPECT_THAT(process("truncated.zarr"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated.zarr/1.1.1")));
  EXPECT_THAT(process("lying.zarr"),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr("lying.zarr/0.0.0"), HasSubstr("not the chunk's"))));
  EXPECT_FALSE(std::filesystem::exists(dir_->File("out.tif")));
}

}  // namespace
}  // namespace stackproc::core
