#include "core/io/plane_map.h"

#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/stack/voxel_size.h"

namespace stackproc::core {
namespace {

absl::Status RefuseFed(const SliceSource& source, absl::string_view what) {
  if (!source.traits().fed) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("a stack sent plane by plane cannot be ", what,
                                                 ": its planes come in their own order"));
}

}  // namespace

const StackInfo& PlaneMapSource::UnmappedInfo(const SliceSource& source) {
  const SliceSource* inner = &source;
  while (const auto* map = dynamic_cast<const PlaneMapSource*>(inner)) inner = map->source_.get();
  return inner->info();
}

SourceTraits PlaneMapSource::traits() const {
  // A store's z-chunks stay runs of planes: channels are chosen whole, and a store's planes
  // are in t, c, z order already (InZctOrder reorders only files, read plane by plane).
  return source_->traits();
}

absl::StatusOr<std::shared_ptr<SliceSource>> PlaneMapSource::InZctOrder(
    std::shared_ptr<SliceSource> source) {
  const StackInfo& in = source->info();
  const Dimensions& dims = in.metadata.dims;
  if (dims.single() || dims.order == "ZCT") return source;
  STACKPROC_RETURN_IF_ERROR(RefuseFed(*source, "put in t, c, z order"));
  StackInfo info = in;
  Dimensions zct = dims;
  zct.order = "ZCT";
  if (ClassifyDescription(in.metadata.description) == DescriptionKind::kImageJ) {
    // ImageJ's hyperstacks are CZT: the planes in t, c, z order are OME-XML's XYZCT.
    info.metadata = MetadataOfVoxelSize(VoxelSizeOf(in.metadata), in.shape, in.type, zct);
  } else {
    std::vector<int64_t> all(static_cast<size_t>(dims.channels));
    std::iota(all.begin(), all.end(), 0);
    info.metadata = SelectChannels(in.metadata, all, in.shape.depth);  // plane maps dropped
    info.metadata.dims = zct;
    info.metadata = UpdateMetadata(info.metadata, in.shape, in.type, in.type, {});
  }
  std::vector<int64_t> planes(static_cast<size_t>(in.shape.depth));
  for (int64_t p = 0; p < in.shape.depth; ++p) {
    planes[static_cast<size_t>(p)] = dims.PlaneOf(zct.Of(p, in.shape.depth), in.shape.depth);
  }
  return std::shared_ptr<SliceSource>(
      new PlaneMapSource(std::move(source), std::move(planes), std::move(info)));
}

absl::StatusOr<std::shared_ptr<SliceSource>> PlaneMapSource::Channels(
    std::shared_ptr<SliceSource> source, const std::vector<int64_t>& channels) {
  const StackInfo& in = source->info();
  const Dimensions& dims = in.metadata.dims;
  std::vector<bool> seen(static_cast<size_t>(dims.channels));
  for (int64_t c : channels) {
    if (c < 0 || c >= dims.channels || seen[static_cast<size_t>(c)]) {
      return absl::InvalidArgumentError(
          absl::StrCat("--channels names channel ", c, c >= 0 && c < dims.channels ? " twice" : "",
                       "; the stack has ",
                       dims.channels == 1
                           ? "one channel (0)"
                           : absl::StrCat(dims.channels, " channels (0-", dims.channels - 1, ")")));
    }
    seen[static_cast<size_t>(c)] = true;
  }
  if (channels.empty()) return absl::InvalidArgumentError("--channels names no channel");
  STACKPROC_RETURN_IF_ERROR(RefuseFed(*source, "cut to some channels"));
  StackInfo info = in;
  info.shape.depth = in.shape.depth / dims.channels * std::ssize(channels);
  info.metadata = SelectChannels(in.metadata, channels, info.shape.depth);
  // The description states the chosen channels' counts (a streamed job sends it on).
  info.metadata = UpdateMetadata(info.metadata, info.shape, info.type, info.type, {});
  std::vector<int64_t> planes(static_cast<size_t>(info.shape.depth));
  for (int64_t p = 0; p < info.shape.depth; ++p) {
    PlaneIndex at = info.metadata.dims.Of(p, info.shape.depth);
    at.c = channels[static_cast<size_t>(at.c)];
    planes[static_cast<size_t>(p)] = dims.PlaneOf(at, in.shape.depth);
  }
  return std::shared_ptr<SliceSource>(
      new PlaneMapSource(std::move(source), std::move(planes), std::move(info)));
}

}  // namespace stackproc::core
