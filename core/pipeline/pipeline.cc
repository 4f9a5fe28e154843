#include "core/pipeline/pipeline.h"

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/pipeline/operation_registry.h"

namespace stackproc::core {

absl::StatusOr<Pipeline> Pipeline::Create(const std::vector<OpSpec>& specs,
                                          const OperationRegistry& registry) {
  Pipeline pipeline;
  for (size_t i = 0; i < specs.size(); ++i) {
    std::string text = FormatOpSpec(specs[i]);
    absl::StatusOr<std::unique_ptr<SliceOp>> op = registry.Create(specs[i]);
    if (!op.ok()) {
      return absl::Status(op.status().code(), absl::StrCat("operation ", i + 1, " (", text,
                                                           "): ", op.status().message()));
    }
    pipeline.Add(std::move(text), std::move(op).value());
  }
  return pipeline;
}

absl::StatusOr<Pipeline> Pipeline::Parse(const std::vector<std::string>& texts,
                                         const OperationRegistry& registry) {
  STACKPROC_ASSIGN_OR_RETURN(std::vector<OpSpec> specs, ParseOpSpecs(texts));
  return Create(specs, registry);
}

void Pipeline::Add(std::string spec, std::unique_ptr<SliceOp> op) {
  steps_.push_back({std::move(spec), std::move(op)});
}

absl::StatusOr<std::vector<SliceFormat>> Pipeline::Plan(const SliceFormat& input) const {
  std::vector<SliceFormat> formats{input};
  for (size_t i = 0; i < steps_.size(); ++i) {
    absl::StatusOr<SliceFormat> out = steps_[i].op->OutputFormat(formats.back());
    if (!out.ok()) {
      return absl::Status(
          out.status().code(),
          absl::StrCat("operation ", i + 1, " (", steps_[i].spec, ") on ", formats.back().width,
                       "x", formats.back().height, " ", PixelTypeName(formats.back().type),
                       " slices: ", out.status().message()));
    }
    formats.push_back(*out);
  }
  return formats;
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
