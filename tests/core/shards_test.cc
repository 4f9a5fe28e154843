// A job cut in z-ranges: the ranges (worked out by hand), each range run on its own, and the TIFF
// shards assembled by copying their strips: byte for byte the file one run writes, read back by
// tifffile as one stack of every page. A whole-stack step's statistics gathered range by range
// and summed: the stack's histogram counted by hand, and again the whole run's bytes.
#include "core/process/shards.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/io/formats.h"
#include "core/io/tiff_io.h"
#include "core/pipeline/pipeline.h"
#include "core/process/process_file.h"
#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc::core {
namespace {

using ::stackproc::testing::IsOkAndHolds;
using ::stackproc::testing::MakeStack;
using ::stackproc::testing::Ops;
using ::stackproc::testing::RunCommand;
using ::stackproc::testing::StatusIs;
using ::stackproc::testing::TempDir;
using ::testing::HasSubstr;

TEST(ShardRangeTest, RangesAreConsecutiveAndAsEqualAsTheAlignmentAllows) {
  // 37 slices in 5: 7 each and 2 left over, given to the first two.
  const std::vector<ZRange> five = {{0, 8}, {8, 16}, {16, 23}, {23, 30}, {30, 37}};
  for (int64_t i = 0; i < 5; ++i) EXPECT_THAT(ShardRange(37, 5, i), IsOkAndHolds(five[i]));
  // In whole pieces of 4 (10 pieces, the last of 1 slice) in 4: 3, 3, 2 and 2 pieces.
  const std::vector<ZRange> aligned = {{0, 12}, {12, 24}, {24, 32}, {32, 37}};
  for (int64_t i = 0; i < 4; ++i) EXPECT_THAT(ShardRange(37, 4, i, 4), IsOkAndHolds(aligned[i]));
  EXPECT_THAT(ShardRange(37, 5, 5), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(ShardRange(37, 11, 0, 4),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("10 pieces")));
  EXPECT_THAT(ParseZRange("3:9"), IsOkAndHolds(ZRange{3, 9}));
  for (const char* bad : {"9:3", "3", "a:b", "-1:4", "3:3"}) {
    EXPECT_THAT(ParseZRange(bad), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_))
        << bad;
  }
}

class AssembleTest : public ::testing::TestWithParam<std::tuple<PixelType, Compression>> {};

TEST_P(AssembleTest, ShardsAssembleIntoTheFileOneRunWrites) {
  const auto [type, compression] = GetParam();
  TempDir dir;
  ASSERT_OK(WriteTiff(dir.File("in.tif"), MakeStack({37, 120, 90}, type, 5)));
  ProcessRequest request;
  // One job: the whole run and its shards record one start (the time is the run's).
  request.started = absl::FromUnixSeconds(1765000000);
  request.input_path = dir.File("in.tif");
  request.ops = Ops({"gaussian:ksize=5", "resize:scale=0.5"});
  request.write.compression = compression;
  request.output_path = dir.File("whole.tif");
  ASSERT_OK(ProcessFile(request));
  std::vector<std::string> shards;
  for (int64_t i = 0; i < 5; ++i) {
    ASSERT_OK_AND_ASSIGN(request.z_range, ShardRange(37, 5, i));
    request.output_path = dir.File(absl::StrCat("part", i, ".tif"));
    ASSERT_OK(ProcessFile(request));
    shards.push_back(request.output_path);
  }
  ASSERT_OK_AND_ASSIGN(OutputTarget target, OutputTarget::ForPath(dir.File("assembled.tif")));
  ASSERT_OK(AssembleTiff(LocalFiles(), shards, target, WriteOptions{}));
  EXPECT_EQ(RunCommand(absl::StrCat("cmp ", dir.File("whole.tif"), " ", dir.File("assembled.tif"))),
            0);
  // Given out of order, the shards go where their records put them.
  std::swap(shards[0], shards[3]);
  std::swap(shards[1], shards[4]);
  ASSERT_OK_AND_ASSIGN(OutputTarget mixed, OutputTarget::ForPath(dir.File("mixed.tif")));
  ASSERT_OK(AssembleTiff(LocalFiles(), shards, mixed, WriteOptions{}));
  EXPECT_EQ(RunCommand(absl::StrCat("cmp ", dir.File("whole.tif"), " ", dir.File("mixed.tif"))), 0);
  // tifffile sees one stack of 37 pages, and the description says so.
  EXPECT_EQ(RunCommand(absl::StrCat(STACKPROC_PYTHON, " -c '", R"(
import sys, tifffile
with tifffile.TiffFile(sys.argv[1]) as tif:
    ok = len(tif.pages) == 37 and tif.imagej_metadata["images"] == 37
    ok = ok and tifffile.imread(sys.argv[1]).shape == (37, 60, 45)
sys.exit(0 if ok else 1))",
                                    "' ", dir.File("assembled.tif"))),
            0);
}

INSTANTIATE_TEST_SUITE_P(
    TypesAndCodecs, AssembleTest,
    ::testing::Combine(::testing::Values(PixelType::kUint8, PixelType::kUint16),
                       ::testing::Values(Compression::kNone, Compression::kDeflate)));

// What a shard of slices A:B of a job "j" of 6 slices records.
WriteOptions ShardOf(int64_t begin, int64_t end, std::string job = "j") {
  WriteOptions options;
  options.shard_record = FormatShardRecord({{begin, end}, 6, std::move(job)});
  return options;
}

TEST(AssembleErrorTest, ShardsThatDoNotFitAreRefusedNamingThemAndNothingIsWritten) {
  TempDir dir;
  ASSERT_OK(
      WriteTiff(dir.File("a.tif"), MakeStack({3, 40, 30}, PixelType::kUint16), ShardOf(0, 3)));
  ASSERT_OK(
      WriteTiff(dir.File("wide.tif"), MakeStack({3, 40, 31}, PixelType::kUint16), ShardOf(3, 6)));
  WriteOptions deflate = ShardOf(3, 6);
  deflate.compression = Compression::kDeflate;
  ASSERT_OK(
      WriteTiff(dir.File("deflate.tif"), MakeStack({3, 40, 30}, PixelType::kUint16), deflate));
  // Laid out by another writer (tifffile's strips): not copied blindly.
  ASSERT_EQ(
      RunCommand(absl::StrCat(STACKPROC_PYTHON,
                              " -c 'import sys, numpy, tifffile; tifffile.imwrite(sys.argv[1], "
                              "numpy.zeros((3, 40, 30), numpy.uint16), compression=\"zlib\", "
                              "rowsperstrip=8, photometric=\"minisblack\")' ",
                              dir.File("other.tif"))),
      0);
  ASSERT_OK_AND_ASSIGN(OutputTarget target, OutputTarget::ForPath(dir.File("out.tif")));
  const auto assemble = [&](std::vector<std::string> names) {
    for (std::string& name : names) name = dir.File(name);
    return AssembleTiff(LocalFiles(), names, target, WriteOptions{});
  };
  EXPECT_THAT(assemble({"a.tif", "wide.tif"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("wide.tif")));
  EXPECT_THAT(assemble({"a.tif", "deflate.tif"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("compression 8")));
  EXPECT_THAT(assemble({"deflate.tif", "other.tif"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("as stackproc writes them")));
  EXPECT_THAT(assemble({"a.tif", "missing.tif"}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.tif")));
  EXPECT_THAT(assemble({}), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_FALSE(std::filesystem::exists(dir.File("out.tif")));
}

// Shards prove their place: each records its range, the job's depth and the job; a gap, an
// overlap, a repeat, a foreign shard or a file with no record is refused naming it (assemble
// once took 3 of 4 shards out of order and wrote a wrong stack).
TEST(AssembleErrorTest, ShardsThatDoNotCoverTheJobOnceAreRefused) {
  TempDir dir;
  const Stack three = MakeStack({3, 16, 16}, PixelType::kUint8),
              two = MakeStack({2, 16, 16}, PixelType::kUint8);
  ASSERT_OK(WriteTiff(dir.File("s0.tif"), three, ShardOf(0, 3)));
  ASSERT_OK(WriteTiff(dir.File("s1.tif"), three, ShardOf(3, 6)));
  ASSERT_OK(WriteTiff(dir.File("s2.tif"), two, ShardOf(2, 4)));
  ASSERT_OK(WriteTiff(dir.File("s0again.tif"), three, ShardOf(0, 3)));
  ASSERT_OK(WriteTiff(dir.File("foreign.tif"), three, ShardOf(3, 6, "k")));
  ASSERT_OK(WriteTiff(dir.File("whole.tif"), three));
  ASSERT_OK_AND_ASSIGN(OutputTarget target, OutputTarget::ForPath(dir.File("out.tif")));
  const auto assemble = [&](std::vector<std::string> names) {
    for (std::string& name : names) name = dir.File(name);
    return AssembleTiff(LocalFiles(), names, target, WriteOptions{});
  };
  const auto invalid = [](const std::string& says) {
    return StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(says));
  };
  EXPECT_THAT(assemble({"s1.tif"}), invalid("slices 0:3 are in no shard (missing before"));
  EXPECT_THAT(assemble({"s0.tif"}), invalid("slices 3:6 are in no shard (missing after"));
  EXPECT_THAT(assemble({"s0.tif", "s0again.tif", "s1.tif"}), invalid("repeats"));
  EXPECT_THAT(assemble({"s0.tif", "s2.tif", "s1.tif"}), invalid("s2.tif (slices 2:4) overlaps"));
  EXPECT_THAT(assemble({"s0.tif", "foreign.tif"}), invalid("foreign.tif: a shard of another job"));
  EXPECT_THAT(assemble({"s0.tif", "whole.tif"}), invalid("whole.tif: no shard record"));
  EXPECT_FALSE(std::filesystem::exists(dir.File("out.tif")));
  ASSERT_OK(assemble({"s1.tif", "s0.tif"}));
}

TEST(ZRangeTest, ARangeOfAnySourceRunsAloneButNotAWholeStackStep) {
  TempDir dir;
  const Stack input = MakeStack({12, 32, 32}, PixelType::kUint8, 3);
  ASSERT_OK(WriteTiff(dir.File("in.tif"), input));
  ProcessRequest request;
  request.input_path = dir.File("in.tif");
  request.ops = Ops({"invert"});
  request.z_range = ZRange{4, 9};
  ASSERT_OK_AND_ASSIGN(ProcessSummary summary, ProcessFile(request));
  ASSERT_TRUE(summary.result.has_value());
  ASSERT_EQ(summary.result->depth(), 5);
  for (int64_t z = 0; z < 5; ++z) {
    const uint8_t* in = input.slice_data(4 + z);
    const uint8_t* out = summary.result->slice_data(z);
    for (size_t i = 0; i < input.slice_bytes(); ++i) ASSERT_EQ(out[i], 255 - in[i]);
  }
  request.z_range = ZRange{4, 13};
  EXPECT_THAT(ProcessFile(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not in a stack of 12")));
  request.z_range = ZRange{0, 6};
  request.ops = Ops({"normalize:scope=stack"});
  EXPECT_THAT(ProcessFile(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("whole stack")));
}

class StatsTest : public ::testing::TestWithParam<PixelType> {};

// A whole-stack step in ranges: each range's statistics gathered apart and saved, the files
// summed, each range run with the sum, the pieces assembled: the file one run writes.
TEST_P(StatsTest, RangesGatheredApartMakeTheWholeRunsBytes) {
  const PixelType type = GetParam();
  TempDir dir;
  const Stack input = MakeStack({23, 70, 50}, type, 9);
  ASSERT_OK(WriteTiff(dir.File("in.tif"), input));
  ProcessRequest request;
  request.started = absl::FromUnixSeconds(1765000000);  // one job's runs: one start
  request.input_path = dir.File("in.tif");
  request.ops =
      Ops({"gaussian:ksize=3", "normalize:scope=stack,low=3,high=97", "resize:scale=0.5"});
  request.output_path = dir.File("whole.tif");
  ASSERT_OK(ProcessFile(request));

  std::vector<std::string> stats, shards;
  for (int64_t i = 0; i < 4; ++i) {
    ASSERT_OK_AND_ASSIGN(std::shared_ptr<SliceSource> source,
                         OpenInput(LocalFiles(), request.input_path));
    ASSERT_OK_AND_ASSIGN(std::shared_ptr<SliceSource> range,
                         ZRangeSource::Create(source, *ShardRange(23, 4, i)));
    ASSERT_OK_AND_ASSIGN(Pipeline pipeline, Pipeline::Create(request.ops));
    ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> counts, GatherStats(*range, pipeline));
    stats.push_back(dir.File(absl::StrCat("part", i, ".stats")));
    ASSERT_OK(WriteStatsFile(stats.back(), counts));
  }
  ASSERT_OK_AND_ASSIGN(request.stack_stats, SumStatsFiles(stats));
  for (int64_t i = 0; i < 4; ++i) {
    ASSERT_OK_AND_ASSIGN(request.z_range, ShardRange(23, 4, i));
    request.output_path = dir.File(absl::StrCat("part", i, ".tif"));
    ASSERT_OK_AND_ASSIGN(ProcessSummary summary, ProcessFile(request));
    EXPECT_EQ(summary.mode, ProcessMode::kStreaming);  // no stack held
    shards.push_back(request.output_path);
  }
  ASSERT_OK_AND_ASSIGN(OutputTarget target, OutputTarget::ForPath(dir.File("assembled.tif")));
  ASSERT_OK(AssembleTiff(LocalFiles(), shards, target, WriteOptions{}));
  EXPECT_EQ(RunCommand(absl::StrCat("cmp ", dir.File("whole.tif"), " ", dir.File("assembled.tif"))),
            0);

  // With the step first, the sum is the stack's histogram, counted here pixel by pixel.
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<SliceSource> source,
                       OpenInput(LocalFiles(), request.input_path));
  ASSERT_OK_AND_ASSIGN(Pipeline normalize, Pipeline::Create(Ops({"normalize:scope=stack"})));
  ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> counts, GatherStats(*source, normalize));
  std::vector<uint64_t> expected(type == PixelType::kUint8 ? 256 : 65536);
  for (int64_t z = 0; z < input.depth(); ++z) {
    const cv::Mat slice = input.Slice(z);
    for (int y = 0; y < slice.rows; ++y) {
      for (int x = 0; x < slice.cols; ++x) {
        ++expected[type == PixelType::kUint8 ? slice.at<uint8_t>(y, x) : slice.at<uint16_t>(y, x)];
      }
    }
  }
  EXPECT_EQ(counts, expected);
}

INSTANTIATE_TEST_SUITE_P(IntegerTypes, StatsTest,
                         ::testing::Values(PixelType::kUint8, PixelType::kUint16));

TEST(StatsErrorTest, WhatCannotBeGatheredApartIsRefusedSayingWhy) {
  TempDir dir;
  ASSERT_OK(WriteTiff(dir.File("in.tif"), MakeStack({6, 16, 16}, PixelType::kUint16, 2)));
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<SliceSource> source,
                       OpenInput(LocalFiles(), dir.File("in.tif")));
  const struct {
    std::vector<std::string> ops;
    std::string why;
  } cases[] = {
      {{"gaussian:ksize=3"}, "no whole-stack step"},
      {{"normalize:scope=stack", "normalize:scope=stack"}, "several whole-stack steps"},
      {{"convert:to=float32", "normalize:scope=stack"}, "float32 pixels"},
  };
  for (const auto& c : cases) {
    ASSERT_OK_AND_ASSIGN(Pipeline pipeline, Pipeline::Create(Ops(c.ops)));
    EXPECT_THAT(GatherStats(*source, pipeline),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.why)));
  }
  // Files that are not statistics, or of another size, are named.
  ASSERT_OK(WriteStatsFile(dir.File("a.stats"), std::vector<uint64_t>(256, 1)));
  ASSERT_OK(WriteStatsFile(dir.File("b.stats"), std::vector<uint64_t>(65536, 1)));
  EXPECT_THAT(SumStatsFiles({dir.File("a.stats"), dir.File("b.stats")}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("b.stats: 65536 counts")));
  EXPECT_THAT(
      SumStatsFiles({dir.File("in.tif")}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a stackproc statistics")));
  EXPECT_THAT(SumStatsFiles({dir.File("a.stats"), dir.File("a.stats")}),
              IsOkAndHolds(std::vector<uint64_t>(256, 2)));
  // Statistics of the wrong size for the step: refused before anything is written.
  ProcessRequest request;
  request.input_path = dir.File("in.tif");
  request.ops = Ops({"normalize:scope=stack"});
  request.output_path = dir.File("out.tif");
  request.stack_stats = std::vector<uint64_t>(3, 1);
  EXPECT_THAT(ProcessFile(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("3 bins")));
  EXPECT_FALSE(std::filesystem::exists(dir.File("out.tif")));
}

}  // namespace
}  // namespace stackproc::core
