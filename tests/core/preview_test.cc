// Previews: the sweep grammar worked out by hand; the chosen slices (their region) through each
// variant equal a direct OpenCV call on those slices; evenly spaced slices by hand; the refusals.
// The montage's pixels are checked from Python (tests/python/test_preview.py), decoded by cv2.
#include "core/process/preview.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>

#include "core/io/stack_io.h"
#include "core/io/tiff_io.h"
#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc::core {
namespace {

using ::stackproc::testing::CopyStack;
using ::stackproc::testing::MakeStack;
using ::stackproc::testing::MatsEqual;
using ::stackproc::testing::StatusIs;
using ::stackproc::testing::TempDir;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

std::vector<std::string> Labels(const std::vector<PreviewVariant>& variants) {
  std::vector<std::string> labels;
  for (const PreviewVariant& v : variants) labels.push_back(v.label);
  return labels;
}

TEST(ExpandSweepTest, OneColumnPerValueAndPerCombination) {
  ASSERT_OK_AND_ASSIGN(auto one, ExpandSweep({"gaussian:ksize=5", "clahe"}));
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].label, "gaussian:ksize=5 -> clahe");

  ASSERT_OK_AND_ASSIGN(auto three, ExpandSweep({"gaussian:ksize=5", "clahe:clip=1,2,4,tiles=8"}));
  EXPECT_THAT(Labels(three), ElementsAre("clip=1", "clip=2", "clip=4"));
  EXPECT_EQ(FormatOpSpecs(three[1].ops), "gaussian:ksize=5 -> clahe:clip=2,tiles=8");

  ASSERT_OK_AND_ASSIGN(auto six, ExpandSweep({"gaussian:ksize=3,5", "clahe:clip=1,2,4"}));
  EXPECT_THAT(Labels(six), ElementsAre("ksize=3 clip=1", "ksize=3 clip=2", "ksize=3 clip=4",
                                       "ksize=5 clip=1", "ksize=5 clip=2", "ksize=5 clip=4"));
  EXPECT_THAT(ExpandSweep({"gaussian:ksize=3,5,7", "clahe:clip=1,2,4"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most 8 variants")));
  EXPECT_THAT(ExpandSweep({":ksize=3"}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

class PreviewTest : public ::testing::Test {
 protected:
  void SetUp() override {
    input_ = MakeStack({40, 60, 50}, PixelType::kUint16, 9);
    ASSERT_OK(WriteTiff(dir_.File("in.tif"), input_));
  }
  TempDir dir_;
  Stack input_;
  LocalFiles files_;
};

TEST_F(PreviewTest, EachVariantOnTheChosenRegionEqualsOpenCV) {
  PreviewRequest request;
  request.input = dir_.File("in.tif");
  ASSERT_OK_AND_ASSIGN(request.variants, ExpandSweep({"gaussian:ksize=3,7"}));
  request.slices = {30, 3};
  request.region = Region{5, 10, 40, 30};
  ASSERT_OK_AND_ASSIGN(Preview preview, RunPreview(files_, request));
  EXPECT_THAT(preview.z, ElementsAre(30, 3));
  ASSERT_EQ(preview.after.size(), 2u);
  EXPECT_THAT(preview.notes, ElementsAre(AllOf(HasSubstr("region 5,10 40x30 processed alone"),
                                               Not(HasSubstr("throughout")))));
  const cv::Rect roi(5, 10, 40, 30);
  for (int i = 0; i < 2; ++i) {
    const cv::Mat slice = input_.Slice(preview.z[i])(roi).clone();  // its own borders
    EXPECT_TRUE(MatsEqual(preview.before.Slice(i), slice));
    for (int k : {3, 7}) {
      cv::Mat want;
      cv::GaussianBlur(slice, want, {k, k}, 0);  // the region is what the pipeline sees
      EXPECT_TRUE(MatsEqual(preview.after[k == 3 ? 0 : 1].Slice(i), want)) << "ksize " << k;
    }
  }
}

// CLAHE's tiles and Otsu's threshold are the region's own: they differ from the whole
// slice's everywhere in it, not only near its edges, and the note says so.
TEST_F(PreviewTest, ARegionSaysWhichStepsDifferThroughout) {
  PreviewRequest request;
  request.input = dir_.File("in.tif");
  ASSERT_OK_AND_ASSIGN(request.variants, ExpandSweep({"gaussian:ksize=3", "clahe:clip=1,2",
                                                      "threshold:method=otsu"}));
  request.slices = {3};
  request.region = Region{5, 10, 40, 30};
  ASSERT_OK_AND_ASSIGN(Preview preview, RunPreview(files_, request));
  EXPECT_THAT(preview.notes,
              ElementsAre(HasSubstr("edges (clahe, threshold: throughout, its own tiles")));
}

TEST_F(PreviewTest, EvenlySpacedSlicesAndSampleStatistics) {
  PreviewRequest request;
  request.input = dir_.File("in.tif");
  ASSERT_OK_AND_ASSIGN(request.variants, ExpandSweep({"normalize:scope=stack"}));
  ASSERT_OK_AND_ASSIGN(Preview preview, RunPreview(files_, request));
  // 3 slices, each in the middle of its third of 40: 40/6, 3*40/6, 5*40/6.
  EXPECT_THAT(preview.z, ElementsAre(6, 20, 33));
  EXPECT_THAT(preview.notes, ElementsAre(HasSubstr("statistics from the 3 previewed slices")));
  ASSERT_OK_AND_ASSIGN(std::string png, MontagePng(preview));
  EXPECT_EQ(png.substr(1, 3), "PNG");
}

// A 3-D step previews from the planes around each chosen slice (its first and last mirrored
// as in a run): whole slices are the whole run's; a region is that region of the planes around.
TEST_F(PreviewTest, ThreeDStepsPreviewFromThePlanesAround) {
  PreviewRequest request;
  request.input = dir_.File("in.tif");
  ASSERT_OK_AND_ASSIGN(request.variants, ExpandSweep({"median3d", "gaussian3d:sigma=1"}));
  request.slices = {0, 17, 39};
  ASSERT_OK_AND_ASSIGN(Preview preview, RunPreview(files_, request));
  ASSERT_OK_AND_ASSIGN(Pipeline pipeline, Pipeline::Parse({"median3d", "gaussian3d:sigma=1"}));
  ASSERT_OK_AND_ASSIGN(Stack whole, Execute(CopyStack(input_), pipeline));
  ASSERT_EQ(preview.after.size(), 1u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(MatsEqual(preview.after[0].Slice(i), whole.Slice(preview.z[i]))) << preview.z[i];
  }
  request.region = Region{5, 10, 40, 30};
  ASSERT_OK_AND_ASSIGN(Preview region, RunPreview(files_, request));
  Stack cropped = MakeStack({40, 30, 40}, PixelType::kUint16, 1);
  for (int64_t z = 0; z < 40; ++z)
    input_.Slice(z)(cv::Rect(5, 10, 40, 30)).copyTo(cropped.Slice(z));
  ASSERT_OK_AND_ASSIGN(Stack of_region, Execute(std::move(cropped), pipeline));
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(MatsEqual(region.after[0].Slice(i), of_region.Slice(region.z[i])));
  }
  ASSERT_OK_AND_ASSIGN(request.variants, ExpandSweep({"median3d", "normalize:scope=stack"}));
  EXPECT_THAT(RunPreview(files_, request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("preview them apart")));
}

TEST_F(PreviewTest, Refusals) {
  ASSERT_OK_AND_ASSIGN(PreviewRequest request,
                       PreviewRequestOf(dir_.File("in.tif"), {"gaussian"}, "3,40", "", ""));
  EXPECT_THAT(RunPreview(files_, request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("slices 0 to 39")));
  ASSERT_OK_AND_ASSIGN(request,
                       PreviewRequestOf(dir_.File("in.tif"), {"gaussian"}, "", "", "10,10,45,5"));
  EXPECT_THAT(RunPreview(files_, request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside the 50x60")));
  EXPECT_THAT(PreviewRequestOf("in.tif", {"gaussian"}, "1", "2", ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not both")));
  EXPECT_THAT(PreviewRequestOf("in.tif", {"gaussian"}, "", "", "1,2,3"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("X,Y,WIDTH,HEIGHT")));
  EXPECT_THAT(PreviewRequestOf("in.tif", {"gaussian"}, "", "17", ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1 to 16")));
  // A 1400 x 1400 uint16 slice (3.9 MB) 16 times over, by 4 variants and the input: 392 MB;
  // by 8 and the input: 706 MB, past the 512 MiB a preview may hold.
  ASSERT_OK(WriteTiff(dir_.File("wide.tif"), MakeStack({1, 1400, 1400}, PixelType::kUint16, 1)));
  const std::string sixteen = "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0";
  ASSERT_OK_AND_ASSIGN(
      request, PreviewRequestOf(dir_.File("wide.tif"), {"gaussian:ksize=1,3,5,7,9,11,13,15"},
                                sixteen, "", ""));
  EXPECT_THAT(RunPreview(files_, request),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("fewer slices")));
}

}  // namespace
}  // namespace stackproc::core
