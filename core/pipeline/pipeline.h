// An ordered list of configured operations, run back to back on each slice.
//
// A step may be limited to channels or given parameters of its own for some (the stack's
// Dimensions say which channel each plane is), in the one grammar:
//
//   gaussian:sigma=2,channels=0+2     channels 0 and 2 only; the others pass through unchanged
//   gaussian:sigma=2,c1.sigma=4       sigma 4 on channel 1, 2 on every other
//
// Channels are numbered from 0, as in the (t, c, z, y, x) arrays. A whole-stack step takes its
// statistics per channel (over every time point; per time point too when its op says so).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/pipeline/operation.h"
#include "core/pipeline/operation_registry.h"
#include "core/stack/dimensions.h"
#include "core/stack/metadata.h"
#include "core/stack/stack.h"

namespace stackproc::core {

class Pipeline {
 public:
  struct Step {
    std::string spec;             // text form, for messages
    std::unique_ptr<SliceOp> op;  // as written, for every channel that has no op of its own
    // What channels= and cN.key= said: the channels it runs on (none: all), and the spec of
    // each channel with parameters of its own.
    std::optional<std::vector<int64_t>> only;
    std::map<int64_t, OpSpec> own;
    std::optional<OpSpec> base;  // the spec without channel keys (nullopt: added configured)
    // Set by Bind: the op each group of planes runs (nullptr: passed through), and the ops
    // made for it. Empty: `op` for every plane.
    std::vector<SliceOp*> by_group;
    std::vector<std::unique_ptr<SliceOp>> owned;
  };

  // Validates and configures every operation; nothing runs. The first invalid one is reported
  // with its position: "operation 2 (clahe:clip=x): ...". Ops read the files their parameters
  // name (a flat field) with `images`, as the job reads its input (formats.h: ImagesIn);
  // unset, a pipeline naming one is refused.
  static absl::StatusOr<Pipeline> Create(
      const std::vector<OpSpec>& specs,
      const OperationRegistry& registry = OperationRegistry::Builtin(), ImageReader images = {});
  // Create from the text forms (ParseOpSpecs).
  static absl::StatusOr<Pipeline> Parse(
      const std::vector<std::string>& texts,
      const OperationRegistry& registry = OperationRegistry::Builtin());

  // Appends an already configured operation (tests use this for fakes).
  void Add(std::string spec, std::unique_ptr<SliceOp> op);

  // The slice format after each step: result[0] is `input`, result[i + 1] the output of step i.
  // InvalidArgument when a step cannot take its input, naming the step.
  absl::StatusOr<std::vector<SliceFormat>> Plan(const SliceFormat& input) const;

  // How the pipeline maps input pixels to output pixels (for metadata).
  PixelGeometry Geometry(const SliceFormat& input) const;

  // Binds the pipeline to the stack it runs on (`input`; its planes its shape's depth): sets
  // which channel (and time point) each plane is, making the ops each group of planes runs (a
  // step's own channels, and one op per channel, per channel and time point, of a whole-stack
  // step, whose statistics are that group's), and gives each op the voxel size of its input
  // (SliceOp::Calibrate: the input's, followed through the steps before). InvalidArgument when
  // a step names a channel the stack does not have, or needs a voxel size it does not state.
  // Before Plan's formats are used to run.
  absl::Status Bind(const StackInfo& input);
  // The op step `i` runs on plane `plane`; nullptr when the plane passes through unchanged.
  SliceOp* For(size_t i, int64_t plane) const;

  // A whole-stack step's statistics (the engine's barrier, or statistics gathered apart):
  // each group's op takes its group's. `stats` holds every group's one after another, each of
  // the size the step's AddStats makes for slices of `format`, the step's input (JoinStats).
  absl::Status PrepareForStack(size_t i, const Stack& input);
  absl::Status PrepareFromStats(size_t i, const SliceFormat& format,
                                const std::vector<uint64_t>& stats);
  // Adds plane `plane` (of format `format`, the step's input) to the statistics of its group.
  // False when the step's statistics of such pixels do not add up.
  bool AddStats(size_t i, int64_t plane, const cv::Mat& slice,
                std::vector<std::vector<uint64_t>>& groups) const;
  // The groups' statistics one after another, each of `format`'s size (groups with no plane
  // are zeros).
  std::vector<uint64_t> JoinStats(size_t i, const SliceFormat& format,
                                  std::vector<std::vector<uint64_t>> groups) const;

  // The z-neighbourhood of step `i` (SliceOp::HaloPlanes, the most of any of its ops: a
  // channel's own sigma) as planes of the bound stack on each side of a plane: z-slices times
  // how far apart they are stored (Dimensions::ZStride). Steps [first, last) need their sum.
  int64_t HaloOf(size_t i) const;
  int64_t HaloOf(size_t first, size_t last) const;
  // HaloOf of each of steps [first, last): what the window planner takes (PlanWindow).
  std::vector<int64_t> Halos(size_t first, size_t last) const;
  // The plane `dz` z-slices from `plane` in its (t, c) volume, mirrored at the volume's first
  // and last slice (BORDER_REFLECT_101): a plane number of the bound stack, like `plane`.
  int64_t Neighbour(int64_t plane, int64_t dz) const;
  // InvalidArgument, naming the step, when a step's z-neighbourhood does not fit in the bound
  // stack's volumes (h z-slices need h + 1 of them to mirror), or the stack's planes are some
  // picked from another (a preview's: they have no neighbours).
  absl::Status CheckHalo() const;

  // Whether a step needs the whole stack (normalize:scope=stack): such a pipeline cannot run
  // on a window of slices.
  bool NeedsWholeStack() const;

  size_t size() const { return steps_.size(); }
  // Each step's text form with every parameter its operation declares (given, or the default),
  // then its channel keys as given: what the pipeline does, whatever the defaults become.
  std::vector<std::string> Resolved() const;
  bool empty() const { return steps_.empty(); }
  Step& step(size_t i) { return steps_[i]; }
  const Step& step(size_t i) const { return steps_[i]; }

  // "gaussian:ksize=5 -> clahe -> resize:scale=0.5"
  std::string ToString() const;

 private:
  // The group of `plane` for step `i` (its channel, or its channel and time point), and how
  // many there are.
  size_t GroupOf(const Step& step, int64_t plane) const;
  size_t Groups(const Step& step) const;
  // Bind's first part: each step's ops for its groups of planes.
  absl::Status MakeGroups();

  std::vector<Step> steps_;
  const OperationRegistry* registry_ = nullptr;
  ImageReader images_;
  Dimensions dims_;
  int64_t planes_ = 0;
};

}  // namespace stackproc::core
