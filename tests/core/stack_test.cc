#include "core/stack/stack.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <climits>
#include <cstdint>

#include "core/stack/pixel_type.h"
#include "tests/test_util/status_matchers.h"

namespace stackproc::core {
namespace {

using ::stackproc::testing::StatusIs;
using ::testing::HasSubstr;

TEST(StackTest, SlicesAreViewsIntoOneBuffer) {
  ASSERT_OK_AND_ASSIGN(Stack stack, Stack::Allocate({3, 5, 7}, PixelType::kUint16));
  EXPECT_EQ(stack.slice_bytes(), 5u * 7u * 2u);
  EXPECT_EQ(stack.size_bytes(), 3u * 5u * 7u * 2u);
  for (int64_t z = 0; z < 3; ++z) {
    cv::Mat slice = stack.Slice(z);
    EXPECT_EQ(slice.data, stack.data() + z * 70);
    EXPECT_EQ(slice.type(), CV_16UC1);
    EXPECT_TRUE(slice.isContinuous());
    slice.setTo(static_cast<int>(z + 1));
  }
  // Writes through a view land in the shared buffer.
  const auto* pixels = reinterpret_cast<const uint16_t*>(stack.data());
  EXPECT_EQ(pixels[0], 1);
  EXPECT_EQ(pixels[35], 2);
  EXPECT_EQ(pixels[104], 3);
}

TEST(StackTest, SizeArithmeticIsChecked) {
  EXPECT_THAT(StackBytes({0, 5, 5}, PixelType::kUint8),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not positive")));
  EXPECT_THAT(StackBytes({1, int64_t{INT_MAX} + 1, 2}, PixelType::kUint8),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too large")));
  EXPECT_THAT(StackBytes({INT64_MAX / 2, 1 << 20, 1 << 20}, PixelType::kFloat32),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overflows")));
  ASSERT_OK_AND_ASSIGN(size_t bytes, StackBytes({4000, 2048, 2048}, PixelType::kUint16));
  EXPECT_EQ(bytes, 4000ull * 2048 * 2048 * 2);  // 32 GiB: fine to compute, not allocated here
}

TEST(StackTest, ImpossibleAllocationIsResourceExhausted) {
  // 2^60 bytes does not overflow size_t but no machine has it.
  EXPECT_THAT(Stack::Allocate({1 << 20, 1 << 20, 1 << 20}, PixelType::kUint8),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("cannot allocate")));
}

TEST(PixelTypeTest, NamesRoundTrip) {
  for (PixelType t : kAllPixelTypes) {
    ASSERT_OK_AND_ASSIGN(PixelType back, ParsePixelType(PixelTypeName(t)));
    EXPECT_EQ(back, t);
    ASSERT_OK_AND_ASSIGN(PixelType from_cv, FromCvType(CvType(t)));
    EXPECT_EQ(from_cv, t);
  }
  EXPECT_THAT(ParsePixelType("int16"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("uint8, uint16 or float32")));
  EXPECT_EQ(BytesPerPixel(PixelType::kUint16), 2u);
  EXPECT_EQ(FullScale(PixelType::kUint16), 65535.0);
}

}  // namespace
}  // namespace stackproc::core
