#include "core/pipeline/pipeline.h"

#include <algorithm>
#include <numeric>
#include <opencv2/core.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/base/status_macros.h"
#include "core/pipeline/operation_registry.h"
#include "core/stack/stack.h"

namespace stackproc::core {

namespace {

// The key channels= and the prefix of cN.key=.
constexpr absl::string_view kChannelsKey = "channels";

// channels=0+2: the channel numbers, ascending.
absl::StatusOr<std::vector<int64_t>> ParseChannels(absl::string_view text) {
  STACKPROC_ASSIGN_OR_RETURN(std::vector<int64_t> channels, ParseChannelList(text));
  std::sort(channels.begin(), channels.end());
  return channels;
}

// Splits `spec` into the step's form without channel keys and its per-channel forms: the step's
// parameters with the channel's own in their place, less those that mean nothing beside the
// channel's own (ParamSpec::unused_with: sigma beside c1.flat). `info`: the op's, when known.
absl::Status SplitChannelKeys(const OpSpec& spec, const OperationInfo* info, Pipeline::Step& step) {
  OpSpec base{spec.name, {}};
  std::map<int64_t, std::vector<std::pair<std::string, std::string>>> own;
  for (const auto& [key, value] : spec.params) {
    int64_t c = 0;
    const size_t dot = key.find('.');
    if (key == kChannelsKey) {
      STACKPROC_ASSIGN_OR_RETURN(step.only, ParseChannels(value));
    } else if (dot != std::string::npos && key[0] == 'c' &&
               absl::SimpleAtoi(absl::string_view(key).substr(1, dot - 1), &c) && c >= 0) {
      own[c].emplace_back(key.substr(dot + 1), value);
    } else if (dot != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", key, "' is not a channel's parameter (form: cN.key=value, N a channel from 0)"));
    } else {
      base.params.emplace_back(key, value);
    }
  }
  for (auto& [c, overrides] : own) {
    OpSpec mine = base;
    auto unused_beside = [&](const std::string& name, const std::string& given) {
      return info != nullptr &&
             std::any_of(info->params.begin(), info->params.end(), [&](const ParamSpec& p) {
               return p.name == name && p.unused_with == given;
             });
    };
    for (auto& [key, value] : overrides) {
      std::erase_if(mine.params,
                    [&, &key = key](const auto& p) { return unused_beside(p.first, key); });
      auto it = std::find_if(mine.params.begin(), mine.params.end(),
                             [&key = key](const auto& p) { return p.first == key; });
      if (it != mine.params.end()) {
        it->second = value;
      } else {
        mine.params.emplace_back(key, value);
      }
    }
    step.own.emplace(c, std::move(mine));
  }
  step.base = std::move(base);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Pipeline> Pipeline::Create(const std::vector<OpSpec>& specs,
                                          const OperationRegistry& registry, ImageReader images) {
  Pipeline pipeline;
  pipeline.registry_ = &registry;
  pipeline.images_ = std::move(images);
  for (size_t i = 0; i < specs.size(); ++i) {
    Step step;
    step.spec = FormatOpSpec(specs[i]);
    auto fail = [&](const absl::Status& status) {
      return absl::Status(status.code(), absl::StrCat("operation ", i + 1, " (", step.spec,
                                                      "): ", status.message()));
    };
    const OperationDef* def = registry.Find(specs[i].name);
    if (absl::Status s = SplitChannelKeys(specs[i], def != nullptr ? &def->info : nullptr, step);
        !s.ok()) {
      return fail(s);
    }
    absl::StatusOr<std::unique_ptr<SliceOp>> op = registry.Create(*step.base, pipeline.images_);
    if (!op.ok()) return fail(op.status());
    step.op = *std::move(op);
    for (const auto& [c, spec] : step.own) {  // each channel's parameters are checked now
      if (absl::Status s = registry.Create(spec, pipeline.images_).status(); !s.ok()) {
        return fail(absl::Status(s.code(), absl::StrCat("channel ", c, ": ", s.message())));
      }
    }
    pipeline.steps_.push_back(std::move(step));
  }
  return pipeline;
}

absl::StatusOr<Pipeline> Pipeline::Parse(const std::vector<std::string>& texts,
                                         const OperationRegistry& registry) {
  STACKPROC_ASSIGN_OR_RETURN(std::vector<OpSpec> specs, ParseOpSpecs(texts));
  return Create(specs, registry);
}

std::vector<std::string> Pipeline::Resolved() const {
  std::vector<std::string> specs;
  for (const Step& step : steps_) {
    absl::StatusOr<OpSpec> given = ParseOpSpec(step.spec);
    absl::StatusOr<OpSpec> complete =
        step.base ? registry_->Complete(*step.base) : absl::StatusOr<OpSpec>(given.status());
    if (!given.ok() || !complete.ok()) {  // an op added configured: as it was named
      specs.push_back(step.spec);
      continue;
    }
    for (const auto& [key, value] : given->params) {
      if (key == kChannelsKey || key.find('.') != std::string::npos) {
        complete->params.emplace_back(key, value);
      }
    }
    specs.push_back(FormatOpSpec(*complete));
  }
  return specs;
}

void Pipeline::Add(std::string spec, std::unique_ptr<SliceOp> op) {
  Step step;
  step.spec = std::move(spec);
  step.op = std::move(op);
  steps_.push_back(std::move(step));
}

absl::StatusOr<std::vector<SliceFormat>> Pipeline::Plan(const SliceFormat& input) const {
  std::vector<SliceFormat> formats{input};
  for (size_t i = 0; i < steps_.size(); ++i) {
    const Step& step = steps_[i];
    const SliceFormat& in = formats.back();
    auto fail = [&](const absl::Status& status) {
      return absl::Status(
          status.code(),
          absl::StrCat("operation ", i + 1, " (", step.spec, ") on ", in.width, "x", in.height, " ",
                       PixelTypeName(in.type), " slices: ", status.message()));
    };
    absl::StatusOr<SliceFormat> out = step.op->OutputFormat(in);
    if (!out.ok()) return fail(out.status());
    // Every plane of a stack has one format: what a step does per channel must keep it.
    if (step.only && !(*out == in)) {
      return fail(absl::InvalidArgumentError(
          "a step limited to channels must keep the slices' size and type (the other channels "
          "pass through unchanged)"));
    }
    for (const auto& [c, spec] : step.own) {
      absl::StatusOr<std::unique_ptr<SliceOp>> mine = registry_->Create(spec, images_);
      absl::StatusOr<SliceFormat> theirs =
          mine.ok() ? (*mine)->OutputFormat(in) : absl::StatusOr<SliceFormat>(mine.status());
      if (!theirs.ok()) return fail(theirs.status());
      if (!(*theirs == *out)) {
        return fail(absl::InvalidArgumentError(
            absl::StrCat("channel ", c,
                         "'s parameters make slices of another size or type than the other "
                         "channels'; every plane of a stack has one")));
      }
    }
    formats.push_back(*out);
  }
  return formats;
}

size_t Pipeline::Groups(const Step& step) const {
  const bool per_time = step.op->NeedsWholeStack() && step.op->StatisticsPerTimePoint();
  return static_cast<size_t>(per_time ? dims_.times * dims_.channels : dims_.channels);
}

size_t Pipeline::GroupOf(const Step& step, int64_t plane) const {
  const PlaneIndex at = dims_.Of(plane, planes_);
  const bool per_time = step.op->NeedsWholeStack() && step.op->StatisticsPerTimePoint();
  return static_cast<size_t>(per_time ? at.t * dims_.channels + at.c : at.c);
}

absl::Status Pipeline::Bind(const StackInfo& input) {
  const Dimensions& dims = input.metadata.dims;
  STACKPROC_RETURN_IF_ERROR(dims.Check(input.shape.depth));
  dims_ = dims;
  planes_ = input.shape.depth;
  STACKPROC_RETURN_IF_ERROR(MakeGroups());
  // Each step's ops get the voxel size of their input: the stack's, as the steps before
  // resampled or turned it.
  VoxelSize voxel = VoxelSizeOf(input.metadata);
  SliceFormat format = SliceFormat::Of(input.shape, input.type);
  for (size_t i = 0; i < steps_.size(); ++i) {
    Step& step = steps_[i];
    std::vector<SliceOp*> ops = {step.op.get()};
    for (const std::unique_ptr<SliceOp>& op : step.owned) ops.push_back(op.get());
    for (SliceOp* op : ops) {
      if (absl::Status s = op->Calibrate(voxel); !s.ok()) {
        return absl::Status(s.code(),
                            absl::StrCat("operation ", i + 1, " (", step.spec, "): ", s.message()));
      }
    }
    PixelGeometry geometry;
    step.op->UpdateGeometry(format, geometry);
    voxel = Resampled(voxel, geometry);
    absl::StatusOr<SliceFormat> out = step.op->OutputFormat(format);
    if (!out.ok()) break;  // Plan says why
    format = *out;
  }
  return absl::OkStatus();
}

absl::Status Pipeline::MakeGroups() {
  const Dimensions& dims = dims_;
  for (size_t i = 0; i < steps_.size(); ++i) {
    Step& step = steps_[i];
    step.by_group.clear();
    step.owned.clear();
    std::vector<int64_t> named = step.only.value_or(std::vector<int64_t>{});
    for (const auto& [c, spec] : step.own) named.push_back(c);
    for (int64_t c : named) {
      if (c >= dims.channels) {
        return absl::InvalidArgumentError(absl::StrCat(
            "operation ", i + 1, " (", step.spec, ") names channel ", c, "; the stack has ",
            dims.channels == 1
                ? "one channel (0)"
                : absl::StrCat(dims.channels, " channels (0-", dims.channels - 1, ")")));
      }
    }
    const size_t groups = Groups(step);
    const bool whole = step.op->NeedsWholeStack();
    if ((groups == 1 || !whole) && !step.only && step.own.empty()) continue;  // one op for all
    for (size_t g = 0; g < groups; ++g) {
      const int64_t c = static_cast<int64_t>(g) % dims.channels;
      if (step.only && !std::binary_search(step.only->begin(), step.only->end(), c)) {
        step.by_group.push_back(nullptr);
      } else if (whole || step.own.count(c) != 0) {
        if (!step.base || registry_ == nullptr) {
          return absl::InvalidArgumentError(absl::StrCat("operation ", i + 1, " (", step.spec,
                                                         ") cannot be made once per channel"));
        }
        auto own = step.own.find(c);
        STACKPROC_ASSIGN_OR_RETURN(
            std::unique_ptr<SliceOp> op,
            registry_->Create(own != step.own.end() ? own->second : *step.base, images_));
        step.by_group.push_back(op.get());
        step.owned.push_back(std::move(op));
      } else {
        step.by_group.push_back(step.op.get());
      }
    }
  }
  return absl::OkStatus();
}

SliceOp* Pipeline::For(size_t i, int64_t plane) const {
  const Step& step = steps_[i];
  if (step.by_group.empty()) return step.op.get();
  return step.by_group[GroupOf(step, plane)];
}

absl::Status Pipeline::PrepareForStack(size_t i, const Stack& input) {
  Step& step = steps_[i];
  if (step.by_group.empty()) {
    std::vector<int64_t> all(static_cast<size_t>(input.depth()));
    std::iota(all.begin(), all.end(), 0);
    return step.op->PrepareForStack(input, all);
  }
  std::vector<std::vector<int64_t>> planes(step.by_group.size());
  for (int64_t z = 0; z < input.depth(); ++z) planes[GroupOf(step, z)].push_back(z);
  for (size_t g = 0; g < planes.size(); ++g) {
    // A group with no planes here (a preview of some channels' slices) runs on none.
    if (step.by_group[g] != nullptr && !planes[g].empty()) {
      STACKPROC_RETURN_IF_ERROR(step.by_group[g]->PrepareForStack(input, planes[g]));
    }
  }
  return absl::OkStatus();
}

absl::Status Pipeline::PrepareFromStats(size_t i, const SliceFormat& format,
                                        const std::vector<uint64_t>& stats) {
  Step& step = steps_[i];
  if (step.by_group.empty()) return step.op->PrepareFromStats(format, stats);
  const size_t groups = step.by_group.size();
  const size_t each = JoinStats(i, format, {}).size() / groups;
  if (stats.size() != groups * each) {
    return absl::InvalidArgumentError(
        absl::StrCat(step.spec, ": ", stats.size(), " statistics, where this stack's ", groups,
                     " groups of planes (channels, or channels and time points) have ",
                     groups * each, ": gathered from another stack or pipeline"));
  }
  for (size_t g = 0; g < groups; ++g) {
    if (step.by_group[g] == nullptr) continue;
    const auto from = stats.begin() + static_cast<ptrdiff_t>(g * each);
    STACKPROC_RETURN_IF_ERROR(step.by_group[g]->PrepareFromStats(
        format, std::vector<uint64_t>(from, from + static_cast<ptrdiff_t>(each))));
  }
  return absl::OkStatus();
}

bool Pipeline::AddStats(size_t i, int64_t plane, const cv::Mat& slice,
                        std::vector<std::vector<uint64_t>>& groups) const {
  const Step& step = steps_[i];
  groups.resize(step.by_group.empty() ? 1 : step.by_group.size());
  const size_t g = step.by_group.empty() ? 0 : GroupOf(step, plane);
  SliceOp* op = step.by_group.empty() ? step.op.get() : step.by_group[g];
  return op == nullptr || op->AddStats(slice, groups[g]);
}

std::vector<uint64_t> Pipeline::JoinStats(size_t i, const SliceFormat& format,
                                          std::vector<std::vector<uint64_t>> groups) const {
  const Step& step = steps_[i];
  groups.resize(step.by_group.empty() ? 1 : step.by_group.size());
  std::vector<uint64_t> size;  // what one group's statistics are: a probe's, zeroed
  step.op->AddStats(cv::Mat(format.height, format.width, CvType(format.type), cv::Scalar(0)), size);
  std::vector<uint64_t> joined;
  for (std::vector<uint64_t>& group : groups) {
    if (group.empty()) group.assign(size.size(), 0);
    joined.insert(joined.end(), group.begin(), group.end());
  }
  return joined;
}

PixelGeometry Pipeline::Geometry(const SliceFormat& input) const {
  PixelGeometry geometry;
  SliceFormat format = input;
  for (const Step& step : steps_) {
    step.op->UpdateGeometry(format, geometry);
    absl::StatusOr<SliceFormat> out = step.op->OutputFormat(format);
    if (!out.ok()) break;
    format = *out;
  }
  return geometry;
}

int64_t Pipeline::HaloOf(size_t i) const {
  const Step& step = steps_[i];
  int halo = step.op->HaloPlanes();
  for (const SliceOp* op : step.by_group) {
    if (op != nullptr) halo = std::max(halo, op->HaloPlanes());
  }
  return halo * dims_.ZStride();
}

int64_t Pipeline::HaloOf(size_t first, size_t last) const {
  int64_t halo = 0;
  for (size_t i = first; i < last; ++i) halo += HaloOf(i);
  return halo;
}

std::vector<int64_t> Pipeline::Halos(size_t first, size_t last) const {
  std::vector<int64_t> halos;
  for (size_t i = first; i < last; ++i) halos.push_back(HaloOf(i));
  return halos;
}

int64_t Pipeline::Neighbour(int64_t plane, int64_t dz) const {
  const int64_t z = dims_.Of(plane, planes_).z;
  const int64_t to = cv::borderInterpolate(
      static_cast<int>(z + dz), static_cast<int>(dims_.Slices(planes_)), cv::BORDER_REFLECT_101);
  return plane + (to - z) * dims_.ZStride();
}

absl::Status Pipeline::CheckHalo() const {
  const int64_t slices = dims_.Slices(planes_);
  for (size_t i = 0; i < steps_.size(); ++i) {
    const int64_t h = HaloOf(i) / dims_.ZStride();
    if (h == 0) continue;
    if (!dims_.picked.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "operation ", i + 1, " (", steps_[i].spec,
          ") needs the z-slices around each plane: it cannot run on planes picked apart"));
    }
    if (h >= slices) {
      return absl::InvalidArgumentError(
          absl::StrCat("operation ", i + 1, " (", steps_[i].spec, ") needs ", h,
                       " z-slices on each side of a plane, and ", h + 1,
                       " to mirror them at the ends; the "
                       "stack has ",
                       slices, slices == 1 ? " z-slice" : " z-slices", " per volume"));
    }
  }
  return absl::OkStatus();
}

bool Pipeline::NeedsWholeStack() const {
  for (const Step& step : steps_) {
    if (step.op->NeedsWholeStack()) return true;
  }
  return false;
}

std::string Pipeline::ToString() const {
  std::string text;
  for (const Step& step : steps_) {
    absl::StrAppend(&text, text.empty() ? "" : " -> ", step.spec);
  }
  return text.empty() ? kNoOperations : text;
}

}  // namespace stackproc::core
