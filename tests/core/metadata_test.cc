#include "core/stack/metadata.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/stack/stack.h"

namespace stackproc::core {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetadataTest, ClassifiesDescriptions) {
  EXPECT_EQ(ClassifyDescription(""), DescriptionKind::kNone);
  EXPECT_EQ(ClassifyDescription("ImageJ=1.54f\nimages=3\n"), DescriptionKind::kImageJ);
  EXPECT_EQ(ClassifyDescription("<?xml version=\"1.0\"?><OME xmlns=\"x\"></OME>"),
            DescriptionKind::kOmeXml);
  EXPECT_EQ(ClassifyDescription("{\"shape\": [3, 4]}"), DescriptionKind::kTifffileJson);
  EXPECT_EQ(ClassifyDescription("{\"axes\": \"ZYX\"}"), DescriptionKind::kOther);
}

TEST(MetadataTest, ImageJFieldsRoundTrip) {
  ImageJFields f = ParseImageJDescription("ImageJ=1.54f\nimages=12\nslices=12\nunit=um\n");
  ASSERT_EQ(f.size(), 4u);
  EXPECT_EQ(ImageJField(f, "unit"), "um");
  EXPECT_EQ(ImageJField(f, "spacing"), std::nullopt);
  EXPECT_EQ(FormatImageJDescription(f), "ImageJ=1.54f\nimages=12\nslices=12\nunit=um\n");
}

TEST(MetadataTest, ResizeScalesResolutionAndKeepsImageJFields) {
  StackMetadata in;
  in.description = "ImageJ=1.54f\nimages=12\nslices=12\nunit=um\nspacing=2.0\nmin=0\nmax=4095\n";
  in.x_resolution = 4.0;
  in.y_resolution = 4.0;
  PixelGeometry g;
  g.Scale(0.5, 0.25);
  StackMetadata out = UpdateMetadata(in, {12, 25, 50}, PixelType::kUint16, PixelType::kUint16, g);
  EXPECT_DOUBLE_EQ(*out.x_resolution, 2.0);
  EXPECT_DOUBLE_EQ(*out.y_resolution, 1.0);
  EXPECT_EQ(out.description, in.description);

  StackMetadata converted =
      UpdateMetadata(in, {12, 100, 100}, PixelType::kUint16, PixelType::kUint8, PixelGeometry{});
  EXPECT_THAT(converted.description, Not(HasSubstr("max=4095")));
  EXPECT_THAT(converted.description, HasSubstr("spacing=2.0"));
}

TEST(MetadataTest, TransposeSwapsAxes) {
  StackMetadata in;
  in.x_resolution = 2.0;
  in.y_resolution = 5.0;
  in.description =
      "<?xml version=\"1.0\"?><OME><Image><Pixels DimensionOrder=\"XYZCT\" SizeX=\"60\" "
      "SizeY=\"40\" SizeZ=\"3\" Type=\"uint16\" PhysicalSizeX=\"0.5\" PhysicalSizeY=\"0.2\">"
      "</Pixels></Image></OME>";
  PixelGeometry g;
  g.Transpose();
  StackMetadata out = UpdateMetadata(in, {3, 60, 40}, PixelType::kUint16, PixelType::kFloat32, g);
  EXPECT_DOUBLE_EQ(*out.x_resolution, 5.0);
  EXPECT_DOUBLE_EQ(*out.y_resolution, 2.0);
  EXPECT_THAT(out.description, HasSubstr("SizeX=\"40\""));
  EXPECT_THAT(out.description, HasSubstr("SizeY=\"60\""));
  EXPECT_THAT(out.description, HasSubstr("Type=\"float\""));
  EXPECT_THAT(out.description, HasSubstr("PhysicalSizeX=\"0.2\""));
  EXPECT_THAT(out.description, HasSubstr("PhysicalSizeY=\"0.5\""));
}

TEST(MetadataTest, OtherDescriptionsAreKept) {
  StackMetadata in;
  in.description = "acquired on scope 3, {\"shape\"} is not ours";
  StackMetadata out =
      UpdateMetadata(in, {3, 20, 30}, PixelType::kUint8, PixelType::kUint8, PixelGeometry{});
  EXPECT_EQ(out.description, in.description);
}

// tifffile's default description states the shape, and tifffile reads the pages by it: the
// shape is rewritten, and a description whose shape cannot be (another rank) is dropped.
TEST(MetadataTest, TifffileJsonShapeFollowsTheGeometry) {
  StackMetadata in;
  in.description = "{\"shape\": [3, 40, 60], \"axes\": \"ZYX\"}";
  StackMetadata out =
      UpdateMetadata(in, {3, 20, 30}, PixelType::kUint8, PixelType::kUint8, PixelGeometry{});
  EXPECT_EQ(out.description, "{\"shape\": [3, 20, 30], \"axes\": \"ZYX\"}");
  in.description = "{\"shape\": [3, 40, 60, 1]}";
  out = UpdateMetadata(in, {3, 20, 30}, PixelType::kUint8, PixelType::kUint8, PixelGeometry{});
  EXPECT_EQ(out.description, "");
}

}  // namespace
}  // namespace stackproc::core
