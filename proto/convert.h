// Core's types in the API's messages and back, for both ends of the wire: the server and the
// clients convert through these, so each enum's mapping and each message's reading is written once.
// Names (pixel types, compressions, the op grammar) stay core's; job states are named here, from
// the API's enum.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "core/pipeline/operation_registry.h"
#include "core/stack/metadata.h"
#include "core/stack/pixel_type.h"
#include "core/stack/stack.h"
#include "core/tiff/tiff_writer.h"
#include "stackproc/v1/service.pb.h"

namespace stackproc::convert {

// Unknown values are InvalidArgument, naming the value and the known ones: read as another
// value they would make silently wrong pixels or files.
v1::PixelType ToProto(core::PixelType type);
absl::StatusOr<core::PixelType> FromProto(v1::PixelType type);
v1::Compression ToProto(core::Compression compression);
absl::StatusOr<core::Compression> FromProto(v1::Compression compression);  // UNSPECIFIED: none
v1::Predictor ToProto(core::Predictor predictor);
absl::StatusOr<core::Predictor> FromProto(v1::Predictor predictor);

void ToProto(const core::StackShape& shape, v1::StackShape* out);
// A chunk or shard shape (depth x height x width) and back.
void ToProto(const std::array<int64_t, 3>& shape, v1::ChunkShape* out);
std::array<int64_t, 3> FromProto(const v1::ChunkShape& shape);
core::StackShape FromProto(const v1::StackShape& shape);

// An operation, not yet validated. FromProto puts the parameters in name order (the message's
// map has none), so equal operations compare equal.
v1::OpSpec ToProto(const core::OpSpec& op);
core::OpSpec FromProto(const v1::OpSpec& op);
// "gaussian:ksize=5 -> clahe", core::kNoOperations for none; core's grammar (FormatOpSpecs).
std::string OpsText(const google::protobuf::RepeatedPtrField<v1::OpSpec>& ops);

// "queued", "running", "succeeded", ...: the API's enum names, lower case; "unknown" otherwise.
std::string JobStateName(v1::JobState state);
// "local", "slurm": likewise.
std::string ExecutorName(v1::Executor executor);

// A stack's time points, channels and plane order (unset for one z-stack), and back (counts
// below 1 as 1; not checked against a depth).
void DimensionsToProto(const core::Dimensions& dims, v1::Dimensions* out);
core::Dimensions DimensionsFromProto(const v1::Dimensions& proto);

// The stack's description (its provenance record in it), resolution and dimensions as a
// StreamHeader or a ResultHeader carries them.
template <typename Header>
void MetadataToProto(const core::StackMetadata& metadata, Header* out) {
  out->set_description(metadata.provenance ? core::DescriptionWithProvenance(metadata.description,
                                                                             *metadata.provenance)
                                           : metadata.description);
  out->set_x_resolution(metadata.x_resolution.value_or(0));
  out->set_y_resolution(metadata.y_resolution.value_or(0));
  out->set_resolution_unit(static_cast<int32_t>(metadata.resolution_unit));
  DimensionsToProto(metadata.dims, out->mutable_dimensions());
}
// InvalidArgument for a resolution unit other than 0 (unset), 1, 2 and 3, for dimensions that
// do not make the header's depth or disagree with what its description states. A record in the
// description is taken out of it (StackMetadata::provenance), as a TIFF's reader does.
template <typename Header>
absl::StatusOr<core::StackMetadata> MetadataFromProto(const Header& header);

}  // namespace stackproc::convert
