#include "proto/convert.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "core/base/status_macros.h"

namespace stackproc::convert {

v1::PixelType ToProto(core::PixelType type) {
  switch (type) {
    case core::PixelType::kUint8:
      return v1::PIXEL_TYPE_UINT8;
    case core::PixelType::kUint16:
      return v1::PIXEL_TYPE_UINT16;
    case core::PixelType::kFloat32:
      return v1::PIXEL_TYPE_FLOAT32;
  }
  return v1::PIXEL_TYPE_UNSPECIFIED;
}

absl::StatusOr<core::PixelType> FromProto(v1::PixelType type) {
  switch (type) {
    case v1::PIXEL_TYPE_UINT8:
      return core::PixelType::kUint8;
    case v1::PIXEL_TYPE_UINT16:
      return core::PixelType::kUint16;
    case v1::PIXEL_TYPE_FLOAT32:
      return core::PixelType::kFloat32;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("pixel type ", static_cast<int>(type), " is not uint8, uint16 or float32"));
  }
}

namespace {

// A codec's name in the API: COMPRESSION_ and its name in capitals (the default: UNSPECIFIED).
std::string ProtoName(const core::CodecInfo& codec) {
  return codec.compression == core::Compression::kDefault
             ? "COMPRESSION_UNSPECIFIED"
             : "COMPRESSION_" + absl::AsciiStrToUpper(codec.name);
}

}  // namespace

v1::Compression ToProto(core::Compression compression) {
  v1::Compression out = v1::COMPRESSION_UNSPECIFIED;
  v1::Compression_Parse(ProtoName(core::CodecOf(compression)), &out);
  return out;
}

absl::StatusOr<core::Compression> FromProto(v1::Compression compression) {
  const std::string name = v1::Compression_Name(compression);
  for (const core::CodecInfo& codec : core::kCodecs) {
    if (ProtoName(codec) == name) return codec.compression;
  }
  return absl::InvalidArgumentError(absl::StrCat("compression ", static_cast<int>(compression),
                                                 " is not ", core::CodecNames(nullptr)));
}

v1::Predictor ToProto(core::Predictor predictor) {
  switch (predictor) {
    case core::Predictor::kDefault:
      return v1::PREDICTOR_UNSPECIFIED;
    case core::Predictor::kNone:
      return v1::PREDICTOR_NONE;
    case core::Predictor::kDifferencing:
      return v1::PREDICTOR_DIFFERENCING;
  }
  return v1::PREDICTOR_UNSPECIFIED;
}

absl::StatusOr<core::Predictor> FromProto(v1::Predictor predictor) {
  switch (predictor) {
    case v1::PREDICTOR_UNSPECIFIED:
      return core::Predictor::kDefault;
    case v1::PREDICTOR_NONE:
      return core::Predictor::kNone;
    case v1::PREDICTOR_DIFFERENCING:
      return core::Predictor::kDifferencing;
    default:
      return absl::InvalidArgumentError(absl::StrCat("predictor ", static_cast<int>(predictor),
                                                     " is not unspecified, none or differencing"));
  }
}

void ToProto(const core::StackShape& shape, v1::StackShape* out) {
  out->set_depth(shape.depth);
  out->set_height(shape.height);
  out->set_width(shape.width);
}

core::StackShape FromProto(const v1::StackShape& shape) {
  return {shape.depth(), shape.height(), shape.width()};
}

void ToProto(const std::array<int64_t, 3>& shape, v1::ChunkShape* out) {
  out->set_depth(shape[0]);
  out->set_height(shape[1]);
  out->set_width(shape[2]);
}

std::array<int64_t, 3> FromProto(const v1::ChunkShape& shape) {
  return {shape.depth(), shape.height(), shape.width()};
}

v1::OpSpec ToProto(const core::OpSpec& op) {
  v1::OpSpec out;
  out.set_name(op.name);
  for (const auto& [key, value] : op.params) (*out.mutable_params())[key] = value;
  return out;
}

core::OpSpec FromProto(const v1::OpSpec& op) {
  core::OpSpec out{op.name(), {op.params().begin(), op.params().end()}};
  std::sort(out.params.begin(), out.params.end());
  return out;
}

std::string OpsText(const google::protobuf::RepeatedPtrField<v1::OpSpec>& ops) {
  std::vector<core::OpSpec> specs;
  for (const v1::OpSpec& op : ops) specs.push_back(FromProto(op));
  return core::FormatOpSpecs(specs);
}

std::string JobStateName(v1::JobState state) {
  absl::string_view name = v1::JobState_Name(state);
  if (!absl::ConsumePrefix(&name, "JOB_STATE_") || name == "UNSPECIFIED") return "unknown";
  return absl::AsciiStrToLower(name);
}

std::string ExecutorName(v1::Executor executor) {
  absl::string_view name = v1::Executor_Name(executor);
  if (!absl::ConsumePrefix(&name, "EXECUTOR_") || name == "UNSPECIFIED") return "unknown";
  return absl::AsciiStrToLower(name);
}

namespace {

// The header's channel names and display settings.
std::vector<core::ChannelInfo> ChannelsFromProto(const v1::Dimensions& proto) {
  std::vector<core::ChannelInfo> channels;
  for (const v1::ChannelInfo& c : proto.channel_info()) {
    core::ChannelInfo& channel = channels.emplace_back();
    channel.name = c.name();
    if (c.has_rgba()) channel.rgba = c.rgba();
    if (c.has_emission_wavelength()) channel.emission_wavelength = c.emission_wavelength();
    if (c.has_window_start()) channel.window_start = c.window_start();
    if (c.has_window_end()) channel.window_end = c.window_end();
  }
  return channels;
}

}  // namespace

void DimensionsToProto(const core::Dimensions& dims, v1::Dimensions* out) {
  for (const core::ChannelInfo& c : dims.channel_info) {
    v1::ChannelInfo* channel = out->add_channel_info();
    channel->set_name(c.name);
    if (c.rgba) channel->set_rgba(*c.rgba);
    if (c.emission_wavelength) channel->set_emission_wavelength(*c.emission_wavelength);
    if (c.window_start) channel->set_window_start(*c.window_start);
    if (c.window_end) channel->set_window_end(*c.window_end);
  }
  if (dims.single()) return;  // unset: one z-stack
  out->set_times(dims.times);
  out->set_channels(dims.channels);
  out->set_order(dims.order);
}

core::Dimensions DimensionsFromProto(const v1::Dimensions& proto) {
  core::Dimensions dims;
  dims.times = std::max<int64_t>(proto.times(), 1);
  dims.channels = std::max<int64_t>(proto.channels(), 1);
  if (!proto.order().empty()) dims.order = proto.order();
  dims.channel_info = ChannelsFromProto(proto);
  return dims;
}

namespace {

// The planes' dimensions: what the description states, else the header's own.
absl::StatusOr<core::Dimensions> HeaderDimensions(const std::string& description,
                                                  const v1::Dimensions& proto, int64_t planes) {
  if (proto.times() < 0 || proto.channels() < 0) {
    return absl::InvalidArgumentError("dimensions: times and channels are counts");
  }
  const core::Dimensions stated = DimensionsFromProto(proto);
  if (planes <= 0) return stated;  // no planes: the shape's own check says so
  STACKPROC_RETURN_IF_ERROR(stated.Check(planes));
  STACKPROC_ASSIGN_OR_RETURN(core::Dimensions described, core::DimensionsOf(description, planes));
  if (!described.single() && !stated.single() &&
      (stated.times != described.times || stated.channels != described.channels ||
       stated.order != described.order)) {
    return absl::InvalidArgumentError(absl::StrCat("dimensions say ", stated.Describe(planes),
                                                   ", the description ",
                                                   described.Describe(planes)));
  }
  core::Dimensions dims = described.single() ? stated : std::move(described);
  // The channels' names and display settings as the sender read them (beyond what a
  // description says: ImageJ's LUTs, an RGB file's colours), one per channel or none.
  if (!stated.channel_info.empty()) {
    if (std::ssize(stated.channel_info) != dims.channels) {
      return absl::InvalidArgumentError(absl::StrCat("dimensions: ", stated.channel_info.size(),
                                                     " channels' settings for ", dims.channels,
                                                     " channels"));
    }
    dims.channel_info = stated.channel_info;
  }
  return dims;
}

}  // namespace

template <typename Header>
absl::StatusOr<core::StackMetadata> MetadataFromProto(const Header& header) {
  core::StackMetadata metadata;
  metadata.description = header.description();
  metadata.provenance = core::TakeProvenance(metadata.description);
  if (header.x_resolution() > 0) metadata.x_resolution = header.x_resolution();
  if (header.y_resolution() > 0) metadata.y_resolution = header.y_resolution();
  switch (header.resolution_unit()) {
    case 0:
    case 1:
      metadata.resolution_unit = core::ResolutionUnit::kNone;
      break;
    case 2:
      metadata.resolution_unit = core::ResolutionUnit::kInch;
      break;
    case 3:
      metadata.resolution_unit = core::ResolutionUnit::kCentimeter;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("resolution_unit ", header.resolution_unit(),
                       " is not 1 (none), 2 (inch) or 3 (centimetre)"));
  }
  STACKPROC_ASSIGN_OR_RETURN(
      metadata.dims,
      HeaderDimensions(metadata.description, header.dimensions(), header.shape().depth()));
  return metadata;
}

template absl::StatusOr<core::StackMetadata> MetadataFromProto(const v1::StreamHeader&);
template absl::StatusOr<core::StackMetadata> MetadataFromProto(const v1::ResultHeader&);

}  // namespace stackproc::convert
