#include "core/pipeline/operation.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace stackproc::core {

std::string ParamSpec::AllowedText() const {
  switch (type) {
    case ParamType::kInt:
      return absl::StrCat("int in [", static_cast<int64_t>(min), ", ", static_cast<int64_t>(max),
                          "]");
    case ParamType::kDouble:
      return absl::StrCat("float in [", min, ", ", max, "]");
    case ParamType::kChoice:
      return absl::StrCat("one of ", absl::StrJoin(choices, "|"));
    case ParamType::kFile:
      return "an image file (no ',')";
  }
  return "";
}

ParamSpec IntParam(std::string name, int default_value, int min, int max, std::string doc) {
  return {std::move(name), ParamType::kInt, absl::StrCat(default_value),
          double(min),     double(max),     {},
          std::move(doc)};
}

ParamSpec DoubleParam(std::string name, double default_value, double min, double max,
                      std::string doc) {
  return {std::move(name), ParamType::kDouble, absl::StrCat(default_value), min, max, {},
          std::move(doc)};
}

ParamSpec OnlyWhenGiven(ParamSpec spec) {
  spec.only_when_given = true;
  return spec;
}

ParamSpec UnusedWith(ParamSpec spec, std::string other) {
  spec.unused_with = std::move(other);
  return spec;
}

ParamSpec ChoiceParam(std::string name, std::vector<std::string> choices, std::string doc) {
  std::string first = choices.empty() ? "" : choices.front();
  return {std::move(name),    ParamType::kChoice, std::move(first), 0, 0,
          std::move(choices), std::move(doc)};
}

ParamSpec FileParam(std::string name, std::string doc) {
  return OnlyWhenGiven({std::move(name), ParamType::kFile, "", 0, 0, {}, std::move(doc)});
}

int ParamValues::Int(const std::string& name) const { return static_cast<int>(numbers_.at(name)); }

double ParamValues::Double(const std::string& name) const { return numbers_.at(name); }

const std::string& ParamValues::Choice(const std::string& name) const { return text_.at(name); }

absl::StatusOr<cv::Mat> ParamValues::Image(const std::string& name) const {
  const std::string& path = text_.at(name);
  absl::StatusOr<cv::Mat> image =
      images_ ? images_(path)
              : absl::FailedPreconditionError("this pipeline was made to read no files");
  if (image.ok()) return image;
  return absl::Status(image.status().code(), absl::StrCat(name, ": ", image.status().message()));
}

absl::Status UnsupportedType(const OperationInfo& info, PixelType type, absl::string_view hint) {
  std::vector<absl::string_view> names;
  for (PixelType t : info.pixel_types) names.push_back(PixelTypeName(t));
  return absl::InvalidArgumentError(
      absl::StrCat(info.name, ": pixel type ", PixelTypeName(type), " is not supported (use ",
                   absl::StrJoin(names, " or "), hint.empty() ? "" : "; ", hint, ")"));
}

absl::Status CheckPixelType(const OperationInfo& info, PixelType type, absl::string_view hint) {
  if (std::find(info.pixel_types.begin(), info.pixel_types.end(), type) != info.pixel_types.end()) {
    return absl::OkStatus();
  }
  return UnsupportedType(info, type, hint);
}

}  // namespace stackproc::core
