// SliceStream against Execute (the whole-stack executor, itself checked against OpenCV), and
// the page-at-a-time TIFF reader and writer against ReadTiff / WriteTiff.
#include "core/slice_stream.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <tbb/task_arena.h>

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "core/stack_io.h"
#include "core/tiff_io.h"
#include "core/tiff_reader.h"
#include "core/tiff_writer.h"
#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc::core {
namespace {

using ::stackproc::testing::CopyStack;
using ::stackproc::testing::MakeStack;
using ::stackproc::testing::StacksEqual;
using ::stackproc::testing::StatusIs;
using ::stackproc::testing::TempDir;
using ::testing::HasSubstr;

Stack RunExecute(const Stack& input, const std::vector<std::string>& ops) {
  absl::StatusOr<Pipeline> pipeline = Pipeline::Parse(ops);
  EXPECT_TRUE(pipeline.ok()) << pipeline.status();
  absl::StatusOr<Stack> result = Execute(CopyStack(input), *pipeline);
  EXPECT_TRUE(result.ok()) << result.status();
  return *std::move(result);
}

// Drives a stream as a producer and a consumer on one thread would: feed slices while the
// window has room, drain results in order, wait for the workers otherwise.
class Driver {
 public:
  Driver(const Stack& input, const std::vector<std::string>& ops, uint64_t window_bytes)
      : input_(input), arena_(2) {
    absl::StatusOr<Pipeline> pipeline = Pipeline::Parse(ops);
    EXPECT_TRUE(pipeline.ok()) << pipeline.status();
    SliceStreamOptions options;
    options.arena = &arena_;
    options.window_bytes = window_bytes;
    options.on_change = [this] {
      std::lock_guard lock(mutex_);
      ++changes_;
      changed_.notify_all();
    };
    absl::StatusOr<std::unique_ptr<SliceStream>> stream = SliceStream::Create(
        *std::move(pipeline), input.shape(), input.pixel_type(), input.metadata(), options);
    EXPECT_TRUE(stream.ok()) << stream.status();
    stream_ = *std::move(stream);
  }

  SliceStream& stream() { return *stream_; }

  // Runs to the end; returns the result and the most slices held at once.
  absl::StatusOr<Stack> Run() {
    const int64_t depth = input_.depth();
    absl::StatusOr<Stack> out = Stack::Allocate(stream_->output_shape(), stream_->output_type());
    if (!out.ok()) return out.status();
    int64_t fed = 0, drained = 0;
    while (drained < depth) {
      uint64_t seen;
      {
        std::lock_guard lock(mutex_);
        seen = changes_;
      }
      bool progressed = false;
      while (fed < depth && stream_->CanAccept(fed)) {
        absl::StatusOr<uint8_t*> buffer = stream_->InputSlice(fed);
        if (!buffer.ok()) return buffer.status();
        std::memcpy(*buffer, input_.slice_data(fed), input_.slice_bytes());
        stream_->SliceComplete(fed++);
        max_held_ = std::max(max_held_, fed - drained);
        progressed = true;
      }
      while (const uint8_t* result = stream_->Result(drained)) {
        std::memcpy(out->slice_data(drained), result, out->slice_bytes());
        stream_->Release(drained++);
        progressed = true;
      }
      if (absl::Status s = stream_->status(); !s.ok()) return s;
      if (!progressed) {
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [&] { return changes_ != seen; });
      }
    }
    out->metadata() = stream_->output_metadata();
    return out;
  }

  int64_t max_held() const { return max_held_; }

 private:
  const Stack& input_;
  tbb::task_arena arena_;
  std::unique_ptr<SliceStream> stream_;
  std::mutex mutex_;
  std::condition_variable changed_;
  uint64_t changes_ = 0;
  int64_t max_held_ = 0;
};

struct Case {
  PixelType type;
  std::vector<std::string> ops;
};

class SliceStreamEqualsExecute : public ::testing::TestWithParam<Case> {};

TEST_P(SliceStreamEqualsExecute, BitForBitWithinTheWindow) {
  Stack input = MakeStack({23, 96, 130}, GetParam().type, 5);
  input.metadata().description = "ImageJ=1.11a\nimages=23\nslices=23\nspacing=2.5\nunit=micron\n";
  input.metadata().x_resolution = 4.0;
  input.metadata().y_resolution = 4.0;
  const Stack expected = RunExecute(input, GetParam().ops);
  // A window of a few slices: the stream must recycle its buffers many times over.
  Driver driver(input, GetParam().ops, 4 * input.slice_bytes() * 2);
  ASSERT_OK_AND_ASSIGN(Stack streamed, driver.Run());
  EXPECT_TRUE(StacksEqual(streamed, expected));
  EXPECT_EQ(streamed.metadata().description, expected.metadata().description);
  EXPECT_EQ(streamed.metadata().x_resolution, expected.metadata().x_resolution);
  EXPECT_LE(driver.max_held(), driver.stream().window_slices());
  EXPECT_LT(driver.stream().window_slices(), input.depth());
}

INSTANTIATE_TEST_SUITE_P(
    Pipelines, SliceStreamEqualsExecute,
    ::testing::Values(Case{PixelType::kUint8, {"gaussian:ksize=5", "clahe"}},
                      Case{PixelType::kUint16, {"gaussian:ksize=5"}},
                      Case{PixelType::kUint16, {"median:ksize=3", "resize:scale=0.5"}},
                      Case{PixelType::kUint8, {"convert:to=float32", "gamma:gamma=0.5"}},
                      Case{PixelType::kFloat32, {"crop:x=3,y=5,width=40,height=33", "invert"}}));

TEST(SliceStreamTest, WholeStackPipelineAssemblesTheStackFirst) {
  Stack input = MakeStack({9, 40, 50}, PixelType::kUint16, 2);
  const std::vector<std::string> ops = {"gaussian:ksize=3", "normalize:scope=stack"};
  const Stack expected = RunExecute(input, ops);
  Driver driver(input, ops, 1);  // the window cannot apply: the stack is held whole
  EXPECT_TRUE(driver.stream().whole_stack());
  EXPECT_EQ(driver.stream().window_slices(), input.depth());
  EXPECT_GE(driver.stream().memory_bytes(), input.size_bytes());
  ASSERT_OK_AND_ASSIGN(Stack streamed, driver.Run());
  EXPECT_TRUE(StacksEqual(streamed, expected));
}

TEST(SliceStreamTest, WindowBoundsMemoryAndAcceptance) {
  Stack input = MakeStack({10, 64, 64}, PixelType::kUint8);
  tbb::task_arena arena(1);
  SliceStreamOptions options;
  options.arena = &arena;
  options.window_bytes = 3 * input.slice_bytes();  // in place: 3 slices
  ASSERT_OK_AND_ASSIGN(Pipeline pipeline, Pipeline::Parse({"invert"}));
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<SliceStream> stream,
      SliceStream::Create(std::move(pipeline), input.shape(), input.pixel_type(), {}, options));
  EXPECT_EQ(stream->window_slices(), 3);
  for (int64_t z = 0; z < 3; ++z) {
    ASSERT_TRUE(stream->CanAccept(z));
    ASSERT_OK_AND_ASSIGN(uint8_t * buffer, stream->InputSlice(z));
    std::memcpy(buffer, input.slice_data(z), input.slice_bytes());
    stream->SliceComplete(z);
  }
  EXPECT_FALSE(stream->CanAccept(3));  // full until slice 0 is released
  ASSERT_OK_AND_ASSIGN(uint8_t * none, stream->InputSlice(3));
  EXPECT_EQ(none, nullptr);
  EXPECT_THAT(stream->InputSlice(5),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not the next slice")));
  while (stream->Result(0) == nullptr) std::this_thread::yield();
  EXPECT_EQ(stream->Result(0)[0], static_cast<uint8_t>(255 - input.slice_data(0)[0]));
  stream->Release(0);
  EXPECT_TRUE(stream->CanAccept(3));
}

TEST(SliceStreamTest, RejectsAPipelineThatCannotTakeTheSlices) {
  tbb::task_arena arena(1);
  SliceStreamOptions options;
  options.arena = &arena;
  ASSERT_OK_AND_ASSIGN(Pipeline pipeline, Pipeline::Parse({"crop:x=0,y=0,width=100,height=10"}));
  EXPECT_THAT(SliceStream::Create(std::move(pipeline), {4, 20, 20}, PixelType::kUint8, {}, options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("crop")));
}

TEST(TiffPagesTest, PageReaderAndWriterMatchTheWholeStackFunctions) {
  TempDir dir;
  Stack stack = MakeStack({7, 33, 45}, PixelType::kUint16, 9);
  stack.metadata().description = "ImageJ=1.11a\nimages=7\nslices=7\n";
  WriteOptions write;
  write.compression = Compression::kZstd;
  ASSERT_OK(WriteTiff(dir.File("whole.tif"), stack, write));

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TiffPageReader> reader,
                       TiffPageReader::Open(dir.File("whole.tif")));
  EXPECT_EQ(reader->info().shape, stack.shape());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TiffPageWriter> writer,
                       TiffPageWriter::Create(dir.File("pages.tif"), stack.shape(),
                                              stack.pixel_type(), reader->info().metadata, write));
  std::vector<uint8_t> page(reader->slice_bytes());
  for (int64_t z = 0; z < stack.depth(); ++z) {
    ASSERT_OK(reader->ReadPage(z, page.data()));
    EXPECT_EQ(std::memcmp(page.data(), stack.slice_data(z), page.size()), 0) << "page " << z;
    EXPECT_FALSE(std::filesystem::exists(dir.File("pages.tif")));  // not before Commit
    ASSERT_OK(writer->WritePage(page.data()));
  }
  EXPECT_THAT(reader->ReadPage(7, page.data()),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("no page 7")));
  ASSERT_OK(writer->Commit());
  ASSERT_OK_AND_ASSIGN(Stack back, ReadTiff(dir.File("pages.tif")));
  EXPECT_TRUE(StacksEqual(back, stack));
  EXPECT_EQ(back.metadata().description, stack.metadata().description);
}

TEST(TiffPagesTest, AnUncommittedWriterLeavesNoFile) {
  TempDir dir;
  Stack stack = MakeStack({3, 16, 16}, PixelType::kUint8);
  {
    ASSERT_OK_AND_ASSIGN(
        std::unique_ptr<TiffPageWriter> writer,
        TiffPageWriter::Create(dir.File("out.tif"), stack.shape(), stack.pixel_type(), {}));
    ASSERT_OK(writer->WritePage(stack.slice_data(0)));
    EXPECT_THAT(writer->Commit(),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("1 of 3 pages")));
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

}  // namespace
}  // namespace stackproc::core
