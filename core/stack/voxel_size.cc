#include "core/stack/voxel_size.h"

#include <array>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/stack/stack.h"

namespace stackproc::core {
namespace {

struct Unit {
  const char* ngff;    // OME-NGFF's name
  const char* imagej;  // what ImageJ writes
  const char* ome;     // OME-XML's symbol
  double micrometers;  // one unit in micrometres
};
constexpr std::array<Unit, 7> kUnits = {{
    {"angstrom", "angstrom", "\u00c5", 1e-4},
    {"nanometer", "nm", "nm", 1e-3},
    {"micrometer", "micron", "\u00b5m", 1.0},
    {"millimeter", "mm", "mm", 1e3},
    {"centimeter", "cm", "cm", 1e4},
    {"meter", "m", "m", 1e6},
    {"inch", "inch", "in", 25400.0},
}};

std::optional<double> Number(const std::optional<std::string>& text) {
  double v = 0;
  if (text && absl::SimpleAtod(*text, &v) && v > 0) return v;
  return std::nullopt;
}

std::optional<double> Inverse(const std::optional<double>& v) {
  if (v && *v > 0) return 1.0 / *v;
  return std::nullopt;
}

}  // namespace

std::string NgffUnitName(absl::string_view unit) {
  std::string u = absl::AsciiStrToLower(absl::StripAsciiWhitespace(unit));
  if (u == "micron" || u == "microns" || u == "um" || u == "\u00b5m" || u == "\u03bcm" ||
      u == "\\u00b5m") {
    return "micrometer";
  }
  if (u == "\u00e5" || u == "\\u00c5" || u == "\\u00e5") return "angstrom";
  for (const Unit& known : kUnits) {
    if (u == known.ngff || u == known.imagej || u == absl::StrCat(known.ngff, "s")) {
      return known.ngff;
    }
  }
  return "";
}

VoxelSize Resampled(const VoxelSize& size, const PixelGeometry& geometry) {
  VoxelSize out = size;
  const std::optional<double>& x = geometry.transposed ? size.y : size.x;
  const std::optional<double>& y = geometry.transposed ? size.x : size.y;
  out.x = x ? std::optional<double>(*x * geometry.x_factor) : std::nullopt;
  out.y = y ? std::optional<double>(*y * geometry.y_factor) : std::nullopt;
  return out;
}

VoxelSize VoxelSizeOf(const StackMetadata& metadata) {
  VoxelSize size;
  const DescriptionKind kind = ClassifyDescription(metadata.description);
  if (kind == DescriptionKind::kOmeXml) {
    const std::string& xml = metadata.description;
    size.x = OmePixelsAttributeDouble(xml, "PhysicalSizeX");
    size.y = OmePixelsAttributeDouble(xml, "PhysicalSizeY");
    size.z = OmePixelsAttributeDouble(xml, "PhysicalSizeZ");
    // OME's default unit is the micrometre.
    size.unit = NgffUnitName(OmePixelsAttribute(xml, "PhysicalSizeXUnit").value_or("\u00b5m"));
    if (size.x || size.y || size.z) return size;
  }
  if (kind == DescriptionKind::kImageJ) {
    const ImageJFields fields = ParseImageJDescription(metadata.description);
    size.unit = NgffUnitName(ImageJField(fields, "unit").value_or(""));
    size.z = Number(ImageJField(fields, "spacing"));
  }
  size.x = Inverse(metadata.x_resolution);
  size.y = Inverse(metadata.y_resolution);
  // Without resolution tags ResolutionUnit's default (inch) says nothing of the pixels.
  if (size.unit.empty() && (size.x || size.y) &&
      metadata.resolution_unit != ResolutionUnit::kNone) {
    const double per_unit = metadata.resolution_unit == ResolutionUnit::kCentimeter ? 1e4 : 25400.0;
    if (size.x) *size.x *= per_unit;
    if (size.y) *size.y *= per_unit;
    size.unit = "micrometer";
  }
  return size;
}

StackMetadata MetadataOfVoxelSize(const VoxelSize& size, const StackShape& shape, PixelType type,
                                  const Dimensions& dims) {
  StackMetadata metadata;
  metadata.dims = dims;
  metadata.x_resolution = Inverse(size.x);
  metadata.y_resolution = Inverse(size.y);
  if (!dims.single()) {
    std::string xml = DefaultDescription(shape, type, dims);
    std::string unit;
    for (const Unit& known : kUnits) {
      if (size.unit == known.ngff) unit = known.ome;
    }
    for (const auto& [axis, value] : {std::pair{"X", size.x}, {"Y", size.y}, {"Z", size.z}}) {
      if (!value) continue;
      SetOmePixelsAttribute(xml, absl::StrCat("PhysicalSize", axis), absl::StrCat(*value));
      if (!unit.empty())
        SetOmePixelsAttribute(xml, absl::StrCat("PhysicalSize", axis, "Unit"), unit);
    }
    metadata.description = std::move(xml);
    return metadata;
  }
  ImageJFields fields = {{"ImageJ", "1.11a"},
                         {"images", absl::StrCat(shape.depth)},
                         {"slices", absl::StrCat(shape.depth)}};
  if (!size.unit.empty()) {
    std::string unit = size.unit;
    for (const Unit& known : kUnits) {
      if (size.unit == known.ngff) unit = known.imagej;
    }
    fields.emplace_back("unit", unit);
  }
  if (size.z) fields.emplace_back("spacing", absl::StrCat(*size.z));
  fields.emplace_back("loop", "false");
  metadata.description = FormatImageJDescription(fields);
  return metadata;
}

}  // namespace stackproc::core
