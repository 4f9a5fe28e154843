// Stack metadata carried from input to output: the ImageDescription (ImageJ hyperstack text,
// OME-XML or free text) and the X/Y resolution tags, and how a pipeline's change of geometry
// rewrites them so that the written file states the new truth.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/stack/dimensions.h"
#include "core/stack/pixel_type.h"
#include "core/stack/provenance.h"

namespace stackproc::core {

struct StackShape;

// TIFF ResolutionUnit values.
enum class ResolutionUnit { kNone = 1, kInch = 2, kCentimeter = 3 };

struct StackMetadata {
  // ImageDescription of the first page; empty when the file had none.
  std::string description;
  // Pixels per resolution unit along X and Y, when the file states them.
  std::optional<double> x_resolution;
  std::optional<double> y_resolution;
  ResolutionUnit resolution_unit = ResolutionUnit::kNone;
  // Which time point, channel and z-slice each plane is (DimensionsOf the description, or the
  // store's axes).
  Dimensions dims;
  // What made the stack: read from its file (taken out of the description), or set by the run
  // that makes it, for its writer to record (provenance.h).
  std::optional<Provenance> provenance;
};

// kTifffileJson: what tifffile writes by default, a JSON object stating the array's "shape".
enum class DescriptionKind { kNone, kImageJ, kOmeXml, kTifffileJson, kOther };
DescriptionKind ClassifyDescription(absl::string_view description);

// Sets attribute `name` of the first <Pixels> element of an OME-XML document to `value`, adding
// it when absent.
void SetOmePixelsAttribute(std::string& xml, const std::string& name, const std::string& value);

// The value of attribute `name` of the <Pixels> element of an OME-XML document, if present.
std::optional<std::string> OmePixelsAttribute(const std::string& xml, const std::string& name);
std::optional<double> OmePixelsAttributeDouble(const std::string& xml, const std::string& name);

// `text` with XML's special characters (& < > ") escaped, for an attribute or an element.
std::string XmlEscaped(absl::string_view text);
// The other way: XML's five entities back to their characters (in one pass: "&amp;lt;" is "&lt;").
std::string XmlUnescaped(absl::string_view text);

// "key=value" lines of an ImageJ description, in file order.
using ImageJFields = std::vector<std::pair<std::string, std::string>>;
ImageJFields ParseImageJDescription(absl::string_view description);
std::string FormatImageJDescription(const ImageJFields& fields);
// The value of `key`, if present.
std::optional<std::string> ImageJField(const ImageJFields& fields, absl::string_view key);

// How output pixels relate to input pixels in X/Y, composed op by op through a pipeline.
// Output pixel size along X is the input pixel size along X (or Y, when transposed) times
// x_factor; likewise for Y.
struct PixelGeometry {
  bool transposed = false;
  double x_factor = 1.0;
  double y_factor = 1.0;

  // The image was resampled: `sx` output pixels per input pixel along X, `sy` along Y.
  void Scale(double sx, double sy) {
    x_factor /= sx;
    y_factor /= sy;
  }
  // X and Y were exchanged (rotation by 90 or 270 degrees).
  void Transpose() {
    transposed = !transposed;
    std::swap(x_factor, y_factor);
  }
};

// Metadata for a stack of `out_shape` / `out_type` made from one described by `in` through
// `geometry`: resolution scaled (and swapped on transpose); ImageJ images/slices and OME-XML
// SizeX/SizeY/Type/PhysicalSizeX/PhysicalSizeY updated, and OME-XML's SizeZ/SizeC/SizeT and
// DimensionOrder stated from `in.dims`; an ImageJ display range dropped when the pixel type
// changed. A description of another kind is kept as it is.
StackMetadata UpdateMetadata(const StackMetadata& in, const StackShape& out_shape,
                             PixelType in_type, PixelType out_type, const PixelGeometry& geometry);

// The metadata of channels `kept` (in that order) of a stack described by `in`, `planes` planes
// of them: dims and channel_info of those only (a channel without a name is named by its number
// in the input, so that the output says which it was); an OME-XML description keeps those Channel
// elements (and maps its planes by DimensionOrder alone); an ImageJ one its counts
// (UpdateMetadata states them).
StackMetadata SelectChannels(const StackMetadata& in, const std::vector<int64_t>& kept,
                             int64_t planes);

// The metadata of a file whose pages hold several samples per pixel (RGB, or n channels in one
// page), for its planes of one sample each (`shape`): `in.dims` counts the samples as channels
// already and the description is restated to say so: OME-XML with a Channel element per sample,
// not interleaved, its planes in one TiffData; an ImageJ description as a hyperstack's; any
// other (tifffile's shape, free text), which cannot say so, replaced by DefaultDescription's.
StackMetadata SamplesAsChannels(const StackMetadata& in, const StackShape& shape, PixelType type);

// A description for a stack that came with none: ImageJ's, so that ImageJ/Fiji open the file as
// a z-stack, or as a hyperstack when `dims` has channels or time points in ImageJ's order (CZT);
// OME-XML for any other order (tifffile and Bio-Formats read it; ImageJ's own opener shows the
// planes as one stack).
std::string DefaultDescription(const StackShape& shape, PixelType type, const Dimensions& dims);

}  // namespace stackproc::core
