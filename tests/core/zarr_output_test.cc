// OME-Zarr outputs of path jobs. NGFF 0.4 (--zarr-format 2) read back by Debian's zarr-python
// (tests/core/check_zarr.py): metadata field by field (axes, units, scales per level, dataset
// paths), each level's .zarray, level 0 against a direct OpenCV call on the source and each
// pyramid level against numpy's mean of the level before. The store is there whole or not at
// all, and z-ranges written apart make the store one run makes, in both formats. (NGFF 0.5's
// stores are read by zarrita: tests/core/zarr_v3.py.)
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/io/formats.h"
#include "core/io/stack_io.h"
#include "core/io/tiff_io.h"
#include "core/io/zarr_sink.h"
#include "core/process/process_file.h"
#include "core/stack/voxel_size.h"
#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc::core {
namespace {

using ::stackproc::testing::MakeStack;
using ::stackproc::testing::Ops;
using ::stackproc::testing::RunCommand;
using ::stackproc::testing::SourceDir;
using ::stackproc::testing::StatusIs;
using ::stackproc::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

// NGFF 0.4 (what zarr-python 2 reads) unless `zarr_format` says 3.
WriteOptions Write(Compression compression, std::optional<std::array<int64_t, 3>> chunks = {},
                   int pyramid_levels = 0, int zarr_format = 2) {
  WriteOptions write;
  write.compression = compression;
  write.chunks = chunks;
  write.pyramid_levels = pyramid_levels;
  write.zarr_format = zarr_format;
  return write;
}

class ZarrOutputTest : public ::testing::Test {
 protected:
  // Sources written by tifffile: 21x150x170 uint16 and uint8 with ImageJ's unit (um), slice
  // spacing 2.0 and 4 pixels per um (0.25 um pixels); and uint16 with no physical size.
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    ASSERT_EQ(RunCommand(absl::StrCat(STACKPROC_PYTHON, " -c '", R"(
import sys, numpy, tifffile
d = sys.argv[1]
rng = numpy.random.default_rng(9)
a = (rng.integers(0, 20000, (21, 150, 170)) + numpy.arange(170) * 200).astype(numpy.uint16)
meta = {"spacing": 2.0, "unit": "um", "axes": "ZYX"}  # without axes, tifffile says channels=
tifffile.imwrite(f"{d}/aniso.tif", a, imagej=True, resolution=(4, 4), metadata=meta)
tifffile.imwrite(f"{d}/aniso8.tif", (a >> 8).astype(numpy.uint8), imagej=True,
                 resolution=(4, 4), metadata=meta)
tifffile.imwrite(f"{d}/plain.tif", a, photometric="minisblack"))",
                                      "' ", dir_->path().string())),
              0);
  }
  static void TearDownTestSuite() { delete dir_; }

  static absl::Status Process(const std::string& input, const std::string& output,
                              const std::vector<std::string>& ops,
                              WriteOptions write = Write(Compression::kDefault)) {
    ProcessRequest request;
    request.input_path = dir_->File(input);
    request.output_path = dir_->File(output);
    request.ops = Ops(ops);
    request.write = std::move(write);
    return ProcessFile(request).status();
  }

  // Runs check_zarr.py on `store` with `expected` (JSON: see the script).
  static int Check(const std::string& store, const std::string& source,
                   const std::string& expected) {
    const std::string json = dir_->File(store + ".expected.json");
    std::ofstream(json) << expected;
    return RunCommand(absl::StrCat(STACKPROC_PYTHON, " ", SourceDir(), "/tests/core/check_zarr.py ",
                                   dir_->File(store), " ", dir_->File(source), " ", json));
  }

  static TempDir* dir_;
};
TempDir* ZarrOutputTest::dir_ = nullptr;

TEST_F(ZarrOutputTest, ADefaultStoreWithAPyramidReadsBackInZarrPython) {
  // Anisotropic voxels (2 x 0.25 x 0.25 um): y and x halve at each level, z stays (halving it
  // would make it coarser still: 4 um against 0.5 and 1 um).
  ASSERT_OK(Process("aniso.tif", "blur.ome.zarr", {"gaussian:ksize=5"},
                    Write(Compression::kDefault, {}, 2)));
  EXPECT_EQ(Check("blur.ome.zarr", "aniso.tif", R"({"op": "gaussian5", "dtype": "uint16",
      "unit": "micrometer", "scales": [[2.0, 0.25, 0.25], [2.0, 0.5, 0.5], [2.0, 1.0, 1.0]],
      "shapes": [[21, 150, 170], [21, 75, 85], [21, 38, 43]],
      "chunks": [[1, 150, 170], [1, 75, 85], [1, 38, 43]],
      "compressor": {"id": "blosc", "cname": "lz4", "shuffle": 1}})"),
            0);
}

TEST_F(ZarrOutputTest, ChunksOfSeveralSlicesAndAnIsotropicPyramidHalveZToo) {
  // No physical size: voxels taken as cubes, so z halves with y and x (odd sizes: the last
  // slice, row or column stands alone).
  const WriteOptions write = Write(Compression::kZstd, {{4, 64, 48}}, 3);
  ASSERT_OK(Process("plain.tif", "chunked.zarr", {"invert"}, write));
  EXPECT_EQ(Check("chunked.zarr", "plain.tif", R"({"op": "invert", "dtype": "uint16",
      "unit": null, "scales": [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [4.0, 4.0, 4.0], [8.0, 8.0, 8.0]],
      "shapes": [[21, 150, 170], [11, 75, 85], [6, 38, 43], [3, 19, 22]],
      "chunks": [[4, 64, 48], [4, 64, 48], [4, 38, 43], [3, 19, 22]],
      "compressor": {"id": "blosc", "cname": "zstd", "shuffle": 1}})"),
            0);
}

// A stack with no physical size (stackproc's own, no resolution tags) claims no unit, and its
// levels still scale by a resize: in the input's pixels (it once said micrometres at scale 1).
TEST_F(ZarrOutputTest, NoPhysicalSizeMeansNoUnitButResizeStillScales) {
  ASSERT_OK(WriteTiff(dir_->File("bare.tif"), MakeStack({21, 150, 170}, PixelType::kUint8, 2)));
  ASSERT_OK(Process("bare.tif", "bare.zarr", {"resize:scale=0.5"}, Write(Compression::kDeflate)));
  EXPECT_EQ(Check("bare.zarr", "bare.tif", R"({"op": "resize_half", "dtype": "uint8",
      "unit": null, "scales": [[1.0, 2.0, 2.0]], "shapes": [[21, 75, 85]],
      "chunks": [[1, 75, 85]], "compressor": {"id": "zlib"}})"),
            0);
  ASSERT_OK(Process("bare.tif", "bare-invert.zarr", {"invert"}, Write(Compression::kDeflate)));
  EXPECT_EQ(Check("bare-invert.zarr", "bare.tif", R"({"op": "invert", "dtype": "uint8",
      "unit": null, "scales": [[1.0, 1.0, 1.0]], "shapes": [[21, 150, 170]],
      "chunks": [[1, 150, 170]], "compressor": {"id": "zlib"}})"),
            0);
}

TEST_F(ZarrOutputTest, AResizedStackStatesItsNewPixelSize) {
  ASSERT_OK(Process("aniso8.tif", "half.zarr", {"resize:scale=0.5"}, Write(Compression::kDeflate)));
  EXPECT_EQ(Check("half.zarr", "aniso8.tif", R"({"op": "resize_half", "dtype": "uint8",
      "unit": "micrometer", "scales": [[2.0, 0.5, 0.5]], "shapes": [[21, 75, 85]],
      "chunks": [[1, 75, 85]], "compressor": {"id": "zlib"}})"),
            0);
  // float32, uncompressed, in chunks across slices.
  ASSERT_OK(Process("aniso.tif", "float.zarr", {"convert:to=float32"},
                    Write(Compression::kNone, {{3, 40, 40}})));
  EXPECT_EQ(Check("float.zarr", "aniso.tif", R"({"op": "to_float32", "dtype": "float32",
      "unit": "micrometer", "scales": [[2.0, 0.25, 0.25]], "shapes": [[21, 150, 170]],
      "chunks": [[3, 40, 40]], "compressor": null})"),
            0);
}

TEST_F(ZarrOutputTest, AStoreReadBackKeepsItsScaleAndPixels) {
  ASSERT_OK(Process("aniso.tif", "first.zarr", {}, Write(Compression::kDefault, {{5, 64, 64}})));
  ASSERT_OK(Process("first.zarr", "second.zarr", {}));
  const LocalFiles files;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SliceSource> second,
                       OpenInput(files, dir_->File("second.zarr")));
  const VoxelSize size = VoxelSizeOf(second->info().metadata);
  EXPECT_EQ(size.unit, "micrometer");
  EXPECT_DOUBLE_EQ(size.z.value_or(0), 2.0);
  EXPECT_DOUBLE_EQ(size.x.value_or(0), 0.25);
  EXPECT_EQ(Check("second.zarr", "aniso.tif", R"({"op": "none", "dtype": "uint16",
      "unit": "micrometer", "scales": [[2.0, 0.25, 0.25]], "shapes": [[21, 150, 170]],
      "chunks": [[1, 150, 170]], "compressor": {"id": "blosc"}})"),
            0);
}

TEST_F(ZarrOutputTest, BadOptionsAreRefusedBeforeAnythingIsRead) {
  EXPECT_THAT(Process("plain.tif", "lzw.zarr", {}, Write(Compression::kLzw)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lzw is not an OME-Zarr")));
  EXPECT_THAT(Process("plain.tif", "deep.zarr", {}, Write(Compression::kDefault, {}, 9)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("pyramid levels 9")));
  EXPECT_THAT(Process("plain.tif", "zero.zarr", {}, Write(Compression::kDefault, {{0, 64, 64}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least 1")));
  EXPECT_THAT(Process("plain.tif", "chunked.tif", {}, Write(Compression::kDefault, {{1, 64, 64}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("OME-Zarr outputs")));
  EXPECT_THAT(Process("plain.tif", "lz4.tif", {}, Write(Compression::kLz4)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lz4")));
  // 150x170 pixels halve to 1x1 in 8 levels: a ninth would be smaller than a pixel.
  EXPECT_THAT(Process("plain.tif", "tiny.zarr", {"resize:width=2,height=2"},
                      Write(Compression::kDefault, {}, 2)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("smaller than one pixel")));
  for (const char* name :
       {"lzw.zarr", "deep.zarr", "zero.zarr", "chunked.tif", "lz4.tif", "tiny.zarr"}) {
    EXPECT_FALSE(std::filesystem::exists(dir_->File(name))) << name;
  }
}

TEST_F(ZarrOutputTest, AStoreIsWrittenWholeOrNotAtAll) {
  // An existing folder is not written into, nor replaced without overwrite.
  std::filesystem::create_directory(dir_->File("taken.zarr"));
  WriteOptions keep = Write(Compression::kDefault);
  keep.overwrite = false;
  EXPECT_THAT(Process("plain.tif", "taken.zarr", {"invert"}, keep),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("taken.zarr")));
  EXPECT_TRUE(std::filesystem::is_empty(dir_->File("taken.zarr")));
  // With overwrite, a store is replaced whole (its pyramid level 1 goes with it); a folder that
  // holds no Zarr metadata is not replaced.
  ASSERT_OK(Process("plain.tif", "again.zarr", {}, Write(Compression::kDefault, {}, 1)));
  ASSERT_OK(Process("plain.tif", "again.zarr", {"invert"}));
  EXPECT_FALSE(std::filesystem::exists(dir_->File("again.zarr/1")));
  EXPECT_EQ(Check("again.zarr", "plain.tif", R"({"op": "invert", "dtype": "uint16",
      "unit": null, "scales": [[1.0, 1.0, 1.0]], "shapes": [[21, 150, 170]],
      "chunks": [[1, 150, 170]], "compressor": {"id": "blosc"}})"),
            0);
  EXPECT_THAT(Process("plain.tif", "taken.zarr", {"invert"}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no zarr.json, .zgroup")));
  // An input cut short once the store is being written: the run fails, and neither the store
  // nor its temporary folder stays.
  std::filesystem::copy(dir_->File("plain.tif"), dir_->File("cut.tif"));
  ProcessRequest request;
  request.input_path = dir_->File("cut.tif");
  request.output_path = dir_->File("cut.zarr");
  request.ops = Ops({"invert"});
  request.write.pyramid_levels = 1;
  request.on_stage = [&](absl::string_view) {
    std::filesystem::resize_file(dir_->File("cut.tif"), 400'000);
  };
  EXPECT_FALSE(ProcessFile(request).ok());
  for (const auto& entry : std::filesystem::directory_iterator(dir_->path())) {
    EXPECT_THAT(entry.path().filename().string(), ::testing::Not(HasSubstr("cut.zarr")));
  }
}

// The slices [begin, end) of `stack` as a stack of their own, with its metadata.
Stack Slices(const Stack& stack, int64_t begin, int64_t end) {
  Stack part =
      Stack::Allocate({end - begin, stack.shape().height, stack.shape().width}, stack.pixel_type())
          .value();
  std::memcpy(part.data(), stack.slice_data(begin), part.size_bytes());
  part.metadata() = stack.metadata();
  return part;
}

TEST_F(ZarrOutputTest, ZRangesWrittenApartMakeTheStoreOneRunMakes) {
  // The shards of a cluster job: the store made once, then three ranges written by sinks of
  // their own (as separate processes would), with no assembly: byte for byte the store that one
  // run writes. Chunks of 2 slices and 2 levels that halve z: ranges start on multiples of 8.
  const WriteOptions options = Write(Compression::kDefault, {{2, 64, 64}}, 2);
  std::filesystem::create_directories(dir_->File("one"));
  std::filesystem::create_directories(dir_->File("shards"));
  ASSERT_OK(Process("plain.tif", "one/out.zarr", {"invert"}, options));

  ASSERT_OK_AND_ASSIGN(Stack input, ReadTiff(dir_->File("plain.tif")));
  ASSERT_OK_AND_ASSIGN(Pipeline invert, Pipeline::Parse({"invert"}));
  ASSERT_OK_AND_ASSIGN(OutputTarget store, OutputTarget::ForPath(dir_->File("shards/out.zarr")));
  // The store records what made it as one run of the job does (a cluster job's creator does).
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<SliceSource> one,
                       OpenInput(LocalFiles(), dir_->File("one/out.zarr")));
  ASSERT_TRUE(one->info().metadata.provenance.has_value());
  StackInfo info = StackSource(input).info();
  info.metadata.provenance = one->info().metadata.provenance;
  ASSERT_OK(CreateZarrStore(store, info, options));
  const auto shard = [&](int64_t begin, int64_t end) {
    StackSource part(Slices(input, begin, end), /*writable=*/false);
    ZarrSink sink(store, options, ZarrRegion{input.depth(), begin});
    return core::Run(part, invert, sink);
  };
  ASSERT_OK(shard(16, 21));  // in any order
  ASSERT_OK(shard(0, 8));
  ASSERT_OK(shard(8, 16));
  EXPECT_EQ(RunCommand(absl::StrCat("diff -r ", dir_->File("one/out.zarr"), " ",
                                    dir_->File("shards/out.zarr"))),
            0);

  // A range that splits a z-chunk or a pair, or a store made for other chunks, is refused
  // before anything is written.
  EXPECT_THAT(shard(0, 5), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("z-chunks of level 0 (2 slices each)")));
  // Slices 2-7 are whole z-chunks of level 0, but level 1's 1-3 split its z-chunk 0-1.
  EXPECT_THAT(shard(2, 8), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("z-chunks of level 1 (2 slices each)")));
  // Single-slice chunks: a range must still not split a pair that level 1 averages.
  ASSERT_OK_AND_ASSIGN(OutputTarget flat, OutputTarget::ForPath(dir_->File("shards/flat.zarr")));
  const WriteOptions pyramid = Write(Compression::kDefault, {}, 1);
  ASSERT_OK(CreateZarrStore(flat, info, pyramid));
  StackSource odd(Slices(input, 1, 8), /*writable=*/false);
  ZarrSink split(flat, pyramid, ZarrRegion{input.depth(), 1});
  EXPECT_THAT(core::Run(odd, invert, split),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("splits a pair")));
  StackSource part(Slices(input, 0, 8), /*writable=*/false);
  ZarrSink other(store, Write(Compression::kDefault, {{4, 64, 64}}, 2), ZarrRegion{21, 0});
  EXPECT_THAT(core::Run(part, invert, other),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("0/.zarray")));
}

TEST_F(ZarrOutputTest, ZRangesOfWholeShardsMakeTheV3StoreOneRunMakes) {
  // Zarr v3: each range writes whole shards (4 slices of chunks of 2, 2 levels that halve z:
  // level 2's shards span 16 slices of level 0), so no two writers touch one shard.
  WriteOptions options = Write(Compression::kZstd, {{2, 64, 64}}, 2, 3);
  options.zarr_shards = {{4, 128, 128}};
  std::filesystem::create_directories(dir_->File("one"));
  std::filesystem::create_directories(dir_->File("shards"));
  ASSERT_OK(Process("plain.tif", "one/v3.zarr", {"invert"}, options));
  ASSERT_OK_AND_ASSIGN(Stack input, ReadTiff(dir_->File("plain.tif")));
  ASSERT_OK_AND_ASSIGN(Pipeline invert, Pipeline::Parse({"invert"}));
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<SliceSource> one,
                       OpenInput(LocalFiles(), dir_->File("one/v3.zarr")));
  StackInfo info = StackSource(input).info();
  info.metadata.provenance = one->info().metadata.provenance;
  ASSERT_OK_AND_ASSIGN(OutputTarget store, OutputTarget::ForPath(dir_->File("shards/v3.zarr")));
  ASSERT_OK(CreateZarrStore(store, info, options));
  const auto shard = [&](int64_t begin, int64_t end) {
    StackSource part(Slices(input, begin, end), /*writable=*/false);
    ZarrSink sink(store, options, ZarrRegion{input.depth(), begin});
    return core::Run(part, invert, sink);
  };
  // Level 0's shards are 4 slices: 8-16 splits none of them but splits level 2's first.
  EXPECT_THAT(shard(8, 16), StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("z-chunks of level 2 (4 slices each)")));
  ASSERT_OK(shard(16, 21));
  ASSERT_OK(shard(0, 16));
  EXPECT_EQ(RunCommand(absl::StrCat("diff -r ", dir_->File("one/v3.zarr"), " ",
                                    dir_->File("shards/v3.zarr"))),
            0);
  // A store made for other shards is refused, naming its zarr.json.
  WriteOptions other = options;
  other.zarr_shards = {{8, 128, 128}};
  StackSource part(Slices(input, 0, 16), /*writable=*/false);
  ZarrSink sink(store, other, ZarrRegion{21, 0});
  EXPECT_THAT(core::Run(part, invert, sink),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("0/zarr.json")));
}

TEST(ZarrPlanTest, TheZChunksHeldOnBothSidesAreCountedInThePlan) {
  TempDir dir;
  ASSERT_OK(WriteTiff(dir.File("in.tif"),
                      ::stackproc::testing::MakeStack({40, 64, 64}, PixelType::kUint16)));
  ProcessRequest write;
  write.input_path = dir.File("in.tif");
  write.output_path = dir.File("in.zarr");
  write.write.chunks = {{16, 64, 64}};
  write.write.zarr_format = 2;
  ASSERT_OK(ProcessFile(write));

  ProcessRequest request;
  request.input_path = dir.File("in.zarr");
  request.output_path = dir.File("out.zarr");
  request.ops = Ops({"invert"});
  request.write.chunks = {{8, 64, 64}};
  request.write.zarr_format = 2;
  constexpr uint64_t kSlice = 64 * 64 * 2;
  request.window_bytes = 6 * kSlice + 100;
  ASSERT_OK_AND_ASSIGN(ProcessPlan plan, PlanProcess(request, 4));
  EXPECT_EQ(plan.mode, ProcessMode::kStreaming);
  // One step, writing beside its input: 3 slices in flight, two buffers each (no intermediate);
  // the source's z-chunks of 16 that 3 slices in flight can fall in (2); the sink's z-chunk of
  // 8, gathered.
  EXPECT_EQ(plan.memory_bytes, 3 * 2 * kSlice + 2 * 16 * kSlice + 8 * kSlice);

  // Zarr v3: the sink gathers a shard (16 slices by default) and holds a layer of its encoded
  // chunks (8 slices); the source's chunks are 8 slices, read by the shard's index.
  request.write.zarr_format = 3;
  request.input_path = dir.File("v3.zarr");
  write.output_path = dir.File("v3.zarr");
  write.write.chunks = {{8, 64, 64}};
  write.write.zarr_format = 3;
  ASSERT_OK(ProcessFile(write));
  ASSERT_OK_AND_ASSIGN(plan, PlanProcess(request, 4));
  EXPECT_EQ(plan.memory_bytes, 3 * 2 * kSlice + 2 * 8 * kSlice + (16 + 8) * kSlice);
}

TEST(ZarrSweepTest, WhatAKilledWriteLeftIsRemovedFoldersAndAll) {
  // A store's temporary folder holds folders of folders (level/z/y/chunk): the restart sweep
  // removes all of it, and only the job's.
  TempDir dir;
  const std::string left = dir.File(TempNameFor("out.zarr", "job7"));
  std::filesystem::create_directories(left + "/0/3/1");
  std::ofstream(left + "/.zattrs") << "{}";
  std::ofstream(left + "/0/3/1/0") << "chunk";
  std::ofstream(left + "/0/3/1/.1.part") << "half a chunk";
  const std::string other = dir.File(TempNameFor("out.zarr", "job8"));
  std::filesystem::create_directories(other + "/0");
  ASSERT_OK_AND_ASSIGN(OutputTarget target, OutputTarget::ForPath(dir.File("out.zarr")));
  EXPECT_EQ(RemoveTempFiles(target, "job7"), 1);
  EXPECT_FALSE(std::filesystem::exists(left));
  EXPECT_TRUE(std::filesystem::exists(other + "/0"));
}

}  // namespace
}  // namespace stackproc::core
