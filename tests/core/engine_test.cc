// The engine through Execute (a stack in memory to a stack in memory): parallel == serial for
// every operation, fused pipelines equal step-by-step OpenCV calls, in-place runs copy nothing,
// whole-stack passes, progress, cancel, slice errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <opencv2/imgproc.hpp>
#include <thread>
#include <vector>

#include "core/io/stack_io.h"
#include "core/pipeline/pipeline.h"
#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc::core {
namespace {

using ::stackproc::testing::CopyStack;
using ::stackproc::testing::MakeStack;
using ::stackproc::testing::MatsEqual;
using ::stackproc::testing::StacksEqual;
using ::stackproc::testing::StatusIs;
using ::testing::HasSubstr;

absl::StatusOr<Stack> RunWith(int threads, const Stack& input,
                              const std::vector<std::string>& specs) {
  absl::StatusOr<Pipeline> pipeline = Pipeline::Parse(specs);
  if (!pipeline.ok()) return pipeline.status();
  tbb::task_arena arena(threads);
  RunOptions options;
  options.arena = &arena;
  return Execute(CopyStack(input), *pipeline, options);
}

// One pipeline per operation (plus fused ones), each run on a 1-thread and a 2-thread arena.
TEST(EngineTest, ParallelEqualsSerialForEveryOperation) {
  const std::vector<std::vector<std::string>> pipelines = {
      {"gaussian:ksize=5"},
      {"median:ksize=3"},
      {"box:ksize=5"},
      {"bilateral"},
      {"unsharp"},
      {"clahe"},
      {"normalize"},
      {"normalize:scope=stack"},
      {"gamma:gamma=0.7"},
      {"invert"},
      {"threshold:method=otsu"},
      {"resize:scale=0.5"},
      {"crop:x=3,y=5"},
      {"flip:axis=both"},
      {"rotate90"},
      {"convert:to=float32"},
      {"morphology:op=open"},
      {"gaussian3d:sigma=1"},
      {"mean3d"},
      {"median3d"},
      {"background:radius=5"},
      {"destripe"},
      {"flatfield:sigma=5"},
      {"gaussian:ksize=5", "clahe", "resize:scale=0.5"},
      {"gaussian:sigma=1", "normalize:scope=stack", "convert:to=uint8"}};
  for (PixelType type : {PixelType::kUint8, PixelType::kUint16}) {
    Stack input = MakeStack({24, 61, 83}, type, 5);
    for (const auto& specs : pipelines) {
      SCOPED_TRACE(absl::StrCat(specs[0], " (", specs.size(), " ops) on ", PixelTypeName(type)));
      ASSERT_OK_AND_ASSIGN(Stack serial, RunWith(1, input, specs));
      ASSERT_OK_AND_ASSIGN(Stack parallel, RunWith(2, input, specs));
      EXPECT_TRUE(StacksEqual(serial, parallel));
      EXPECT_FALSE(StacksEqual(serial, input)) << "the pipeline changed nothing";
    }
  }
}

TEST(EngineTest, FusedPipelineEqualsStepByStepOpenCV) {
  Stack input = MakeStack({9, 128, 96}, PixelType::kUint16, 2);
  ASSERT_OK_AND_ASSIGN(
      Stack out, RunWith(2, input, {"gaussian:ksize=5", "clahe:bins=65536", "resize:scale=0.5"}));
  ASSERT_EQ(out.shape(), (StackShape{9, 64, 48}));
  for (int64_t z = 0; z < input.depth(); ++z) {
    cv::Mat a, b, c;
    cv::GaussianBlur(input.Slice(z), a, {5, 5}, 0);
    cv::createCLAHE(2.0, {8, 8})->apply(a, b);
    cv::resize(b, c, {48, 64}, 0, 0, cv::INTER_AREA);
    EXPECT_TRUE(MatsEqual(out.Slice(z), c)) << "slice " << z;
  }
}

TEST(EngineTest, SameFormatRunsInPlaceOtherwiseOneNewStack) {
  Stack input = MakeStack({4, 32, 32}, PixelType::kUint8);
  const uint8_t* buffer = input.data();
  ASSERT_OK_AND_ASSIGN(Pipeline blur, Pipeline::Parse({"gaussian:ksize=3", "invert"}));
  ASSERT_OK_AND_ASSIGN(Stack same, Execute(std::move(input), blur));
  EXPECT_EQ(same.data(), buffer);  // nothing copied, nothing allocated

  ASSERT_OK_AND_ASSIGN(Pipeline shrink, Pipeline::Parse({"resize:scale=0.5"}));
  ASSERT_OK_AND_ASSIGN(Stack smaller, Execute(std::move(same), shrink));
  EXPECT_EQ(smaller.shape(), (StackShape{4, 16, 16}));
}

TEST(EngineTest, NormalizeOverTheStackUsesGlobalPercentiles) {
  Stack input = MakeStack({10, 40, 50}, PixelType::kUint16, 9);
  ASSERT_OK_AND_ASSIGN(Stack blurred, RunWith(2, input, {"gaussian:ksize=3"}));
  ASSERT_OK_AND_ASSIGN(
      Stack out, RunWith(2, input, {"gaussian:ksize=3", "normalize:low=1,high=99,scope=stack"}));
  // Reference: sort every voxel of the blurred stack.
  const auto* p = reinterpret_cast<const uint16_t*>(blurred.data());
  std::vector<uint16_t> all(p, p + blurred.size_bytes() / 2);
  std::sort(all.begin(), all.end());
  const double lo = all[static_cast<size_t>(std::floor(0.01 * double(all.size() - 1)))];
  const double hi = all[static_cast<size_t>(std::floor(0.99 * double(all.size() - 1)))];
  for (int64_t z = 0; z < out.depth(); ++z) {
    cv::Mat want;
    blurred.Slice(z).convertTo(want, CV_16U, 65535.0 / (hi - lo), -lo * 65535.0 / (hi - lo));
    ASSERT_TRUE(MatsEqual(out.Slice(z), want)) << "slice " << z;
  }
}

// 12-bit data into uint8: scaled by the type (the default) it is nearly black (0-15); by the
// stack's range (mode=range) its minimum is 0 and its maximum 255, worked out by hand.
TEST(EngineTest, ConvertByTheStacksRange) {
  Stack input = MakeStack({6, 30, 40}, PixelType::kUint16, 4);
  const auto* p = reinterpret_cast<uint16_t*>(input.data());
  std::vector<uint16_t> all(p, p + input.size_bytes() / 2);
  for (uint16_t& v : all) v = static_cast<uint16_t>(100 + v % 4000);  // 12-bit, 100-4099
  std::memcpy(input.data(), all.data(), input.size_bytes());
  const double lo = *std::min_element(all.begin(), all.end());
  const double hi = *std::max_element(all.begin(), all.end());
  ASSERT_OK_AND_ASSIGN(Stack scaled, RunWith(2, input, {"convert:to=uint8"}));
  ASSERT_OK_AND_ASSIGN(Stack ranged, RunWith(2, input, {"convert:to=uint8,mode=range"}));
  double most = 0;
  for (int64_t z = 0; z < input.depth(); ++z) {
    double zmax = 0;
    cv::minMaxLoc(scaled.Slice(z), nullptr, &zmax);
    most = std::max(most, zmax);
    cv::Mat want;
    input.Slice(z).convertTo(want, CV_8U, 255.0 / (hi - lo), -lo * 255.0 / (hi - lo));
    ASSERT_TRUE(MatsEqual(ranged.Slice(z), want)) << "slice " << z;
  }
  EXPECT_LE(most, 16);
  // The 1st and 99th percentiles instead: the brightest 1% saturate.
  ASSERT_OK_AND_ASSIGN(Stack clipped,
                       RunWith(2, input, {"convert:to=uint8,mode=range,low=1,high=99"}));
  EXPECT_FALSE(StacksEqual(clipped, ranged));
  EXPECT_THAT(RunWith(1, input, {"convert:to=uint8,low=1"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("mode=range")));
}

TEST(EngineTest, MetadataFollowsGeometry) {
  Stack input = MakeStack({3, 40, 60}, PixelType::kUint16);
  input.metadata().x_resolution = 2.0;
  input.metadata().y_resolution = 3.0;
  ASSERT_OK_AND_ASSIGN(Stack out, RunWith(1, input, {"rotate90", "resize:scale=0.5"}));
  EXPECT_EQ(out.shape(), (StackShape{3, 30, 20}));
  EXPECT_DOUBLE_EQ(*out.metadata().x_resolution, 1.5);  // was Y, halved
  EXPECT_DOUBLE_EQ(*out.metadata().y_resolution, 1.0);
}

// Test doubles: an operation that counts its calls, can sleep, and can fail on one slice.
// Slice z of the input holds the value z everywhere, so the op knows which slice it has.
class FakeOp : public SliceOp {
 public:
  FakeOp(std::atomic<int>& calls, int fail_on, std::chrono::milliseconds sleep)
      : calls_(calls), fail_on_(fail_on), sleep_(sleep) {}
  void Apply(const cv::Mat& src, cv::Mat& dst) const override {
    calls_.fetch_add(1);
    std::this_thread::sleep_for(sleep_);
    if (src.at<uint8_t>(0, 0) == fail_on_) {
      CV_Error(cv::Error::StsBadArg, "injected failure");
    }
    cv::add(src, 1, dst);
  }

 private:
  std::atomic<int>& calls_;
  int fail_on_;
  std::chrono::milliseconds sleep_;
};

Stack IndexedStack(int64_t depth) {
  absl::StatusOr<Stack> stack = Stack::Allocate({depth, 8, 8}, PixelType::kUint8);
  for (int64_t z = 0; z < depth; ++z) stack->Slice(z).setTo(static_cast<int>(z));
  return std::move(stack).value();
}

TEST(EngineTest, SliceErrorNamesTheSlice) {
  std::atomic<int> calls{0};
  Pipeline pipeline;
  pipeline.Add("fake", std::make_unique<FakeOp>(calls, 7, std::chrono::milliseconds(0)));
  EXPECT_THAT(Execute(IndexedStack(40), pipeline),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("slice 7: fake: ")));
}

TEST(EngineTest, CancelStopsWithinAboutOneSlicePerWorker) {
  std::atomic<int> calls{0};
  Pipeline pipeline;
  pipeline.Add("slow", std::make_unique<FakeOp>(calls, -1, std::chrono::milliseconds(20)));
  CancelToken cancel;
  tbb::task_arena arena(2);
  RunOptions options;
  options.arena = &arena;
  options.cancel = &cancel;
  options.progress_interval = absl::ZeroDuration();
  std::atomic<int> calls_at_cancel{-1};
  options.on_progress = [&](const Progress& p) {
    if (p.slices_done >= 5 && calls_at_cancel < 0) {
      calls_at_cancel = calls.load();
      cancel.Cancel();
    }
  };
  EXPECT_THAT(Execute(IndexedStack(200), pipeline, options),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("cancelled")));
  // After the cancel, each of the 2 workers starts at most one more slice (one that had
  // already passed its check).
  ASSERT_GE(calls_at_cancel.load(), 5);
  EXPECT_LE(calls.load(), calls_at_cancel.load() + 2);
}

TEST(EngineTest, ProgressIsMonotonicAndEndsComplete) {
  Stack input = MakeStack({30, 32, 32}, PixelType::kUint16);
  ASSERT_OK_AND_ASSIGN(Pipeline pipeline, Pipeline::Parse({"box:ksize=3"}));
  std::vector<Progress> reports;
  RunOptions options;
  options.progress_interval = absl::ZeroDuration();
  options.on_progress = [&](const Progress& p) { reports.push_back(p); };  // never concurrent
  ASSERT_OK(Execute(std::move(input), pipeline, options));
  ASSERT_GE(reports.size(), 2u);
  for (size_t i = 1; i < reports.size(); ++i) {
    EXPECT_GE(reports[i].slices_done, reports[i - 1].slices_done);
  }
  const Progress& last = reports.back();
  EXPECT_EQ(last.slices_done, 30);
  EXPECT_EQ(last.slices_total, 30);
  EXPECT_EQ(last.bytes_done, 30u * 32 * 32 * 2);
  EXPECT_EQ(last.bytes_total, last.bytes_done);
  ASSERT_TRUE(last.eta.has_value());
  EXPECT_EQ(*last.eta, absl::ZeroDuration());
}

TEST(EngineTest, ProgressRateIsBounded) {
  std::atomic<int> calls{0};
  Pipeline pipeline;
  pipeline.Add("slow", std::make_unique<FakeOp>(calls, -1, std::chrono::milliseconds(2)));
  int reports = 0;
  RunOptions options;
  options.progress_interval = absl::Hours(1);
  options.on_progress = [&](const Progress&) { ++reports; };
  ASSERT_OK(Execute(IndexedStack(50), pipeline, options));
  EXPECT_EQ(reports, 2);  // the first slice, then the final report
}

TEST(EngineTest, WrongTypeIsRejectedBeforeAnySliceRuns) {
  ASSERT_OK_AND_ASSIGN(Pipeline pipeline, Pipeline::Parse({"clahe"}));
  Stack input = MakeStack({2, 8, 8}, PixelType::kFloat32);
  EXPECT_THAT(Execute(std::move(input), pipeline),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("float32")));
}

// Statistics gathered apart go through files of at most kMaxStatsValues values: a step whose
// statistics would be more (flatfield's, one sum a pixel) is refused for a cut job, saying so.
TEST(EngineTest, StatisticsGatheredApartHaveABound) {
  ASSERT_OK_AND_ASSIGN(Pipeline pipeline, Pipeline::Parse({"flatfield"}));
  ASSERT_OK(pipeline.Bind({{8, 2048, 2048}, PixelType::kUint16, {}}));
  ASSERT_OK_AND_ASSIGN(std::vector<SliceFormat> fits,
                       pipeline.Plan({2048, 2048, PixelType::kUint16}));
  EXPECT_OK(StatsStep(pipeline, fits).status());
  ASSERT_OK_AND_ASSIGN(std::vector<SliceFormat> big,
                       pipeline.Plan({4096, 4096, PixelType::kUint16}));
  EXPECT_THAT(StatsStep(pipeline, big),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("takes statistics of 16777217 values from these slices, more "
                                 "than ranges gathered apart may (16777216): it runs whole")));
}

}  // namespace
}  // namespace stackproc::core
