// An ordered list of configured operations, run back to back on each slice.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/pipeline/operation.h"
#include "core/pipeline/operation_registry.h"
#include "core/stack/metadata.h"

namespace stackproc::core {

class Pipeline {
 public:
  struct Step {
    std::string spec;  // text form, for messages
    std::unique_ptr<SliceOp> op;
  };

  // Validates and configures every operation; nothing runs. The first invalid one is reported
  // with its position: "operation 2 (clahe:clip=x): ...".
  static absl::StatusOr<Pipeline> Create(
      const std::vector<OpSpec>& specs,
      const OperationRegistry& registry = OperationRegistry::Builtin());
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

  // Whether a step needs the whole stack (normalize:scope=stack): such a pipeline cannot run
  // on a window of slices.
  bool NeedsWholeStack() const;

  size_t size() const { return steps_.size(); }
  bool empty() const { return steps_.empty(); }
  Step& step(size_t i) { return steps_[i]; }
  const Step& step(size_t i) const { return steps_[i]; }

  // "gaussian:ksize=5 -> clahe -> resize:scale=0.5"
  std::string ToString() const;

 private:
  std::vector<Step> steps_;
};

}  // namespace stackproc::core
