// proto/convert: every value of core's enums through the API's enums and back, unknown API values
// refused (never read as another value), operations in name order, job states named from the
// API's enum, metadata both ways.
#include "proto/convert.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/test_util/status_matchers.h"

namespace stackproc::convert {
namespace {

using ::stackproc::testing::IsOkAndHolds;
using ::stackproc::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ConvertTest, PixelTypesRoundTripAndUnknownOnesAreRefused) {
  for (core::PixelType type :
       {core::PixelType::kUint8, core::PixelType::kUint16, core::PixelType::kFloat32}) {
    EXPECT_NE(ToProto(type), v1::PIXEL_TYPE_UNSPECIFIED);
    EXPECT_THAT(FromProto(ToProto(type)), IsOkAndHolds(type));
  }
  EXPECT_EQ(ToProto(core::PixelType::kUint16), v1::PIXEL_TYPE_UINT16);
  EXPECT_THAT(FromProto(static_cast<v1::PixelType>(99)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("pixel type 99")));
  EXPECT_THAT(FromProto(v1::PIXEL_TYPE_UNSPECIFIED),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("pixel type 0")));
}

TEST(ConvertTest, CompressionsRoundTripAndUnknownOnesAreRefused) {
  for (const core::CodecInfo& codec : core::kCodecs) {
    EXPECT_THAT(FromProto(ToProto(codec.compression)), IsOkAndHolds(codec.compression));
  }
  EXPECT_EQ(ToProto(core::Compression::kZstd), v1::COMPRESSION_ZSTD);
  EXPECT_EQ(ToProto(core::Compression::kLz4), v1::COMPRESSION_LZ4);
  // Unspecified is the output format's default (none for TIFF, blosc-lz4 for OME-Zarr).
  EXPECT_THAT(FromProto(v1::COMPRESSION_UNSPECIFIED), IsOkAndHolds(core::Compression::kDefault));
  EXPECT_THAT(FromProto(static_cast<v1::Compression>(42)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("compression 42")));
}

TEST(ConvertTest, OperationsComeBackWithTheirParametersInNameOrder) {
  v1::OpSpec op;
  op.set_name("gaussian");
  (*op.mutable_params())["sigma"] = "1.5";
  (*op.mutable_params())["ksize"] = "5";
  const core::OpSpec expected{"gaussian", {{"ksize", "5"}, {"sigma", "1.5"}}};
  EXPECT_EQ(FromProto(op), expected);
  EXPECT_EQ(FromProto(ToProto(expected)), expected);

  google::protobuf::RepeatedPtrField<v1::OpSpec> ops;
  *ops.Add() = op;
  ops.Add()->set_name("invert");
  EXPECT_EQ(OpsText(ops), "gaussian:ksize=5,sigma=1.5 -> invert");
  EXPECT_EQ(OpsText({}), "(none: a conversion)");
}

TEST(ConvertTest, EveryJobStateHasItsApiName) {
  const google::protobuf::EnumDescriptor* states = v1::JobState_descriptor();
  for (int i = 0; i < states->value_count(); ++i) {
    const auto state = static_cast<v1::JobState>(states->value(i)->number());
    if (state == v1::JOB_STATE_UNSPECIFIED) continue;
    EXPECT_NE(JobStateName(state), "unknown") << states->value(i)->name();
  }
  EXPECT_EQ(JobStateName(v1::JOB_STATE_SUCCEEDED), "succeeded");
  EXPECT_EQ(JobStateName(v1::JOB_STATE_INTERRUPTED), "interrupted");
  EXPECT_EQ(JobStateName(v1::JOB_STATE_UNSPECIFIED), "unknown");
  EXPECT_EQ(JobStateName(static_cast<v1::JobState>(77)), "unknown");
}

TEST(ConvertTest, MetadataBothWays) {
  core::StackMetadata metadata;
  metadata.description = "ImageJ=1.54f\nimages=3\n";
  metadata.x_resolution = 2.5;
  metadata.y_resolution = 4;
  metadata.resolution_unit = core::ResolutionUnit::kCentimeter;
  v1::ResultHeader header;
  MetadataToProto(metadata, &header);
  EXPECT_EQ(header.resolution_unit(), 3);
  ASSERT_OK_AND_ASSIGN(core::StackMetadata back, MetadataFromProto(header));
  EXPECT_EQ(back.description, metadata.description);
  EXPECT_EQ(back.x_resolution, 2.5);
  EXPECT_EQ(back.y_resolution, 4);
  EXPECT_EQ(back.resolution_unit, core::ResolutionUnit::kCentimeter);

  v1::StreamHeader unset;  // nothing stated: no resolution, unit none
  ASSERT_OK_AND_ASSIGN(core::StackMetadata none, MetadataFromProto(unset));
  EXPECT_FALSE(none.x_resolution.has_value());
  EXPECT_EQ(none.resolution_unit, core::ResolutionUnit::kNone);
  unset.set_resolution_unit(7);
  EXPECT_THAT(MetadataFromProto(unset),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("resolution_unit 7")));
}

TEST(ConvertTest, DimensionsBothWaysAndAgainstTheDescription) {
  core::StackMetadata metadata;
  metadata.dims.times = 3;
  metadata.dims.channels = 2;
  v1::StreamHeader header;
  header.mutable_shape()->set_depth(30);  // 3 x 2 x 5 planes
  MetadataToProto(metadata, &header);
  ASSERT_OK_AND_ASSIGN(core::StackMetadata back, MetadataFromProto(header));
  EXPECT_EQ(back.dims.times, 3);
  EXPECT_EQ(back.dims.channels, 2);
  EXPECT_EQ(back.dims.order, "ZCT");
  EXPECT_EQ(back.dims.Slices(30), 5);

  header.mutable_shape()->set_depth(31);  // not 3 x 2 x z
  EXPECT_THAT(MetadataFromProto(header),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("are not")));
  header.mutable_dimensions()->set_times(int64_t{1} << 32);  // no product overflows
  header.mutable_dimensions()->set_channels(int64_t{1} << 32);
  EXPECT_THAT(MetadataFromProto(header),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("are not")));

  // What an ImageJ hyperstack's description states wins; a disagreement is refused.
  header.mutable_shape()->set_depth(30);
  header.set_description("ImageJ=1.54f\nimages=30\nchannels=2\nslices=5\nframes=3\n");
  header.clear_dimensions();
  ASSERT_OK_AND_ASSIGN(back, MetadataFromProto(header));
  EXPECT_EQ(back.dims.order, "CZT");
  EXPECT_EQ(back.dims.channels, 2);
  header.mutable_dimensions()->set_channels(3);
  header.mutable_dimensions()->set_times(2);
  EXPECT_THAT(MetadataFromProto(header),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the description")));
}

}  // namespace
}  // namespace stackproc::convert
