#include "core/stack/metadata.h"

#include <regex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "core/stack/stack.h"

namespace stackproc::core {
namespace {

std::string FormatDouble(double v) { return absl::StrCat(v); }

// Sets `name="value"` inside the first <...Pixels ...> start tag of an OME-XML document; adds
// nothing when the attribute is absent unless `add` is set.
void SetPixelsAttribute(std::string& xml, const std::string& name, const std::string& value,
                        bool add) {
  static const std::regex kPixelsTag(R"(<([A-Za-z0-9_]+:)?Pixels[\s>][^>]*>)");
  std::smatch tag;
  if (!std::regex_search(xml, tag, kPixelsTag)) return;
  std::string text = tag.str();
  std::regex attr("(\\s" + name + "\\s*=\\s*)\"[^\"]*\"");
  std::string updated;
  if (std::regex_search(text, attr)) {
    updated = std::regex_replace(text, attr, "$1\"" + value + "\"",
                                 std::regex_constants::format_first_only);
  } else if (add) {
    size_t insert_at = text.size() - (absl::EndsWith(text, "/>") ? 2 : 1);
    updated =
        text.substr(0, insert_at) + " " + name + "=\"" + value + "\"" + text.substr(insert_at);
  } else {
    return;
  }
  xml.replace(static_cast<size_t>(tag.position()), text.size(), updated);
}

std::string OmeTypeName(PixelType type) {
  return type == PixelType::kFloat32 ? "float" : std::string(PixelTypeName(type));
}

}  // namespace

void SetOmePixelsAttribute(std::string& xml, const std::string& name, const std::string& value) {
  SetPixelsAttribute(xml, name, value, /*add=*/true);
}

std::optional<std::string> OmePixelsAttribute(const std::string& xml, const std::string& name) {
  std::regex re("<([A-Za-z0-9_]+:)?Pixels\\s[^>]*\\s" + name + "\\s*=\\s*\"([^\"]*)\"");
  std::smatch m;
  if (std::regex_search(xml, m, re)) return m[2].str();
  return std::nullopt;
}

std::optional<double> OmePixelsAttributeDouble(const std::string& xml, const std::string& name) {
  double v = 0;
  const std::optional<std::string> text = OmePixelsAttribute(xml, name);
  if (text && absl::SimpleAtod(*text, &v)) return v;
  return std::nullopt;
}

DescriptionKind ClassifyDescription(absl::string_view description) {
  absl::string_view d = absl::StripLeadingAsciiWhitespace(description);
  if (d.empty()) return DescriptionKind::kNone;
  if (absl::StartsWith(d, "ImageJ=")) return DescriptionKind::kImageJ;
  if (absl::StartsWith(d, "<?xml") || absl::StartsWith(d, "<OME")) {
    if (absl::StrContains(d, "<OME") || absl::StrContains(d, ":OME")) {
      return DescriptionKind::kOmeXml;
    }
  }
  if (absl::StartsWith(d, "{") && absl::StrContains(d, "\"shape\"")) {
    return DescriptionKind::kTifffileJson;
  }
  return DescriptionKind::kOther;
}

ImageJFields ParseImageJDescription(absl::string_view description) {
  ImageJFields fields;
  for (absl::string_view line : absl::StrSplit(description, '\n', absl::SkipWhitespace())) {
    size_t eq = line.find('=');
    if (eq == absl::string_view::npos) continue;
    fields.emplace_back(std::string(absl::StripAsciiWhitespace(line.substr(0, eq))),
                        std::string(absl::StripAsciiWhitespace(line.substr(eq + 1))));
  }
  return fields;
}

std::string FormatImageJDescription(const ImageJFields& fields) {
  std::string out;
  for (const auto& [key, value] : fields) absl::StrAppend(&out, key, "=", value, "\n");
  return out;
}

std::optional<std::string> ImageJField(const ImageJFields& fields, absl::string_view key) {
  for (const auto& [k, v] : fields) {
    if (k == key) return v;
  }
  return std::nullopt;
}

std::string XmlEscaped(absl::string_view text) {
  std::string out;
  for (char ch : text) {
    switch (ch) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += ch;
    }
  }
  return out;
}

std::string XmlUnescaped(absl::string_view text) {
  return absl::StrReplaceAll(
      text, {{"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&apos;", "'"}, {"&amp;", "&"}});
}

namespace {

// One OME Channel element per channel of `dims`, of one sample each, with what it says of them.
std::string ChannelElements(const Dimensions& dims) {
  std::string xml;
  for (int64_t c = 0; c < dims.channels; ++c) {
    absl::StrAppend(&xml, "<Channel ID=\"Channel:0:", c, "\" SamplesPerPixel=\"1\"");
    if (c < std::ssize(dims.channel_info)) {
      const ChannelInfo& info = dims.channel_info[static_cast<size_t>(c)];
      if (!info.name.empty()) absl::StrAppend(&xml, " Name=\"", XmlEscaped(info.name), "\"");
      if (info.rgba) absl::StrAppend(&xml, " Color=\"", static_cast<int32_t>(*info.rgba), "\"");
      if (info.emission_wavelength) {
        absl::StrAppend(&xml, " EmissionWavelength=\"", *info.emission_wavelength, "\"");
      }
    }
    absl::StrAppend(&xml, "/>");
  }
  return xml;
}

// An OME-XML document's Channel elements cut out of it (each <Channel .../> or
// <Channel ...>...</Channel>; the lazy attributes stop at a self-closing "/>" rather than run on
// to the next element's end): the rest, where the first was, and the elements in order.
struct CutChannels {
  explicit CutChannels(const std::string& document) {
    static const std::regex kChannel(
        R"(<([A-Za-z0-9_]+:)?Channel(\s[^>]*?)?(/>|>[\s\S]*?</([A-Za-z0-9_]+:)?Channel>))");
    std::string rest = document;
    std::smatch m;
    while (std::regex_search(rest, m, kChannel)) {
      xml += m.prefix().str();
      if (at == std::string::npos) at = xml.size();
      channels.push_back(m.str());
      rest = m.suffix().str();
    }
    xml += rest;
  }
  // The document with `elements` where the Channel elements were.
  std::string With(const std::string& elements) const {
    std::string out = xml;
    if (at != std::string::npos) out.insert(at, elements);
    return out;
  }

  std::string xml;
  size_t at = std::string::npos;
  std::vector<std::string> channels;
};

// `xml`'s TiffData and Plane elements (which described the planes as they were) replaced by one
// TiffData: its `planes` planes follow DimensionOrder from IFD 0 on.
std::string OnePlaneRun(std::string xml, int64_t planes) {
  xml = std::regex_replace(
      xml,
      std::regex(
          R"(<([A-Za-z0-9_]+:)?(TiffData|Plane)(\s[^>]*?)?(/>|>[\s\S]*?</([A-Za-z0-9_]+:)?\2>))"),
      "");
  static const std::regex kPixelsEnd(R"(</([A-Za-z0-9_]+:)?Pixels>)");
  std::smatch end;
  if (std::regex_search(xml, end, kPixelsEnd)) {
    xml.insert(static_cast<size_t>(end.position()),
               absl::StrCat("<TiffData IFD=\"0\" PlaneCount=\"", planes, "\"/>"));
  }
  return xml;
}

std::string OmeXml(const StackShape& shape, PixelType type, const Dimensions& dims) {
  std::string xml = absl::StrCat(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<OME xmlns=\"http://www.openmicroscopy.org/Schemas/OME/2016-06\" "
      "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" "
      "xsi:schemaLocation=\"http://www.openmicroscopy.org/Schemas/OME/2016-06 "
      "http://www.openmicroscopy.org/Schemas/OME/2016-06/ome.xsd\" Creator=\"stackproc\">"
      "<Image ID=\"Image:0\"><Pixels ID=\"Pixels:0\" DimensionOrder=\"XY",
      dims.order, "\" Type=\"", OmeTypeName(type), "\" SizeX=\"", shape.width, "\" SizeY=\"",
      shape.height, "\" SizeZ=\"", dims.Slices(shape.depth), "\" SizeC=\"", dims.channels,
      "\" SizeT=\"", dims.times, "\">");
  xml += ChannelElements(dims);
  absl::StrAppend(&xml, "<TiffData IFD=\"0\" PlaneCount=\"", shape.depth,
                  "\"/></Pixels></Image></OME>");
  return xml;
}

}  // namespace

StackMetadata SelectChannels(const StackMetadata& in, const std::vector<int64_t>& kept,
                             int64_t planes) {
  StackMetadata out = in;
  out.dims.channels = std::ssize(kept);
  // Each kept channel says which it was: its own name, or its number in the input.
  out.dims.channel_info.clear();
  for (int64_t c : kept) {
    ChannelInfo info;
    if (c < std::ssize(in.dims.channel_info)) info = in.dims.channel_info[size_t(c)];
    if (info.name.empty()) info.name = absl::StrCat(c);
    out.dims.channel_info.push_back(std::move(info));
  }
  if (ClassifyDescription(in.description) == DescriptionKind::kImageJ) {
    ImageJFields fields;
    for (auto& field : ParseImageJDescription(in.description)) {
      if (field.first != "ranges") fields.push_back(std::move(field));  // a range per channel
    }
    out.description = FormatImageJDescription(fields);
  }
  if (ClassifyDescription(in.description) != DescriptionKind::kOmeXml) return out;
  const CutChannels cut(in.description);
  std::string chosen;
  for (int64_t c : kept) {
    if (c < std::ssize(cut.channels)) chosen += cut.channels[size_t(c)];
  }
  out.description = OnePlaneRun(cut.With(chosen), planes);
  return out;
}

std::string DefaultDescription(const StackShape& shape, PixelType type, const Dimensions& dims) {
  if (!dims.single() && dims.order != "CZT") return OmeXml(shape, type, dims);
  ImageJFields fields{{"ImageJ", "1.11a"}, {"images", absl::StrCat(shape.depth)}};
  if (dims.channels > 1) fields.emplace_back("channels", absl::StrCat(dims.channels));
  fields.emplace_back("slices", absl::StrCat(dims.Slices(shape.depth)));
  if (dims.times > 1) fields.emplace_back("frames", absl::StrCat(dims.times));
  if (!dims.single()) {
    fields.emplace_back("hyperstack", "true");
    fields.emplace_back("mode", dims.channels > 1 ? "composite" : "grayscale");
  }
  fields.emplace_back("loop", "false");
  return FormatImageJDescription(fields);
}

StackMetadata SamplesAsChannels(const StackMetadata& in, const StackShape& shape, PixelType type) {
  StackMetadata out = in;
  switch (ClassifyDescription(in.description)) {
    case DescriptionKind::kOmeXml: {
      // SizeC counted the samples already.
      std::string xml = CutChannels(in.description).With(ChannelElements(in.dims));
      SetPixelsAttribute(xml, "Interleaved", "false", false);
      SetPixelsAttribute(xml, "DimensionOrder", absl::StrCat("XY", in.dims.order), true);
      out.description = OnePlaneRun(std::move(xml), shape.depth);
      break;
    }
    case DescriptionKind::kImageJ: {
      ImageJFields fields = ParseImageJDescription(DefaultDescription(shape, type, in.dims));
      for (auto& [key, value] : ParseImageJDescription(in.description)) {
        if (!ImageJField(fields, key) && key != "ranges") fields.emplace_back(key, value);
      }
      out.description = FormatImageJDescription(fields);
      break;
    }
    default:
      out.description = DefaultDescription(shape, type, in.dims);
  }
  return out;
}

StackMetadata UpdateMetadata(const StackMetadata& in, const StackShape& out_shape,
                             PixelType in_type, PixelType out_type, const PixelGeometry& geometry) {
  StackMetadata out = in;
  const std::optional<double>& in_x = geometry.transposed ? in.y_resolution : in.x_resolution;
  const std::optional<double>& in_y = geometry.transposed ? in.x_resolution : in.y_resolution;
  // Resolution is pixels per unit: the inverse of pixel size.
  if (in_x) out.x_resolution = *in_x / geometry.x_factor;
  if (in_y) out.y_resolution = *in_y / geometry.y_factor;
  // With no physical size, a resampled stack states its pixels' size in the input's pixels
  // (TIFF's ResolutionUnit none: a ratio, no unit), so that what reads it still scales them.
  if (!in_x && !in_y && (geometry.x_factor != 1 || geometry.y_factor != 1)) {
    out.x_resolution = 1 / geometry.x_factor;
    out.y_resolution = 1 / geometry.y_factor;
    out.resolution_unit = ResolutionUnit::kNone;
  }
  // A display window is in the input's pixel values: another type's are others (ImageJ's min
  // and max go too, below).
  if (in_type != out_type) {
    for (ChannelInfo& channel : out.dims.channel_info) {
      channel.window_start.reset();
      channel.window_end.reset();
    }
  }

  switch (ClassifyDescription(in.description)) {
    case DescriptionKind::kImageJ: {
      ImageJFields fields = ParseImageJDescription(in.description);
      bool hyper = ImageJField(fields, "channels") || ImageJField(fields, "frames");
      ImageJFields kept;
      for (auto& [key, value] : fields) {
        if (!hyper && (key == "images" || key == "slices")) value = absl::StrCat(out_shape.depth);
        // A hyperstack's counts are the planes' (some channels may have been chosen).
        if (hyper && key == "images") value = absl::StrCat(in.dims.Whole(out_shape.depth));
        if (hyper && key == "channels") value = absl::StrCat(in.dims.channels);
        if (hyper && key == "slices") value = absl::StrCat(in.dims.Slices(out_shape.depth));
        if (hyper && key == "frames") value = absl::StrCat(in.dims.times);
        if (in_type != out_type && (key == "min" || key == "max")) continue;
        kept.emplace_back(key, value);
      }
      out.description = FormatImageJDescription(kept);
      break;
    }
    case DescriptionKind::kOmeXml: {
      std::string xml = in.description;
      const bool t = geometry.transposed;
      const std::optional<double> px =
          OmePixelsAttributeDouble(xml, t ? "PhysicalSizeY" : "PhysicalSizeX");
      const std::optional<double> py =
          OmePixelsAttributeDouble(xml, t ? "PhysicalSizeX" : "PhysicalSizeY");
      SetPixelsAttribute(xml, "SizeX", absl::StrCat(out_shape.width), true);
      SetPixelsAttribute(xml, "SizeY", absl::StrCat(out_shape.height), true);
      // The planes keep their order: the counts say how they are time points, channels and z
      // (what the input said, or what the run made of it).
      SetPixelsAttribute(xml, "SizeZ", absl::StrCat(in.dims.Slices(out_shape.depth)), true);
      SetPixelsAttribute(xml, "SizeC", absl::StrCat(in.dims.channels), true);
      SetPixelsAttribute(xml, "SizeT", absl::StrCat(in.dims.times), true);
      SetPixelsAttribute(xml, "DimensionOrder", absl::StrCat("XY", in.dims.order), true);
      SetPixelsAttribute(xml, "Type", OmeTypeName(out_type), false);
      // The planes are in this file now: TiffData's UUIDs named the input's file (Bio-Formats
      // names the file itself in each), and the document's UUID was the input's.
      xml = std::regex_replace(xml, std::regex(R"(<([A-Za-z0-9_]+:)?UUID[^>]*/>)"), "");
      xml = std::regex_replace(
          xml, std::regex(R"(<([A-Za-z0-9_]+:)?UUID[^>]*>[^<]*</([A-Za-z0-9_]+:)?UUID>)"), "");
      xml = std::regex_replace(xml, std::regex(R"((<([A-Za-z0-9_]+:)?OME\s[^>]*?)\s+UUID="[^"]*")"),
                               "$1", std::regex_constants::format_first_only);
      if (px) SetPixelsAttribute(xml, "PhysicalSizeX", FormatDouble(*px * geometry.x_factor), true);
      if (py) SetPixelsAttribute(xml, "PhysicalSizeY", FormatDouble(*py * geometry.y_factor), true);
      out.description = std::move(xml);
      break;
    }
    case DescriptionKind::kTifffileJson: {
      // {"shape": [Z, Y, X], ...}: the shape says the new truth; a shape of another rank (or
      // one this cannot find) cannot be rewritten, and the description is dropped rather than
      // left to contradict the pages (the writer then gives the stack an ImageJ description).
      static const std::regex kShape(
          "\"shape\"\\s*:\\s*\\[\\s*\\d+\\s*,\\s*\\d+\\s*,\\s*\\d+\\s*\\]");
      std::smatch m;
      if (std::regex_search(in.description, m, kShape)) {
        out.description =
            absl::StrCat(m.prefix().str(), "\"shape\": [", out_shape.depth, ", ", out_shape.height,
                         ", ", out_shape.width, "]", m.suffix().str());
      } else {
        out.description.clear();
      }
      break;
    }
    case DescriptionKind::kNone:
    case DescriptionKind::kOther:
      break;
  }
  return out;
}

}  // namespace stackproc::core
