// RunPreview and the sweep grammar; the montage is in montage.cc.
#include "core/process/preview.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/base/status_macros.h"
#include "core/io/formats.h"
#include "core/io/plane_map.h"
#include "core/io/stack_io.h"
#include "core/pipeline/operation_registry.h"
#include "core/pipeline/pipeline.h"
#include "core/process/shards.h"

namespace stackproc::core {
namespace {

// A preview variant with no operations: the slices as the input holds them.
constexpr char kAsRead[] = "(as read)";

// One operation's text, its swept keys' values gathered: "clahe:clip=1,2,4,tiles=8" gives
// clahe with clip in {1, 2, 4} and tiles in {8}.
struct SweptOp {
  std::string name;
  std::vector<std::pair<std::string, std::vector<std::string>>> params;
};

absl::StatusOr<SweptOp> ParseSwept(const std::string& text) {
  // The sweep's values join their key ("clip=1|2|4"), so that the one grammar parses the rest.
  std::vector<std::string> items;
  const size_t colon = text.find(':');
  if (colon != std::string::npos) {
    for (absl::string_view item : absl::StrSplit(text.substr(colon + 1), ',', absl::SkipEmpty())) {
      if (item.find('=') == absl::string_view::npos && !items.empty()) {
        absl::StrAppend(&items.back(), "|", absl::StripAsciiWhitespace(item));
      } else {
        items.emplace_back(item);
      }
    }
  }
  STACKPROC_ASSIGN_OR_RETURN(
      OpSpec spec, ParseOpSpec(absl::StrCat(text.substr(0, colon), items.empty() ? "" : ":",
                                            absl::StrJoin(items, ","))));
  SweptOp op{spec.name, {}};
  for (auto& [key, value] : spec.params) {
    op.params.emplace_back(key, absl::StrSplit(value, '|'));
  }
  return op;
}

// InvalidArgument when a step reads an image of whole slices (flatfield:flat=): a region has
// no part of it to take.
absl::Status CheckRegionTakes(const PreviewRequest& request) {
  for (const PreviewVariant& variant : request.variants) {
    for (const OpSpec& op : variant.ops) {
      const OperationDef* def = OperationRegistry::Builtin().Find(op.name);
      for (const auto& [key, value] : op.params) {
        const std::string name = key.substr(key.find('.') + 1);  // c1.flat: flat
        for (const ParamSpec& p : def != nullptr ? def->info.params : std::vector<ParamSpec>{}) {
          if (p.name == name && p.type == ParamType::kFile) {
            return absl::InvalidArgumentError(
                absl::StrCat(FormatOpSpec(op), ": ", key,
                             "= is an image of whole slices; preview whole "
                             "slices (no region) with it"));
          }
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<PreviewVariant>> ExpandSweep(const std::vector<std::string>& texts) {
  std::vector<PreviewVariant> variants(1);
  for (const std::string& text : texts) {
    STACKPROC_ASSIGN_OR_RETURN(SweptOp op, ParseSwept(text));
    // Each variant so far, with each combination of this operation's values.
    std::vector<PreviewVariant> partial = variants;
    for (auto& v : partial) v.ops.push_back(OpSpec{op.name, {}});
    for (const auto& [key, values] : op.params) {
      std::vector<PreviewVariant> next;
      for (const PreviewVariant& v : partial) {
        for (const std::string& value : values) {
          PreviewVariant w = v;
          w.ops.back().params.emplace_back(key, value);
          if (values.size() > 1) {
            absl::StrAppend(&w.label, w.label.empty() ? "" : " ", key, "=", value);
          }
          next.push_back(std::move(w));
        }
      }
      if (next.size() > kMaxPreviewVariants) {
        return absl::InvalidArgumentError(
            absl::StrCat("a preview shows at most ", kMaxPreviewVariants,
                         " variants side by side; ", text, " makes ", next.size()));
      }
      partial = std::move(next);
    }
    variants = std::move(partial);
  }
  for (PreviewVariant& v : variants) {
    if (v.label.empty()) v.label = v.ops.empty() ? kAsRead : FormatOpSpecs(v.ops);
  }
  return variants;
}

absl::StatusOr<Region> ParseRegion(const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(text, ',');
  Region r;
  if (parts.size() != 4 || !absl::SimpleAtoi(parts[0], &r.x) || !absl::SimpleAtoi(parts[1], &r.y) ||
      !absl::SimpleAtoi(parts[2], &r.width) || !absl::SimpleAtoi(parts[3], &r.height) || r.x < 0 ||
      r.y < 0 || r.width < 1 || r.height < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("region '", text, "': X,Y,WIDTH,HEIGHT in pixels, e.g. 512,512,256,256"));
  }
  return r;
}

absl::StatusOr<PreviewRequest> PreviewRequestOf(const std::string& input,
                                                const std::vector<std::string>& ops,
                                                const std::string& z, const std::string& count,
                                                const std::string& roi,
                                                const std::string& channels) {
  PreviewRequest request;
  request.input = input;
  if (!channels.empty()) {
    STACKPROC_ASSIGN_OR_RETURN(request.channels, ParseChannelList(channels));
  }
  if (input.empty()) return absl::InvalidArgumentError("preview needs an INPUT stack");
  STACKPROC_ASSIGN_OR_RETURN(request.variants, ExpandSweep(ops));
  request.title = ops.empty() ? kAsRead : absl::StrJoin(ops, " -> ");
  if (!z.empty() && !count.empty()) {
    return absl::InvalidArgumentError("-z Z,Z,... or --slices K, not both");
  }
  for (absl::string_view item : absl::StrSplit(z, ',', absl::SkipEmpty())) {
    int64_t value = 0;
    if (!absl::SimpleAtoi(item, &value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("-z '", z, "': slice numbers, e.g. -z 100,2000"));
    }
    request.slices.push_back(value);
  }
  if (!count.empty() && (!absl::SimpleAtoi(count, &request.count) || request.count < 1 ||
                         request.count > kMaxPreviewSlices)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--slices takes 1 to ", kMaxPreviewSlices, ", not '", count, "'"));
  }
  if (!roi.empty()) {
    STACKPROC_ASSIGN_OR_RETURN(request.region, ParseRegion(roi));
  }
  return request;
}

const std::vector<std::string>& PreviewFlags() {
  static const std::vector<std::string> kFlags = {
      "op", "o", "z", "slices", "roi", "format", "max-side", "overwrite", "channels"};
  return kFlags;
}

absl::Status WritePreviewFile(const std::string& path, absl::string_view bytes, bool overwrite) {
  STACKPROC_ASSIGN_OR_RETURN(OutputTarget target, OutputTarget::ForPath(path));
  struct stat st;
  if (!overwrite && ::fstatat(target.dir(), target.name().c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    return absl::AlreadyExistsError(absl::StrCat(path, " exists (--overwrite replaces it)"));
  }
  return WriteFileAt(target.dir(), target.name(), bytes.data(), bytes.size(), path);
}

std::string RawPreviewBytes(const Preview& preview) {
  std::string bytes;
  for (const Stack& after : preview.after) {
    bytes.append(reinterpret_cast<const char*>(after.slice_data(0)), after.size_bytes());
  }
  return bytes;
}

std::string RawPreviewLayout(const Preview& preview) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < preview.after.size(); ++i) {
    const Stack& a = preview.after[i];
    parts.push_back(absl::StrCat(preview.labels[i], ": ", a.depth(), "x", a.shape().height, "x",
                                 a.shape().width, " ", PixelTypeName(a.pixel_type())));
  }
  return absl::StrCat("slices (", absl::StrJoin(preview.where, ", "), ")",
                      ", each variant's in turn, little-endian: ", absl::StrJoin(parts, "; "));
}

namespace {

// The slices (planes) a preview shows: those asked for, or `count` z-slices evenly spaced, each
// in the middle of its share of the stack; of a stack of channels, each such z-slice of every
// channel at the first time point, channel by channel. InvalidArgument for too many or one
// outside the stack.
absl::StatusOr<std::vector<int64_t>> SlicesOf(const PreviewRequest& request, int64_t depth,
                                              const Dimensions& dims) {
  std::vector<int64_t> z = request.slices;
  if (z.empty()) {  // evenly spaced, each in the middle of its share of the stack
    const int64_t slices = dims.Slices(depth);
    const int64_t most = std::max<int64_t>(kMaxPreviewSlices / dims.channels, 1);
    const int64_t count = std::clamp<int64_t>(request.count, 1, std::min(slices, most));
    for (int64_t i = 0; i < count; ++i) {
      for (int64_t c = 0; c < std::min<int64_t>(dims.channels, kMaxPreviewSlices); ++c) {
        z.push_back(dims.PlaneOf({0, c, (2 * i + 1) * slices / (2 * count)}, depth));
      }
    }
  }
  if (z.size() > static_cast<size_t>(kMaxPreviewSlices)) {
    return absl::InvalidArgumentError(
        absl::StrCat("a preview shows at most ", kMaxPreviewSlices, " slices"));
  }
  for (int64_t s : z) {
    if (s < 0 || s >= depth) {
      return absl::InvalidArgumentError(
          absl::StrCat("slice ", s, " is outside the stack (slices 0 to ", depth - 1, ")"));
    }
  }
  return z;
}

// What a region processed alone differs in from the whole slice's.
std::string RegionNote(const PreviewRequest& request, const Region& region) {
  std::set<std::string> whole_slice;  // steps whose result depends on the whole slice
  for (const PreviewVariant& variant : request.variants) {
    for (const OpSpec& op : variant.ops) {
      const OperationDef* def = OperationRegistry::Builtin().Find(op.name);
      if (def != nullptr && def->info.whole_slice) whole_slice.insert(op.name);
    }
  }
  return absl::StrCat(
      "region ", region.x, ",", region.y, " ", region.width, "x", region.height,
      " processed alone: differs from the whole slice's within a filter's reach of its edges",
      whole_slice.empty() ? ""
                          : absl::StrCat(" (", absl::StrJoin(whole_slice, ", "),
                                         ": throughout, its own tiles or statistics)"));
}

}  // namespace

// A pipeline with z-neighbourhoods on the slices `z` of `source`: each made from the region
// of the planes around it that its steps reach (read here; their own planes mirrored only at
// the stack's volumes' ends, as in a run), as a z-range of the stack makes it.
absl::StatusOr<Stack> PreviewAround(SliceSource& source, Pipeline& pipeline,
                                    const std::vector<int64_t>& z, const Region& region) {
  const StackInfo& info = source.info();
  const int64_t depth = info.shape.depth;
  if (pipeline.NeedsWholeStack()) {
    return absl::InvalidArgumentError(
        absl::StrCat(pipeline.ToString(),
                     ": a preview runs 3-D steps or a whole-stack step, "
                     "not both: preview them apart"));
  }
  const int64_t reach = pipeline.HaloOf(0, pipeline.size());
  const StackShape region_shape{1, region.height, region.width};
  STACKPROC_ASSIGN_OR_RETURN(size_t plane_bytes, StackBytes(region_shape, info.type));
  if (static_cast<uint64_t>(2 * reach + 1) * plane_bytes > kMaxPreviewBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat(pipeline.ToString(), " reaches ", reach, " planes on each side: a preview of ",
                     region.width, "x", region.height, " would hold more than ",
                     kMaxPreviewBytes >> 20, " MiB of them: ask for a region"));
  }
  STACKPROC_ASSIGN_OR_RETURN(Stack whole,
                             Stack::Allocate({1, info.shape.height, info.shape.width}, info.type));
  const cv::Rect rect(static_cast<int>(region.x), static_cast<int>(region.y),
                      static_cast<int>(region.width), static_cast<int>(region.height));
  Stack made;
  for (size_t i = 0; i < z.size(); ++i) {
    const ZRange around{std::max<int64_t>(0, z[i] - reach), std::min(depth, z[i] + reach + 1)};
    STACKPROC_ASSIGN_OR_RETURN(
        Stack planes, Stack::Allocate({around.size(), region.height, region.width}, info.type));
    for (int64_t p = around.begin; p < around.end; ++p) {
      STACKPROC_RETURN_IF_ERROR(source.Read(p, whole.slice_data(0)));
      whole.Slice(0)(rect).copyTo(planes.Slice(p - around.begin));
    }
    planes.metadata() = info.metadata;
    planes.metadata().dims = info.metadata.dims.Range(around.begin, around.size(), depth);
    auto stack = std::make_shared<StackSource>(std::move(planes), /*writable=*/false);
    STACKPROC_ASSIGN_OR_RETURN(
        std::unique_ptr<ZRangeSource> one,
        ZRangeSource::Create(stack, {z[i] - around.begin, z[i] - around.begin + 1}, &pipeline));
    StackSink sink;
    STACKPROC_RETURN_IF_ERROR(Run(*one, pipeline, sink));
    Stack result = sink.Take();
    if (made.empty()) {
      STACKPROC_ASSIGN_OR_RETURN(
          made, Stack::Allocate(
                    {static_cast<int64_t>(z.size()), result.shape().height, result.shape().width},
                    result.pixel_type()));
      made.metadata() = result.metadata();
      made.metadata().dims = info.metadata.dims.Picked(z, depth);
    }
    std::memcpy(made.slice_data(static_cast<int64_t>(i)), result.slice_data(0),
                result.slice_bytes());
  }
  return made;
}

absl::StatusOr<Preview> RunPreview(const Files& files, const PreviewRequest& request,
                                   const StackLimits& limits) {
  if (request.variants.size() > kMaxPreviewVariants) {
    return absl::InvalidArgumentError(
        absl::StrCat("a preview has at most ", kMaxPreviewVariants, " variants"));
  }
  STACKPROC_ASSIGN_OR_RETURN(std::shared_ptr<SliceSource> source,
                             OpenInput(files, request.input, limits));
  if (!request.channels.empty()) {
    STACKPROC_ASSIGN_OR_RETURN(source, PlaneMapSource::Channels(source, request.channels));
  }
  const StackInfo& info = source->info();
  const int64_t depth = info.shape.depth;
  STACKPROC_ASSIGN_OR_RETURN(const std::vector<int64_t> z,
                             SlicesOf(request, depth, info.metadata.dims));
  Region region = request.region.value_or(Region{0, 0, info.shape.width, info.shape.height});
  if (region.x + region.width > info.shape.width || region.y + region.height > info.shape.height) {
    return absl::InvalidArgumentError(
        absl::StrCat("region ", region.x, ",", region.y, ",", region.width, ",", region.height,
                     " is outside the ", info.shape.width, "x", info.shape.height, " slices"));
  }

  const StackShape sample{static_cast<int64_t>(z.size()), region.height, region.width};
  STACKPROC_ASSIGN_OR_RETURN(size_t sample_bytes, StackBytes(sample, info.type));
  const uint64_t held = uint64_t{sample_bytes} * (request.variants.size() + 1);
  if (held > kMaxPreviewBytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "a preview of ", z.size(), " slices of ", region.width, "x", region.height, " and ",
        request.variants.size(), " variants holds ", held >> 20, " MiB, more than the ",
        kMaxPreviewBytes >> 20, " MiB a preview may: ask for fewer slices or a region"));
  }

  // Only the chosen slices are read (a TIFF's pages, a store's chunks that hold them).
  Preview preview;
  preview.input = request.input;
  preview.z = z;
  for (int64_t plane : z) {
    PlaneIndex at = info.metadata.dims.Of(plane, depth);
    if (!request.channels.empty()) at.c = request.channels[static_cast<size_t>(at.c)];
    preview.at.push_back(at);
    preview.where.push_back(
        info.metadata.dims.single() && request.channels.empty()
            ? absl::StrCat("z=", plane)
            : absl::StrCat(info.metadata.dims.times > 1 ? absl::StrCat("t=", at.t, " ") : "",
                           "c=", at.c, " z=", at.z));
  }
  preview.pipeline = !request.title.empty()     ? request.title
                     : request.variants.empty() ? "the slices"
                                                : FormatOpSpecs(request.variants.front().ops);
  STACKPROC_ASSIGN_OR_RETURN(preview.before, Stack::Allocate(sample, info.type));
  preview.before.metadata() = info.metadata;
  preview.before.metadata().dims = info.metadata.dims.Picked(z, depth);
  STACKPROC_ASSIGN_OR_RETURN(Stack whole,
                             Stack::Allocate({1, info.shape.height, info.shape.width}, info.type));
  for (size_t i = 0; i < z.size(); ++i) {
    STACKPROC_RETURN_IF_ERROR(source->Read(z[i], whole.slice_data(0)));
    whole
        .Slice(0)(cv::Rect(static_cast<int>(region.x), static_cast<int>(region.y),
                           static_cast<int>(region.width), static_cast<int>(region.height)))
        .copyTo(preview.before.Slice(static_cast<int64_t>(i)));
  }

  if (request.region) {
    STACKPROC_RETURN_IF_ERROR(CheckRegionTakes(request));
    preview.notes.push_back(RegionNote(request, region));
  }
  for (const PreviewVariant& variant : request.variants) {
    STACKPROC_ASSIGN_OR_RETURN(
        Pipeline pipeline,
        Pipeline::Create(variant.ops, OperationRegistry::Builtin(), ImagesIn(files, limits)));
    if (pipeline.NeedsWholeStack() &&
        std::none_of(preview.notes.begin(), preview.notes.end(),
                     [](const std::string& n) { return n.starts_with("whole-stack"); })) {
      preview.notes.push_back(absl::StrCat("whole-stack statistics from the ", z.size(),
                                           " previewed slices, not the whole stack"));
    }
    STACKPROC_RETURN_IF_ERROR(pipeline.Bind(info));
    if (pipeline.HaloOf(0, pipeline.size()) > 0) {
      STACKPROC_ASSIGN_OR_RETURN(Stack result, PreviewAround(*source, pipeline, z, region));
      preview.after.push_back(std::move(result));
      preview.labels.push_back(variant.label);
      continue;
    }
    STACKPROC_ASSIGN_OR_RETURN(Stack copy, Stack::Allocate(sample, info.type));
    std::memcpy(copy.slice_data(0), preview.before.slice_data(0), preview.before.size_bytes());
    copy.metadata() = preview.before.metadata();
    STACKPROC_ASSIGN_OR_RETURN(Stack result, Execute(std::move(copy), pipeline));
    preview.after.push_back(std::move(result));
    preview.labels.push_back(variant.label);
  }
  return preview;
}

}  // namespace stackproc::core
