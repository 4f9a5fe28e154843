// z-neighbourhoods in the engine (SliceOp::HaloPlanes): every run of a pipeline with 3-D steps
// equals a reference that applies its steps one after another to whole stacks, each 3-D step
// given its planes by a mirror worked out here from the planes' (t, c, z); whatever the window,
// the threads, the planes' order (z fastest, or ImageJ's channels fastest), the steps around
// them, a whole-stack barrier, or z-ranges read with the planes around them. And the errors:
// a neighbourhood deeper than the volumes, one larger than the window.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <tbb/task_arena.h>

#include <vector>

#include "core/base/status_macros.h"
#include "core/io/stack_io.h"
#include "core/pipeline/pipeline.h"
#include "core/process/shards.h"
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

// `channels` channels of `slices` z-slices, stored in `order` ("ZCT" or "CZT"), 2 time points.
Stack Volumes(int64_t channels, int64_t slices, const std::string& order, PixelType type,
              uint32_t seed) {
  Stack stack = MakeStack({2 * channels * slices, 37, 45}, type, seed);
  stack.metadata().dims.times = 2;
  stack.metadata().dims.channels = channels;
  stack.metadata().dims.order = order;
  return stack;
}

// Where plane p of a stack of 2 time points of `channels` x `slices` is, and back, by hand.
struct Layout {
  int64_t channels, slices;
  bool z_fastest;
  int64_t Plane(int64_t t, int64_t c, int64_t z) const {
    return z_fastest ? (t * channels + c) * slices + z : (t * slices + z) * channels + c;
  }
  void Where(int64_t p, int64_t& t, int64_t& c, int64_t& z) const {
    if (z_fastest) {
      z = p % slices, c = p / slices % channels, t = p / slices / channels;
    } else {
      c = p % channels, z = p / channels % slices, t = p / channels / slices;
    }
  }
};

// The pipeline's steps one after another over the whole stack: a step with a z-neighbourhood
// gets the planes of its own volume around each, mirrored at the volume's ends (z -1 is z 1).
Stack Reference(const Stack& input, const std::vector<std::string>& specs, const Layout& layout) {
  Stack current = CopyStack(input);
  for (const std::string& spec : specs) {
    absl::StatusOr<Pipeline> one = Pipeline::Parse({spec});
    EXPECT_TRUE(one.ok()) << one.status();
    EXPECT_TRUE(one->Bind({input.shape(), input.pixel_type(), input.metadata()}).ok());
    absl::StatusOr<std::vector<SliceFormat>> formats =
        one->Plan(SliceFormat::Of(current.shape(), current.pixel_type()));
    EXPECT_TRUE(formats.ok());
    if (one->NeedsWholeStack()) {
      EXPECT_TRUE(one->PrepareForStack(0, current).ok());
    }
    const SliceFormat out = formats->back();
    absl::StatusOr<Stack> made =
        Stack::Allocate({current.depth(), out.height, out.width}, out.type);
    EXPECT_TRUE(made.ok());
    Stack next = *std::move(made);
    next.metadata() = input.metadata();
    for (int64_t p = 0; p < current.depth(); ++p) {
      const SliceOp* op = one->For(0, p);
      cv::Mat dst = next.Slice(p);
      if (op == nullptr) {
        current.Slice(p).copyTo(dst);
        continue;
      }
      const int h = op->HaloPlanes();
      std::vector<cv::Mat> planes;
      int64_t t, c, z;
      layout.Where(p, t, c, z);
      for (int64_t dz = -h; dz <= h; ++dz) {
        int64_t at = z + dz;
        if (at < 0) at = -at;
        if (at >= layout.slices) at = 2 * (layout.slices - 1) - at;
        planes.push_back(current.Slice(layout.Plane(t, c, at)));
      }
      op->ApplyPlanes(planes, dst);
    }
    current = std::move(next);
  }
  return current;
}

absl::StatusOr<Stack> RunOn(const Stack& input, const std::vector<std::string>& specs, int threads,
                            uint64_t window_bytes) {
  STACKPROC_ASSIGN_OR_RETURN(Pipeline pipeline, Pipeline::Parse(specs));
  tbb::task_arena arena(threads);
  RunOptions options;
  options.arena = &arena;
  options.window_bytes = window_bytes;
  return Execute(CopyStack(input), pipeline, options);
}

const std::vector<std::vector<std::string>> kPipelines = {
    {"median3d"},
    {"gaussian3d:sigma=1.2,sigma_z=0.8"},
    {"gaussian:ksize=3", "median3d", "resize:scale=0.5", "mean3d:size=3,size_z=5", "invert"},
    {"median3d:size=5", "gaussian3d:sigma=0.7"},
    {"median3d:channels=1", "gaussian3d:sigma=1,c0.sigma_z=1.5", "convert:to=float32"},
};

TEST(HaloTest, EveryWindowThreadsAndOrderEqualTheReference) {
  for (const std::string order : {"ZCT", "CZT"}) {
    const Layout layout{2, 7, order == "ZCT"};
    for (PixelType type : {PixelType::kUint8, PixelType::kUint16}) {
      const Stack input = Volumes(2, 7, order, type, 3);
      for (const auto& specs : kPipelines) {
        SCOPED_TRACE(absl::StrCat(order, " ", PixelTypeName(type), " ", specs[0], " (",
                                  specs.size(), " steps)"));
        const Stack expected = Reference(input, specs, layout);
        EXPECT_FALSE(StacksEqual(expected, input));
        // A window too small for the rings, one that leaves room for a few slices in flight
        // (the rings take 22 planes at most here), and the default; one thread and two.
        for (uint64_t window : {uint64_t{1}, 30 * input.slice_bytes(), kDefaultWindowBytes}) {
          for (int threads : {1, 2}) {
            SCOPED_TRACE(absl::StrCat("window ", window, ", threads ", threads));
            // A window of one byte holds no ring: the run is refused, naming the window.
            absl::StatusOr<Stack> out = RunOn(input, specs, threads, window);
            if (window == 1) {
              EXPECT_THAT(out, StatusIs(absl::StatusCode::kResourceExhausted,
                                        HasSubstr("more than the run's window")));
              continue;
            }
            ASSERT_OK(out.status());
            EXPECT_TRUE(StacksEqual(*out, expected));
          }
        }
      }
    }
  }
}

TEST(HaloTest, AWholeStackBarrierBetweenNeighbourhoods) {
  const Stack input = Volumes(1, 9, "ZCT", PixelType::kUint16, 4);
  const std::vector<std::string> specs = {"median3d", "normalize:scope=stack", "mean3d"};
  ASSERT_OK_AND_ASSIGN(Stack out, RunOn(input, specs, 2, 4 * input.slice_bytes()));
  EXPECT_TRUE(StacksEqual(out, Reference(input, specs, {1, 9, true})));
}

// Each z-range, read with the planes around it, makes the whole run's planes: the ranges'
// outputs put together are the whole run (a cluster's shards), also across volumes.
TEST(HaloTest, RangesReadTheirNeighboursAndMakeTheWholeRun) {
  for (const std::string order : {"ZCT", "CZT"}) {
    const Stack input = Volumes(2, 6, order, PixelType::kUint8, 5);
    const std::vector<std::string> specs = {"gaussian:ksize=3", "median3d", "gaussian3d:sigma=1"};
    ASSERT_OK_AND_ASSIGN(Stack whole, RunOn(input, specs, 2, kDefaultWindowBytes));
    for (ZRange range : {ZRange{0, 5}, ZRange{5, 6}, ZRange{6, 13}, ZRange{13, 24}, ZRange{0, 24},
                         ZRange{11, 14}}) {
      SCOPED_TRACE(absl::StrCat(order, " slices ", range.begin, ":", range.end));
      ASSERT_OK_AND_ASSIGN(Pipeline pipeline, Pipeline::Parse(specs));
      auto source = std::make_shared<StackSource>(input);
      ASSERT_OK_AND_ASSIGN(std::unique_ptr<ZRangeSource> part,
                           ZRangeSource::Create(source, range, &pipeline));
      EXPECT_EQ(part->traits().context_before,
                std::min<int64_t>(range.begin, order == "ZCT" ? 5 : 10));
      StackSink sink;
      RunOptions options;
      options.window_bytes = 40 * input.slice_bytes();  // the rings take 26 planes (CZT)
      ASSERT_OK(core::Run(*part, pipeline, sink, options));
      const Stack made = sink.Take();
      ASSERT_EQ(made.depth(), range.size());
      for (int64_t z = 0; z < range.size(); ++z) {
        EXPECT_TRUE(MatsEqual(made.Slice(z), whole.Slice(range.begin + z)))
            << "plane " << range.begin + z;
      }
    }
  }
}

// A z-range of a pipeline with 3-D steps after a whole-stack step: the stack kept at the
// barrier has no planes around the range, so it runs only with the statistics gathered first,
// and then makes the whole run's planes.
TEST(HaloTest, ARangeRunsNeighbourhoodsAfterABarrierOnlyWithItsStatistics) {
  const Stack input = Volumes(1, 12, "ZCT", PixelType::kUint16, 7);
  const std::vector<std::string> specs = {"median3d", "normalize:scope=stack",
                                          "gaussian3d:sigma=0.6"};
  ASSERT_OK_AND_ASSIGN(Stack whole, RunOn(input, specs, 2, kDefaultWindowBytes));
  const ZRange range{7, 17};
  ASSERT_OK_AND_ASSIGN(Pipeline pipeline, Pipeline::Parse(specs));
  auto source = std::make_shared<StackSource>(input);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ZRangeSource> part,
                       ZRangeSource::Create(source, range, &pipeline));
  StackSink refused;
  EXPECT_THAT(core::Run(*part, pipeline, refused),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("only with that step's statistics gathered first")));
  ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> stats, GatherStats(*source, pipeline));
  RunOptions options;
  options.stack_stats = &stats;
  StackSink sink;
  ASSERT_OK(core::Run(*part, pipeline, sink, options));
  const Stack made = sink.Take();
  for (int64_t z = 0; z < range.size(); ++z) {
    EXPECT_TRUE(MatsEqual(made.Slice(z), whole.Slice(range.begin + z))) << range.begin + z;
  }
}

TEST(HaloTest, ANeighbourhoodDeeperThanTheVolumesIsRefused) {
  const Stack input = Volumes(2, 2, "ZCT", PixelType::kUint8, 6);
  EXPECT_THAT(RunOn(input, {"invert", "median3d:size=5"}, 2, kDefaultWindowBytes),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("operation 2 (median3d:size=5) needs 2 z-slices on each side of "
                                 "a plane, and 3 to mirror them at the ends; the stack has 2 "
                                 "z-slices per volume")));
  EXPECT_THAT(RunOn(input, {"gaussian3d:sigma=1"}, 2, kDefaultWindowBytes),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs 4 z-slices")));
  // 2 slices take a neighbourhood of 1 z-slice on each side.
  ASSERT_OK_AND_ASSIGN(Stack out, RunOn(input, {"median3d"}, 2, kDefaultWindowBytes));
  EXPECT_TRUE(StacksEqual(out, Reference(input, {"median3d"}, {2, 2, true})));
}

}  // namespace
}  // namespace stackproc::core
