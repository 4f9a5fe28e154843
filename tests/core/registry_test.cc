// The operation registry: the text form, validation messages, listing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <opencv2/core.hpp>
#include <set>

#include "core/pipeline/operation_registry.h"
#include "core/pipeline/pipeline.h"
#include "tests/test_util/status_matchers.h"

namespace stackproc::core {
namespace {

using ::stackproc::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;

absl::Status CreateStatus(absl::string_view text) {
  absl::StatusOr<OpSpec> spec = ParseOpSpec(text);
  if (!spec.ok()) return spec.status();
  return OperationRegistry::Builtin().Create(*spec).status();
}

TEST(OpSpecTest, ParsesTheTextForm) {
  ASSERT_OK_AND_ASSIGN(OpSpec spec, ParseOpSpec(" resize:scale=0.5, interp=area "));
  EXPECT_EQ(spec.name, "resize");
  ASSERT_EQ(spec.params.size(), 2u);
  EXPECT_EQ(spec.params[1], (std::pair<std::string, std::string>{"interp", "area"}));
  EXPECT_EQ(FormatOpSpec(spec), "resize:scale=0.5,interp=area");
  ASSERT_OK_AND_ASSIGN(OpSpec bare, ParseOpSpec("invert"));
  EXPECT_TRUE(bare.params.empty());
  EXPECT_THAT(ParseOpSpec("gaussian:ksize"), StatusIs(kInvalid, HasSubstr("has no value")));
  EXPECT_THAT(ParseOpSpec(":ksize=3"), StatusIs(kInvalid, HasSubstr("has no name")));
}

TEST(RegistryTest, ListsEveryBuiltinWithValidDefaults) {
  std::set<std::string> names;
  for (const OperationInfo* info : OperationRegistry::Builtin().List()) {
    names.insert(info->name);
    EXPECT_FALSE(info->doc.empty()) << info->name;
    for (const ParamSpec& p : info->params) EXPECT_FALSE(p.doc.empty()) << info->name;
  }
  EXPECT_EQ(names,
            (std::set<std::string>{"background", "bilateral",  "box",       "clahe",  "convert",
                                   "crop",       "destripe",   "flatfield", "flip",   "gamma",
                                   "gaussian",   "gaussian3d", "invert",    "mean3d", "median",
                                   "median3d",   "morphology", "normalize", "resize", "rotate90",
                                   "threshold",  "unsharp"}));
  for (const std::string& name : names) EXPECT_OK(CreateStatus(name));
}

// What an output records of its pipeline: every parameter stated, except those whose absence
// means something of its own. The completed spec must do what the spec did, to the bit.
TEST(RegistryTest, ACompletedSpecDoesWhatTheSpecDid) {
  const OperationRegistry& registry = OperationRegistry::Builtin();
  std::vector<std::string> texts = {"gaussian:sigma=2",        "gaussian:ksize=7",
                                    "resize:scale=0.5",        "resize:width=40",
                                    "convert:to=uint8",        "convert:to=uint8,mode=clip",
                                    "threshold:method=otsu",   "threshold:value=300",
                                    "crop:width=20,height=10", "clahe:clip=3"};
  for (const OperationInfo* info : registry.List()) texts.push_back(info->name);
  cv::Mat src(48, 64, CV_16UC1);
  cv::randu(src, 0, 4000);
  for (const std::string& text : texts) {
    ASSERT_OK_AND_ASSIGN(OpSpec spec, ParseOpSpec(text));
    ASSERT_OK_AND_ASSIGN(OpSpec complete, registry.Complete(spec));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<SliceOp> given, registry.Create(spec));
    if (given->NeedsWholeStack()) continue;  // its result needs the stack's statistics
    SCOPED_TRACE(text + " completed as " + FormatOpSpec(complete));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<SliceOp> stated, registry.Create(complete));
    const SliceFormat in{48, 64, PixelType::kUint16};
    ASSERT_OK_AND_ASSIGN(SliceFormat out, given->OutputFormat(in));
    ASSERT_OK_AND_ASSIGN(SliceFormat out2, stated->OutputFormat(in));
    ASSERT_TRUE(out == out2) << text;
    cv::Mat a(out.height, out.width, CvType(out.type)), b(out.height, out.width, CvType(out.type));
    given->Apply(src, a);
    stated->Apply(src, b);
    EXPECT_EQ(cv::norm(a, b, cv::NORM_INF), 0) << text << " vs " << FormatOpSpec(complete);
  }
  // By hand: gaussian's ksize follows a given sigma, so it is not stated; the rest is.
  ASSERT_OK_AND_ASSIGN(OpSpec sigma, ParseOpSpec("gaussian:sigma=2"));
  EXPECT_EQ(FormatOpSpec(registry.Complete(sigma).value()), "gaussian:sigma=2");
  ASSERT_OK_AND_ASSIGN(OpSpec width, ParseOpSpec("resize:width=40"));
  EXPECT_EQ(FormatOpSpec(registry.Complete(width).value()), "resize:width=40,interp=area");
  ASSERT_OK_AND_ASSIGN(OpSpec clahe, ParseOpSpec("clahe"));
  EXPECT_EQ(FormatOpSpec(registry.Complete(clahe).value()), "clahe:clip=2,tiles=8,bins=256");
}

TEST(RegistryTest, RejectsWithMessagesThatSayWhatIsAllowed) {
  EXPECT_THAT(CreateStatus("blur:ksize=3"),
              StatusIs(kInvalid, AllOf(HasSubstr("unknown operation 'blur'"), HasSubstr("gaussian"),
                                       HasSubstr("median"))));
  EXPECT_THAT(CreateStatus("gaussian:size=3"),
              StatusIs(kInvalid, HasSubstr("gaussian has no parameter 'size' (parameters: "
                                           "ksize, sigma)")));
  EXPECT_THAT(CreateStatus("gaussian:ksize=999"),
              StatusIs(kInvalid, HasSubstr("ksize=999 is not valid (ksize: int in [0, 255])")));
  EXPECT_THAT(CreateStatus("gaussian:ksize=4"), StatusIs(kInvalid, HasSubstr("must be odd")));
  EXPECT_THAT(CreateStatus("gaussian:ksize=five"), StatusIs(kInvalid, HasSubstr("int in")));
  EXPECT_THAT(CreateStatus("gaussian:ksize=0,sigma=0"),
              StatusIs(kInvalid, HasSubstr("set ksize or sigma")));
  EXPECT_THAT(CreateStatus("gaussian:ksize=3,ksize=5"),
              StatusIs(kInvalid, HasSubstr("given twice")));
  EXPECT_THAT(CreateStatus("flip:axis=diagonal"),
              StatusIs(kInvalid, HasSubstr("one of horizontal|vertical|both")));
  EXPECT_THAT(CreateStatus("normalize:low=60,high=40"),
              StatusIs(kInvalid, HasSubstr("must be below")));
  EXPECT_THAT(CreateStatus("resize:scale=0.5,width=10"), StatusIs(kInvalid, HasSubstr("not both")));
  EXPECT_THAT(CreateStatus("gamma:gamma=nan"), StatusIs(kInvalid, HasSubstr("float in")));
}

TEST(PipelineTest, ParseNamesTheFailingOperation) {
  EXPECT_THAT(Pipeline::Parse({"gaussian:ksize=5", "clahe:clip=x"}),
              StatusIs(kInvalid, HasSubstr("operation 2 (clahe:clip=x): clahe: clip=x")));
  ASSERT_OK_AND_ASSIGN(Pipeline p,
                       Pipeline::Parse({"gaussian:ksize=5", "clahe", "resize:scale=0.5"}));
  EXPECT_EQ(p.ToString(), "gaussian:ksize=5 -> clahe -> resize:scale=0.5");
}

TEST(PipelineTest, PlanChecksEveryStepAgainstItsInput) {
  ASSERT_OK_AND_ASSIGN(Pipeline p, Pipeline::Parse({"convert:to=float32", "clahe"}));
  EXPECT_THAT(p.Plan({100, 80, PixelType::kUint16}),
              StatusIs(kInvalid, AllOf(HasSubstr("operation 2 (clahe) on 80x100 float32"),
                                       HasSubstr("pixel type float32 is not supported"),
                                       HasSubstr("uint8 or uint16"))));
  ASSERT_OK_AND_ASSIGN(Pipeline median, Pipeline::Parse({"median:ksize=7"}));
  EXPECT_OK(median.Plan({10, 10, PixelType::kUint8}));
  EXPECT_THAT(median.Plan({10, 10, PixelType::kUint16}), StatusIs(kInvalid, HasSubstr("uint8")));
  ASSERT_OK_AND_ASSIGN(Pipeline crop, Pipeline::Parse({"crop:x=50,width=60"}));
  EXPECT_THAT(crop.Plan({100, 100, PixelType::kUint8}),
              StatusIs(kInvalid, HasSubstr("not inside the 100x100 slice")));
  ASSERT_OK_AND_ASSIGN(Pipeline geometry,
                       Pipeline::Parse({"crop:x=10,y=0,width=40,height=30", "rotate90:angle=90",
                                        "resize:scale=0.5", "convert:to=uint8"}));
  ASSERT_OK_AND_ASSIGN(auto formats, geometry.Plan({100, 80, PixelType::kUint16}));
  EXPECT_EQ(formats.back(), (SliceFormat{20, 15, PixelType::kUint8}));
}

}  // namespace
}  // namespace stackproc::core
