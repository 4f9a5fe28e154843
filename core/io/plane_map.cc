#include "core/io/plane_map.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace stackproc::core {
namespace {

absl::Status RefuseFed(const SliceSource& source, absl::string_view what) {
  if (!source.traits().fed) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("a stack sent plane by plane cannot be ", what,
                                                 ": its planes come in their own order"));
}

}  // namespace

SourceTraits PlaneMapSource::traits() const {
  SourceTraits traits = source_->traits();
  traits.chunk_slices = 1;  // its planes are read out of the source's order
  return traits;
}

absl::StatusOr<std::shared_ptr<SliceSource>> PlaneMapSource::InZctOrder(
    std::shared_ptr<SliceSource> source) {
  const StackInfo& in = source->info();
  const Dimensions& dims = in.metadata.dims;
  if (dims.single() || dims.order == "ZCT") return source;
  STACKPROC_RETURN_IF_ERROR(RefuseFed(*source, "put in t, c, z order"));
  StackInfo info = in;
  info.metadata.dims.order = "ZCT";
  std::vector<int64_t> planes(static_cast<size_t>(in.shape.depth));
  for (int64_t p = 0; p < in.shape.depth; ++p) {
    planes[static_cast<size_t>(p)] =
        dims.PlaneOf(info.metadata.dims.Of(p, in.shape.depth), in.shape.depth);
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
