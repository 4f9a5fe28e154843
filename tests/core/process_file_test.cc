// Streaming file jobs (ProcessFile in ProcessMode::kStreaming: TIFF pages to a TIFF file through
// the engine's window) against the in-memory path (the whole stack read first, then processed
// and written) and against Execute on the stack read back independently: the same file, byte
// for byte, whatever the window.
#include "core/process/process_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <tbb/task_arena.h>
#include <tiffio.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/exec/engine.h"
#include "core/io/stack_io.h"
#include "core/io/tiff_io.h"
#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc::core {
namespace {

namespace fs = std::filesystem;
using ::stackproc::testing::MakeStack;
using ::stackproc::testing::Ops;
using ::stackproc::testing::StacksEqual;
using ::stackproc::testing::StatusIs;
using ::stackproc::testing::TempDir;
using ::testing::HasSubstr;

std::string Contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Files in `dir` other than `keep`: a failed run must leave no temporary file behind.
std::vector<std::string> OtherFiles(const TempDir& dir, const std::vector<std::string>& keep) {
  std::vector<std::string> others;
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    const std::string name = entry.path().filename().string();
    if (std::find(keep.begin(), keep.end(), name) == keep.end()) others.push_back(name);
  }
  return others;
}

struct Case {
  PixelType type;
  std::vector<std::string> ops;
  Compression compression;
};

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  return absl::StrCat(PixelTypeName(info.param.type), "_", CompressionName(info.param.compression),
                      "_", info.param.ops.size(), "ops_", info.index);
}

class StreamingEqualsInMemory : public ::testing::TestWithParam<Case> {};

TEST_P(StreamingEqualsInMemory, ByteForByte) {
  const Case& c = GetParam();
  TempDir dir;
  const std::string input = dir.File("in.tif");
  // Deflate input: pages are decoded by the workers in parallel, each with its own handle.
  WriteOptions in_options;
  in_options.compression = Compression::kDeflate;
  ASSERT_OK(WriteTiff(input, MakeStack({13, 70, 90}, c.type, 7), in_options));

  tbb::task_arena arena(2);
  ProcessRequest request;
  request.input_path = input;
  request.ops = Ops(c.ops);
  request.write.compression = c.compression;
  request.arena = &arena;
  request.started = absl::FromUnixSeconds(1765000000);  // one job in two modes: one record

  request.output_path = dir.File("memory.tif");
  request.mode = ProcessMode::kInMemory;
  ASSERT_OK_AND_ASSIGN(ProcessSummary memory, ProcessFile(request));
  EXPECT_EQ(memory.mode, ProcessMode::kInMemory);

  // A window of one slice (nothing overlaps), of two (slots reused over and over), and a large
  // one (kSlicesPerThread per thread).
  for (uint64_t window : {uint64_t{1}, uint64_t{2 * 70 * 90 * 4 * 3}, uint64_t{64} << 20}) {
    request.output_path = dir.File("streamed.tif");
    request.mode = ProcessMode::kStreaming;
    request.window_bytes = window;
    int64_t last_done = 0, reports = 0;
    request.on_progress = [&](const Progress& p) {
      EXPECT_GE(p.slices_done, last_done);
      EXPECT_EQ(p.slices_total, 13);
      last_done = p.slices_done;
      ++reports;
    };
    ASSERT_OK_AND_ASSIGN(ProcessSummary streamed, ProcessFile(request));
    request.on_progress = nullptr;
    EXPECT_EQ(streamed.mode, ProcessMode::kStreaming);
    EXPECT_EQ(last_done, 13);
    EXPECT_GE(reports, 1);
    EXPECT_EQ(streamed.output_shape, memory.output_shape);
    EXPECT_TRUE(Contents(dir.File("streamed.tif")) == Contents(dir.File("memory.tif")))
        << "window " << window << ": the streamed file differs from the in-memory one";
  }

  // And both hold what Execute makes of the stack (Execute is checked against OpenCV).
  ASSERT_OK_AND_ASSIGN(Stack in, ReadTiff(input));
  ASSERT_OK_AND_ASSIGN(Pipeline pipeline, Pipeline::Parse(c.ops));
  ASSERT_OK_AND_ASSIGN(Stack expected, Execute(std::move(in), pipeline));
  ASSERT_OK_AND_ASSIGN(Stack streamed, ReadTiff(dir.File("streamed.tif")));
  EXPECT_TRUE(StacksEqual(streamed, expected));
  EXPECT_EQ(streamed.metadata().description, expected.metadata().description);
  EXPECT_THAT(OtherFiles(dir, {"in.tif", "memory.tif", "streamed.tif"}), ::testing::IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(
    Pipelines, StreamingEqualsInMemory,
    ::testing::Values(
        Case{PixelType::kUint8, {"gaussian:ksize=5"}, Compression::kNone},
        Case{PixelType::kUint16, {"gaussian:ksize=5"}, Compression::kNone},
        Case{PixelType::kUint16,
             {"gaussian:ksize=5", "clahe", "resize:scale=0.5"},
             Compression::kDeflate},
        Case{PixelType::kUint8,
             {"crop:x=3,y=5,width=40,height=30", "median:ksize=3"},
             Compression::kZstd},
        Case{PixelType::kUint16, {"convert:to=float32", "gaussian:sigma=1.5"}, Compression::kLzw},
        Case{PixelType::kFloat32, {"resize:width=45,height=35"}, Compression::kDeflate}),
    CaseName);

// A whole-stack step from a file: the engine keeps the slices before it in a stack (one pass),
// takes the statistics, and writes from there (a second pass): the progress counts both.
TEST(WholeStackFileTest, NormalizeOverTheStackFromAFileEqualsExecute) {
  TempDir dir;
  const std::string input = dir.File("in.tif");
  ASSERT_OK(WriteTiff(input, MakeStack({11, 50, 70}, PixelType::kUint16, 3)));
  const std::vector<std::string> ops = {"gaussian:ksize=3", "normalize:scope=stack",
                                        "convert:to=uint8"};
  ProcessRequest request;
  request.input_path = input;
  request.output_path = dir.File("out.tif");
  request.ops = Ops(ops);
  Progress last;
  request.on_progress = [&](const Progress& p) { last = p; };
  ASSERT_OK_AND_ASSIGN(ProcessSummary summary, ProcessFile(request));
  EXPECT_EQ(summary.mode, ProcessMode::kInMemory);
  EXPECT_EQ(last.slices_total, 2 * 11);
  EXPECT_EQ(last.slices_done, 2 * 11);

  ASSERT_OK_AND_ASSIGN(Stack in, ReadTiff(input));
  ASSERT_OK_AND_ASSIGN(Pipeline pipeline, Pipeline::Parse(ops));
  ASSERT_OK_AND_ASSIGN(Stack expected, Execute(std::move(in), pipeline));
  ASSERT_OK_AND_ASSIGN(Stack out, ReadTiff(dir.File("out.tif")));
  EXPECT_EQ(out.pixel_type(), PixelType::kUint8);
  EXPECT_TRUE(StacksEqual(out, expected));
  EXPECT_THAT(OtherFiles(dir, {"in.tif", "out.tif"}), ::testing::IsEmpty());
}

TEST(ProcessPlanTest, PicksStreamingWhenTheJobAllowsIt) {
  TempDir dir;
  const std::string input = dir.File("in.tif");
  ASSERT_OK(WriteTiff(input, MakeStack({200, 64, 64}, PixelType::kUint16)));
  ProcessRequest request;
  request.input_path = input;
  request.output_path = dir.File("out.tif");
  request.ops = Ops({"gaussian:ksize=5", "resize:scale=0.5"});
  // A slice in flight holds its input (8192 bytes) and output (2048); each thread an
  // intermediate slice for each step but the last (gaussian's 8192: resize writes the output).
  request.window_bytes = 3 * (8192 + 2048) + 100;
  ASSERT_OK_AND_ASSIGN(ProcessPlan plan, PlanProcess(request, 4));
  EXPECT_EQ(plan.mode, ProcessMode::kStreaming);
  EXPECT_EQ(plan.memory_bytes, 3u * (8192 + 2048) + 4u * 8192);
  // Compressed output: its strips too (2048), so 2 slices fit.
  request.write.compression = Compression::kZstd;
  ASSERT_OK_AND_ASSIGN(plan, PlanProcess(request, 4));
  EXPECT_EQ(plan.memory_bytes, 2u * (8192 + 2048 + 2048) + 4u * 8192);
  // A large window: no more than kSlicesPerThread per thread.
  request.write.compression = Compression::kNone;
  request.window_bytes = uint64_t{1} << 30;
  ASSERT_OK_AND_ASSIGN(plan, PlanProcess(request, 2));
  EXPECT_EQ(plan.memory_bytes, 2u * kSlicesPerThread * (8192 + 2048) + 2u * 8192);
  EXPECT_LT(plan.memory_bytes, 200u * 8192 / 10);

  // What the stack is needed for whole: in memory, with the stack's memory.
  request.ops = Ops({"normalize:scope=stack"});
  ASSERT_OK_AND_ASSIGN(plan, PlanProcess(request, 4));
  EXPECT_EQ(plan.mode, ProcessMode::kInMemory);
  EXPECT_EQ(plan.memory_bytes, 200u * 8192);
  request.mode = ProcessMode::kStreaming;
  EXPECT_THAT(PlanProcess(request, 4),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs the whole stack")));

  request.ops = Ops({"gaussian:ksize=5"});
  request.output_path.clear();  // a result kept in memory
  EXPECT_THAT(PlanProcess(request, 4), StatusIs(absl::StatusCode::kInvalidArgument,
                                                HasSubstr("streaming needs an output file")));
  request.mode = ProcessMode::kAuto;
  ASSERT_OK_AND_ASSIGN(plan, PlanProcess(request, 4));
  EXPECT_EQ(plan.mode, ProcessMode::kInMemory);
}

// Overwrites page `page`'s first strip with noise.
void CorruptStrip(const std::string& path, int page) {
  TIFF* tif = TIFFOpen(path.c_str(), "r");
  ASSERT_NE(tif, nullptr);
  ASSERT_TRUE(TIFFSetDirectory(tif, static_cast<tdir_t>(page)));
  const uint64_t offset = TIFFGetStrileOffset(tif, 0);
  const uint64_t bytes = TIFFGetStrileByteCount(tif, 0);
  TIFFClose(tif);
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(offset));
  std::vector<char> noise(bytes);
  for (size_t i = 0; i < bytes; ++i) noise[i] = static_cast<char>(i * 131 + 17);
  f.write(noise.data(), static_cast<std::streamsize>(bytes));
}

TEST(PagePipelineFailureTest, ACorruptPageFailsTheJobAndKeepsTheOldOutput) {
  TempDir dir;
  const std::string input = dir.File("in.tif");
  WriteOptions in_options;
  in_options.compression = Compression::kDeflate;
  ASSERT_OK(WriteTiff(input, MakeStack({30, 64, 64}, PixelType::kUint16), in_options));
  CorruptStrip(input, 17);
  std::ofstream(dir.File("out.tif")) << "an earlier result";

  tbb::task_arena arena(2);
  ProcessRequest request;
  request.input_path = input;
  request.output_path = dir.File("out.tif");
  request.ops = Ops({"gaussian:ksize=3"});
  request.arena = &arena;
  request.mode = ProcessMode::kStreaming;
  request.window_bytes = 4 * 64 * 64 * 2 * 2;
  ::testing::internal::CaptureStderr();
  EXPECT_THAT(ProcessFile(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("in.tif: page 17: strip 0")));
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "") << "libtiff wrote to stderr";
  EXPECT_EQ(Contents(dir.File("out.tif")), "an earlier result");
  EXPECT_THAT(OtherFiles(dir, {"in.tif", "out.tif"}), ::testing::IsEmpty());
}

TEST(PagePipelineFailureTest, CancelStopsTheJobAndLeavesNoFile) {
  TempDir dir;
  const std::string input = dir.File("in.tif");
  ASSERT_OK(WriteTiff(input, MakeStack({60, 64, 64}, PixelType::kUint8)));
  tbb::task_arena arena(2);
  CancelToken cancel;
  ProcessRequest request;
  request.input_path = input;
  request.output_path = dir.File("out.tif");
  request.ops = Ops({"gaussian:ksize=5"});
  request.arena = &arena;
  request.cancel = &cancel;
  request.mode = ProcessMode::kStreaming;
  request.window_bytes = 4 * 64 * 64 * 2;
  // The first report comes with the first slice written; at most a window more are started.
  request.on_progress = [&](const Progress& p) {
    if (p.slices_done < p.slices_total) cancel.Cancel();
  };
  EXPECT_THAT(ProcessFile(request), StatusIs(absl::StatusCode::kCancelled, ::testing::_));
  EXPECT_FALSE(fs::exists(dir.File("out.tif")));
  EXPECT_THAT(OtherFiles(dir, {"in.tif"}), ::testing::IsEmpty());
}

}  // namespace
}  // namespace stackproc::core
