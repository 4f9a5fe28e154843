// The engine fed and drained from outside (FeedSource, DrainSink: what a network transport
// plugs in) against Execute (itself checked against OpenCV), and the page-at-a-time TIFF
// reader and writer against ReadTiff / WriteTiff.
#include "core/io/feed.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <tbb/task_arena.h>

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "core/base/status_macros.h"
#include "core/io/stack_io.h"
#include "core/io/tiff_io.h"
#include "core/tiff/tiff_reader.h"
#include "core/tiff/tiff_writer.h"
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

// Polls until `done` or about 10 s have passed.
bool Eventually(const std::function<bool()>& done) {
  for (int i = 0; i < 1000 && !done(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

Stack RunExecute(const Stack& input, const std::vector<std::string>& ops) {
  absl::StatusOr<Pipeline> pipeline = Pipeline::Parse(ops);
  EXPECT_TRUE(pipeline.ok()) << pipeline.status();
  absl::StatusOr<Stack> result = Execute(CopyStack(input), *pipeline);
  EXPECT_TRUE(result.ok()) << result.status();
  return *std::move(result);
}

// Runs the engine from a FeedSource into a DrainSink on a thread of its own, and feeds and
// drains it from the test's thread as a network transport would: slices fed while the source
// has room, results taken in order and given back, a wait for the run otherwise.
class Driver {
 public:
  Driver(const Stack& input, const std::vector<std::string>& ops, uint64_t window_bytes)
      : input_(input),
        feed_(StackInfo{input.shape(), input.pixel_type(), input.metadata()}),
        arena_(2) {
    absl::StatusOr<Pipeline> pipeline = Pipeline::Parse(ops);
    EXPECT_TRUE(pipeline.ok()) << pipeline.status();
    pipeline_ = *std::move(pipeline);
    options_.arena = &arena_;
    options_.window_bytes = window_bytes;
    auto changed = [this] {
      std::lock_guard lock(mutex_);
      ++changes_;
      changed_.notify_all();
    };
    feed_.SetOnRoom(changed);
    drain_.SetOnChange(changed);
  }
  ~Driver() {
    if (run_.joinable()) {  // a test that failed half-way
      feed_.Fail(absl::CancelledError("the test gave up"));
      drain_.Stop();
      run_.join();
    }
    feed_.SetOnRoom(nullptr);
    drain_.SetOnChange(nullptr);
  }

  FeedSource& feed() { return feed_; }
  DrainSink& drain() { return drain_; }

  // Starts the run on its own thread.
  void Start() {
    run_ = std::thread([this] {
      absl::Status status = core::Run(feed_, pipeline_, drain_, options_);
      std::lock_guard lock(mutex_);
      status_ = std::move(status);
      ended_ = true;
      ++changes_;
      changed_.notify_all();
    });
  }
  absl::Status Join() {
    run_.join();
    return status_;
  }

  // Feeds and drains to the end; returns the result.
  absl::StatusOr<Stack> Run() {
    Start();
    const int64_t depth = input_.depth();
    Stack out;
    int64_t fed = 0, drained = 0;
    while (drained < depth) {
      uint64_t seen;
      {
        std::lock_guard lock(mutex_);
        seen = changes_;
        if (ended_) break;
      }
      bool progressed = false;
      while (fed < depth) {
        absl::StatusOr<uint8_t*> buffer = feed_.Fill(fed);
        if (!buffer.ok()) return buffer.status();
        if (*buffer == nullptr) break;
        std::memcpy(*buffer, input_.slice_data(fed), input_.slice_bytes());
        feed_.Complete(fed++);
        max_held_ = std::max(max_held_, fed - drained);
        progressed = true;
      }
      if (out.empty() && drain_.output() != nullptr) {
        absl::StatusOr<Stack> allocated =
            Stack::Allocate(drain_.output()->shape, drain_.output()->type);
        if (!allocated.ok()) return allocated.status();
        out = *std::move(allocated);
        out.metadata() = drain_.output()->metadata;
      }
      while (!out.empty() && drained < depth) {
        const uint8_t* result = drain_.Result(drained);
        if (result == nullptr) break;
        std::memcpy(out.slice_data(drained), result, out.slice_bytes());
        drain_.Release(drained++);
        progressed = true;
      }
      if (fed == depth && drained == depth) feed_.End();
      if (!progressed) {
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [&] { return changes_ != seen; });
      }
    }
    feed_.End();
    STACKPROC_RETURN_IF_ERROR(Join());
    return out;
  }

  int64_t max_held() const { return max_held_; }
  bool Ended() {
    std::lock_guard lock(mutex_);
    return ended_;
  }

 private:
  const Stack& input_;
  FeedSource feed_;
  DrainSink drain_;
  tbb::task_arena arena_;
  Pipeline pipeline_;
  RunOptions options_;
  std::thread run_;
  std::mutex mutex_;
  std::condition_variable changed_;
  uint64_t changes_ = 0;
  bool ended_ = false;
  absl::Status status_;
  int64_t max_held_ = 0;
};

struct Case {
  PixelType type;
  std::vector<std::string> ops;
  int64_t halo = 0;  // planes the results lag behind the feed (z-neighbourhoods)
};

class FeedEqualsExecute : public ::testing::TestWithParam<Case> {};

TEST_P(FeedEqualsExecute, BitForBitWithinTheWindow) {
  Stack input = MakeStack({23, 96, 130}, GetParam().type, 5);
  input.metadata().description = "ImageJ=1.11a\nimages=23\nslices=23\nspacing=2.5\nunit=micron\n";
  input.metadata().x_resolution = 4.0;
  input.metadata().y_resolution = 4.0;
  const Stack expected = RunExecute(input, GetParam().ops);
  // A window of a few slices: the source and the run must recycle their buffers many times.
  // (and the rings of z-neighbourhoods: 2h + 1 planes, of their step's input).
  const uint64_t window = (8 + 3 * GetParam().halo) * input.slice_bytes();
  Driver driver(input, GetParam().ops, window);
  ASSERT_OK_AND_ASSIGN(Stack streamed, driver.Run());
  EXPECT_TRUE(StacksEqual(streamed, expected));
  EXPECT_EQ(streamed.metadata().description, expected.metadata().description);
  EXPECT_EQ(streamed.metadata().x_resolution, expected.metadata().x_resolution);
  // The feed is at most the window's slices and one more ahead of the results (and the planes
  // z-neighbourhoods keep).
  EXPECT_LE(driver.max_held(),
            static_cast<int64_t>(window / input.slice_bytes()) + 1 + GetParam().halo);
  EXPECT_LT(driver.max_held(), input.depth());
}

INSTANTIATE_TEST_SUITE_P(
    Pipelines, FeedEqualsExecute,
    ::testing::Values(Case{PixelType::kUint8, {"gaussian:ksize=5", "clahe"}},
                      Case{PixelType::kUint16, {"gaussian:ksize=5"}},
                      Case{PixelType::kUint16, {"median:ksize=3", "resize:scale=0.5"}},
                      Case{PixelType::kUint8, {"convert:to=float32", "gamma:gamma=0.5"}},
                      Case{PixelType::kFloat32, {"crop:x=3,y=5,width=40,height=33", "invert"}},
                      Case{PixelType::kUint16, {"median3d"}, 1},
                      Case{PixelType::kUint8,
                           {"gaussian:ksize=3", "gaussian3d:sigma=1", "resize:scale=0.5",
                            "median3d:size=5"},
                           6}));

TEST(FeedTest, WholeStackPipelineKeepsTheStackAtItsBarrier) {
  Stack input = MakeStack({9, 40, 50}, PixelType::kUint16, 2);
  const std::vector<std::string> ops = {"gaussian:ksize=3", "normalize:scope=stack"};
  const Stack expected = RunExecute(input, ops);
  Driver driver(input, ops, 1);  // a window of one slice: the feed still runs to the barrier
  ASSERT_OK_AND_ASSIGN(Stack streamed, driver.Run());
  EXPECT_TRUE(StacksEqual(streamed, expected));
}

TEST(FeedTest, RoomFollowsTheWindowAndTheResultsGivenBack) {
  Stack input = MakeStack({10, 64, 64}, PixelType::kUint8);
  // A single step writes beside its input: a window of 3 slices in flight holds 6 slice buffers
  // (the feed's ring 3 of them, and one more), so the ring holds 4.
  Driver driver(input, {"invert"}, 6 * input.slice_bytes());
  FeedSource& feed = driver.feed();
  ASSERT_OK_AND_ASSIGN(uint8_t * before, feed.Fill(0));
  EXPECT_EQ(before, nullptr);  // no room before the run starts
  driver.Start();
  ASSERT_TRUE(Eventually([&] { return *feed.Fill(0) != nullptr; }));
  int64_t fed = 0;
  while (true) {
    ASSERT_OK_AND_ASSIGN(uint8_t * buffer, feed.Fill(fed));
    if (buffer == nullptr) break;
    std::memcpy(buffer, input.slice_data(fed), input.slice_bytes());
    feed.Complete(fed++);
  }
  EXPECT_EQ(fed, 4);  // the window and one more
  EXPECT_THAT(feed.Fill(5), StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("slice 5 is not the next slice (4)")));
  // Full until the drainer gives slice 0 back.
  ASSERT_TRUE(Eventually([&] { return driver.drain().Result(0) != nullptr; }));
  EXPECT_EQ(driver.drain().Result(0)[0], static_cast<uint8_t>(255 - input.slice_data(0)[0]));
  ASSERT_OK_AND_ASSIGN(uint8_t * full, feed.Fill(4));
  EXPECT_EQ(full, nullptr);
  driver.drain().Release(0);
  ASSERT_TRUE(Eventually([&] { return *feed.Fill(4) != nullptr; }));
  // A feed that breaks fails the run, which gives back what the drainer had not taken.
  feed.Fail(absl::InvalidArgumentError("chunk at slice 4: broken"));
  EXPECT_THAT(driver.Join(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("chunk at slice 4")));
}

TEST(FeedTest, TheRunEndsWithTheFeedNotBefore) {
  Stack input = MakeStack({3, 16, 16}, PixelType::kUint8);
  Driver driver(input, {"invert"}, 1 << 20);
  driver.Start();
  for (int64_t z = 0; z < 3; ++z) {
    ASSERT_TRUE(Eventually([&] { return *driver.feed().Fill(z) != nullptr; }));
    std::memcpy(*driver.feed().Fill(z), input.slice_data(z), input.slice_bytes());
    driver.feed().Complete(z);
  }
  for (int64_t z = 0; z < 3; ++z) {
    ASSERT_TRUE(Eventually([&] { return driver.drain().Result(z) != nullptr; }));
    driver.drain().Release(z);
  }
  // Every slice is through; the run waits for the feed's end (an upload's half-close) ...
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_FALSE(driver.Ended());
  driver.feed().End();
  EXPECT_OK(driver.Join());
}

TEST(FeedTest, RejectsAPipelineThatCannotTakeTheSlices) {
  Stack input = MakeStack({4, 20, 20}, PixelType::kUint8);
  Driver driver(input, {"crop:x=0,y=0,width=100,height=10"}, 1 << 20);
  driver.Start();
  EXPECT_THAT(driver.Join(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("crop")));
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
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("no plane 7")));
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
