// Every operation on every pixel type it takes, against a direct OpenCV call (or a formula
// worked out here) on the same slice.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <opencv2/imgproc.hpp>
#include <set>
#include <vector>

#include "core/pipeline/operation_registry.h"
#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc::core {
namespace {

using ::stackproc::testing::MakeStack;
using ::stackproc::testing::MatsEqual;
using ::stackproc::testing::StatusIs;
using ::testing::HasSubstr;

constexpr PixelType U8 = PixelType::kUint8, U16 = PixelType::kUint16, F32 = PixelType::kFloat32;
const std::vector<PixelType> kAll = {U8, U16, F32};

double Full(const cv::Mat& m) {
  return m.depth() == CV_8U ? 255.0 : m.depth() == CV_16U ? 65535.0 : 1.0;
}

absl::StatusOr<cv::Mat> ApplyOp(const std::string& text, const cv::Mat& src) {
  absl::StatusOr<OpSpec> spec = ParseOpSpec(text);
  if (!spec.ok()) return spec.status();
  absl::StatusOr<std::unique_ptr<SliceOp>> op = OperationRegistry::Builtin().Create(*spec);
  if (!op.ok()) return op.status();
  absl::StatusOr<PixelType> type = FromCvType(src.type());
  absl::StatusOr<SliceFormat> out = (*op)->OutputFormat({src.rows, src.cols, *type});
  if (!out.ok()) return out.status();
  cv::Mat dst(out->height, out->width, CvType(out->type));
  const uint8_t* before = dst.data;
  (*op)->Apply(src, dst);
  EXPECT_EQ(dst.data, before) << text << " reallocated its output";
  return dst;
}

struct Case {
  std::string spec;
  std::vector<PixelType> types;
  std::function<cv::Mat(const cv::Mat&)> reference;
  double float_tolerance = 0;  // 0: bit-exact for every type
};

cv::Mat Stretch(const cv::Mat& s, double low, double high) {
  std::vector<double> v;
  for (int y = 0; y < s.rows; ++y) {
    for (int x = 0; x < s.cols; ++x) {
      v.push_back(s.depth() == CV_8U    ? s.at<uint8_t>(y, x)
                  : s.depth() == CV_16U ? s.at<uint16_t>(y, x)
                                        : s.at<float>(y, x));
    }
  }
  std::sort(v.begin(), v.end());
  double lo = v[static_cast<size_t>(std::floor(low / 100 * double(v.size() - 1)))];
  double hi = v[static_cast<size_t>(std::floor(high / 100 * double(v.size() - 1)))];
  cv::Mat r;
  s.convertTo(r, s.type(), Full(s) / (hi - lo), -lo * Full(s) / (hi - lo));
  return r;
}

template <typename T>
cv::Mat GammaByHand(const cv::Mat& s, double g) {
  cv::Mat r(s.size(), s.type());
  for (int y = 0; y < s.rows; ++y) {
    for (int x = 0; x < s.cols; ++x) {
      double v = s.at<T>(y, x);
      r.at<T>(y, x) = std::is_floating_point_v<T>
                          ? static_cast<T>(std::pow(std::max(v, 0.0), g))
                          : cv::saturate_cast<T>(Full(s) * std::pow(v / Full(s), g));
    }
  }
  return r;
}

// Smoothing, denoising and sharpening.
std::vector<Case> FilterCases() {
  auto same = [](auto fn) { return std::function<cv::Mat(const cv::Mat&)>(fn); };
  return {
      {"gaussian:ksize=5", kAll, same([](const cv::Mat& s) {
         cv::Mat r;
         cv::GaussianBlur(s, r, {5, 5}, 0);
         return r;
       })},
      {"gaussian:sigma=2", kAll, same([](const cv::Mat& s) {
         cv::Mat r;
         cv::GaussianBlur(s, r, {0, 0}, 2);
         return r;
       })},
      {"median:ksize=5", kAll, same([](const cv::Mat& s) {
         cv::Mat r;
         cv::medianBlur(s, r, 5);
         return r;
       })},
      {"median:ksize=9", {U8}, same([](const cv::Mat& s) {
         cv::Mat r;
         cv::medianBlur(s, r, 9);
         return r;
       })},
      // The 3-D filters on one plane alone (its copies above and below, as Apply takes it): the
      // 2-D filters of that plane (their volumes against scipy.ndimage: neighbourhoods.py).
      {"median3d", kAll, same([](const cv::Mat& s) {
         // 27 values, each of the 3x3 three times; the border mirrored (medianBlur replicates).
         cv::Mat padded, r;
         cv::copyMakeBorder(s, padded, 1, 1, 1, 1, cv::BORDER_REFLECT_101);
         cv::medianBlur(padded, r, 3);
         return cv::Mat(r, cv::Rect(1, 1, s.cols, s.rows)).clone();
       })},
      {"gaussian3d:sigma=1.5",
       {F32},
       same([](const cv::Mat& s) {
         cv::Mat r;
         cv::GaussianBlur(s, r, {13, 13}, 1.5, 1.5, cv::BORDER_REFLECT_101);  // radius 4 sigma
         return r;
       }),
       1e-4},
      {"mean3d:size=5",
       {F32},
       same([](const cv::Mat& s) {
         cv::Mat r;
         cv::blur(s, r, {5, 5});
         return r;
       }),
       1e-4},
      {"box:ksize=7", kAll, same([](const cv::Mat& s) {
         cv::Mat r;
         cv::blur(s, r, {7, 7});
         return r;
       })},
      {"bilateral:d=7,sigma_color=30,sigma_space=3", kAll, same([](const cv::Mat& s) {
         cv::Mat r;
         if (s.depth() != CV_16U) {
           cv::bilateralFilter(s, r, 7, 30, 3);
           return r;
         }
         cv::Mat f, g;
         s.convertTo(f, CV_32F);
         cv::bilateralFilter(f, g, 7, 30, 3);
         g.convertTo(r, CV_16U);
         return r;
       })},
      {"unsharp:sigma=1.5,amount=0.7", kAll, same([](const cv::Mat& s) {
         cv::Mat b, r;
         cv::GaussianBlur(s, b, {0, 0}, 1.5);
         cv::addWeighted(s, 1.7, b, -0.7, 0, r);
         return r;
       })},
      // 256 bins (the default): uint8 is OpenCV's own; uint16 is OpenCV's CLAHE on the slice's
      // range cut into 256 bins, each made its bin's first of 65536 levels, the clip scaled by
      // 65536 / 256 (as clahe.cc works it out).
  };
}

// Contrast, intensity and thresholds.
std::vector<Case> IntensityCases() {
  auto same = [](auto fn) { return std::function<cv::Mat(const cv::Mat&)>(fn); };
  return {
      {"clahe:clip=3,tiles=4", {U8, U16}, same([](const cv::Mat& s) {
         cv::Mat r;
         if (s.depth() == CV_8U) {
           cv::createCLAHE(3, {4, 4})->apply(s, r);
           return r;
         }
         double lo = 0, hi = 0;
         cv::minMaxLoc(s, &lo, &hi);
         cv::Mat binned = s.clone();
         binned.forEach<uint16_t>([&](uint16_t& v, const int*) {
           const int bin = static_cast<int>((v - lo) * 256 / (hi - lo + 1));
           v = static_cast<uint16_t>(bin * 256);
         });
         cv::createCLAHE(3 * 256, {4, 4})->apply(binned, r);
         return r;
       })},
      {"clahe:clip=3,tiles=4,bins=65536", {U16}, same([](const cv::Mat& s) {
         cv::Mat r;
         cv::createCLAHE(3, {4, 4})->apply(s, r);
         return r;
       })},
      {"normalize:low=2,high=98", kAll, same([](const cv::Mat& s) { return Stretch(s, 2, 98); })},
      {"gamma:gamma=0.5", kAll, same([](const cv::Mat& s) {
         return s.depth() == CV_8U    ? GammaByHand<uint8_t>(s, 0.5)
                : s.depth() == CV_16U ? GammaByHand<uint16_t>(s, 0.5)
                                      : GammaByHand<float>(s, 0.5);
       }),
       1e-6},
      {"invert", kAll, same([](const cv::Mat& s) {
         cv::Mat r;
         cv::subtract(cv::Scalar(Full(s)), s, r);
         return r;
       })},
      {"threshold:value=0.3", {F32}, same([](const cv::Mat& s) {
         cv::Mat r;
         cv::threshold(s, r, 0.3, 1.0, cv::THRESH_BINARY);
         return r;
       })},
      {"threshold:value=1000", {U16}, same([](const cv::Mat& s) {
         cv::Mat r;
         cv::threshold(s, r, 1000, 65535, cv::THRESH_BINARY);
         return r;
       })},
      {"threshold:method=otsu", {U8, U16}, same([](const cv::Mat& s) {
         cv::Mat r;
         cv::threshold(s, r, 0, Full(s), cv::THRESH_BINARY | cv::THRESH_OTSU);
         return r;
       })},
      // 131 x 97 halved as cv2.resize(fx=0.5, fy=0.5) halves it: sizes round half to even,
      // 65.5 -> 66 and 48.5 -> 48, and the pixels are sampled at exactly 0.5.
  };
}

// Size, orientation, type and shape.
std::vector<Case> GeometryCases() {
  auto same = [](auto fn) { return std::function<cv::Mat(const cv::Mat&)>(fn); };
  return {
      {"resize:scale=0.5,interp=area", kAll, same([](const cv::Mat& s) {
         cv::Mat r;
         cv::resize(s, r, {}, 0.5, 0.5, cv::INTER_AREA);
         EXPECT_EQ(r.size(), cv::Size(66, 48));
         return r;
       })},
      {"resize:scale=0.3,interp=linear", {U8}, same([](const cv::Mat& s) {
         cv::Mat r;
         cv::resize(s, r, {}, 0.3, 0.3, cv::INTER_LINEAR);
         return r;
       })},
      // width 50 keeps the aspect: round(97 * 50 / 131) = 37.
      {"resize:width=50,interp=linear", kAll, same([](const cv::Mat& s) {
         cv::Mat r;
         cv::resize(s, r, {50, 37}, 0, 0, cv::INTER_LINEAR);
         return r;
       })},
      {"resize:scale=2,interp=lanczos", {U16}, same([](const cv::Mat& s) {
         cv::Mat r;
         cv::resize(s, r, {262, 194}, 0, 0, cv::INTER_LANCZOS4);
         return r;
       })},
      {"crop:x=10,y=20,width=30,height=40", kAll,
       same([](const cv::Mat& s) { return cv::Mat(s(cv::Rect(10, 20, 30, 40))).clone(); })},
      {"flip:axis=vertical", kAll, same([](const cv::Mat& s) {
         cv::Mat r;
         cv::flip(s, r, 0);
         return r;
       })},
      {"flip:axis=both", kAll, same([](const cv::Mat& s) {
         cv::Mat r;
         cv::flip(s, r, -1);
         return r;
       })},
      // Clockwise 90 is a transpose then a left-right mirror; 270 a transpose then up-down.
      {"rotate90:angle=90", kAll, same([](const cv::Mat& s) {
         cv::Mat t, r;
         cv::transpose(s, t);
         cv::flip(t, r, 1);
         return r;
       })},
      {"rotate90:angle=270", kAll, same([](const cv::Mat& s) {
         cv::Mat t, r;
         cv::transpose(s, t);
         cv::flip(t, r, 0);
         return r;
       })},
      {"convert:to=uint8", kAll, same([](const cv::Mat& s) {
         cv::Mat r;
         s.convertTo(r, CV_8U, 255.0 / Full(s));
         return r;
       })},
      {"convert:to=float32", kAll, same([](const cv::Mat& s) {
         cv::Mat r;
         s.convertTo(r, CV_32F, 1.0 / Full(s));
         return r;
       })},
      {"convert:to=uint16,mode=clip", kAll, same([](const cv::Mat& s) {
         cv::Mat r;
         s.convertTo(r, CV_16U);
         return r;
       })},
      {"morphology:op=tophat,shape=ellipse,ksize=7", kAll, same([](const cv::Mat& s) {
         cv::Mat r;
         cv::morphologyEx(s, r, cv::MORPH_TOPHAT,
                          cv::getStructuringElement(cv::MORPH_ELLIPSE, {7, 7}));
         return r;
       })},
      {"morphology:op=erode,shape=rect,ksize=3", kAll, same([](const cv::Mat& s) {
         cv::Mat r;
         cv::erode(s, r, cv::Mat::ones(3, 3, CV_8U));
         return r;
       })},
  };
}

std::vector<Case> Cases() {
  std::vector<Case> cases;
  for (auto part : {FilterCases, IntensityCases, GeometryCases}) {
    std::vector<Case> more = part();
    cases.insert(cases.end(), more.begin(), more.end());
  }
  return cases;
}

TEST(OperationsTest, EveryOperationMatchesOpenCV) {
  std::set<std::string> covered;
  for (const Case& c : Cases()) {
    for (PixelType type : c.types) {
      SCOPED_TRACE(absl::StrCat(c.spec, " on ", PixelTypeName(type)));
      core::Stack stack = MakeStack({1, 97, 131}, type, 3);
      cv::Mat src = stack.Slice(0);
      ASSERT_OK_AND_ASSIGN(cv::Mat got, ApplyOp(c.spec, src));
      cv::Mat want = c.reference(src);
      if (type == F32 && c.float_tolerance > 0) {
        ASSERT_EQ(got.size(), want.size());
        EXPECT_LE(cv::norm(got, want, cv::NORM_INF), c.float_tolerance);
      } else {
        EXPECT_TRUE(MatsEqual(got, want));
      }
      // The operation changed something (a test of an identity would prove nothing); a
      // conversion to the type the slice already has is the one identity by design.
      if (got.size() == src.size() && got.type() == src.type() && c.spec.rfind("convert", 0)) {
        EXPECT_FALSE(MatsEqual(got, src));
      }
    }
    covered.insert(c.spec.substr(0, c.spec.find(':')));
  }
  // OpenCV has no rolling ball, stripe filter or flat-field estimate: these are checked against
  // scikit-image, scipy and numpy in tests/core/corrections.py.
  for (const char* elsewhere : {"background", "destripe", "flatfield"}) covered.insert(elsewhere);
  for (const OperationInfo* info : OperationRegistry::Builtin().List()) {
    EXPECT_TRUE(covered.count(info->name)) << info->name << " has no reference test";
  }
}

// OpenCV's 16-bit CLAHE limits each of 65536 levels to clip * tile pixels / 65536: below one
// count per level, every clip rounds to the same limit (the audit's three identical preview
// columns). Over 256 bins (the default) the clip acts.
TEST(OperationsTest, SixteenBitClaheClipsDiffer) {
  core::Stack stack = MakeStack({1, 128, 128}, U16, 8);  // 8x8 tiles of 16x16 pixels
  cv::Mat src = stack.Slice(0);
  std::vector<cv::Mat> binned, fine;
  for (const char* clip : {"1", "2", "4"}) {
    ASSERT_OK_AND_ASSIGN(cv::Mat b, ApplyOp(absl::StrCat("clahe:clip=", clip), src));
    ASSERT_OK_AND_ASSIGN(cv::Mat f, ApplyOp(absl::StrCat("clahe:clip=", clip, ",bins=65536"), src));
    binned.push_back(b);
    fine.push_back(f);
  }
  EXPECT_FALSE(MatsEqual(binned[0], binned[1]));
  EXPECT_FALSE(MatsEqual(binned[1], binned[2]));
  EXPECT_TRUE(MatsEqual(fine[0], fine[1]));  // why bins exists
  EXPECT_TRUE(MatsEqual(fine[1], fine[2]));
}

TEST(OperationsTest, UnsupportedTypesAreClearErrors) {
  core::Stack f32 = MakeStack({1, 16, 16}, F32);
  core::Stack u16 = MakeStack({1, 16, 16}, U16);
  EXPECT_THAT(ApplyOp("clahe", f32.Slice(0)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("clahe: pixel type float32 is not supported (use uint8 or "
                                 "uint16; convert:to=uint16 first)")));
  EXPECT_THAT(ApplyOp("threshold:method=otsu", f32.Slice(0)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("method=value")));
  EXPECT_THAT(ApplyOp("median:ksize=9", u16.Slice(0)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs uint8")));
}

// The seed's Python code halved a 301x401 slice with cv2.resize(fx=0.5, fy=0.5): 150x200 (half
// to even), where rounding half away from zero would give 151x201.
TEST(OperationsTest, ResizeByScaleSizesAsOpenCVDoes) {
  core::Stack stack = MakeStack({1, 301, 401}, U16, 7);
  ASSERT_OK_AND_ASSIGN(cv::Mat got, ApplyOp("resize:scale=0.5", stack.Slice(0)));
  EXPECT_EQ(got.size(), cv::Size(200, 150));
  cv::Mat want;
  cv::resize(stack.Slice(0), want, {}, 0.5, 0.5, cv::INTER_AREA);
  EXPECT_TRUE(MatsEqual(got, want));
  EXPECT_THAT(ApplyOp("resize:scale=0.5,width=10", stack.Slice(0)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not both")));
}

TEST(OperationsTest, FlatSliceNormalizesToZero) {
  cv::Mat flat(8, 8, CV_16UC1, cv::Scalar(700));
  ASSERT_OK_AND_ASSIGN(cv::Mat got, ApplyOp("normalize", flat));
  EXPECT_EQ(cv::countNonZero(got), 0);
}

}  // namespace
}  // namespace stackproc::core
