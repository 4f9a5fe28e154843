#include "core/zarr/zarr_metadata.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <regex>
#include <string_view>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "core/stack/provenance.h"
#include "core/zarr/zarr_json.h"

namespace stackproc::core {
namespace {

using zarr_json::Bad;
using zarr_json::IntArray;
using zarr_json::IntAt;
using zarr_json::Json;
using zarr_json::ParseFill;
using zarr_json::ParseJson;
using zarr_json::StringAt;

absl::StatusOr<ZarrCodec> ParseCompressor(const Json& json, const std::string& name) {
  ZarrCodec codec;
  if (json.is_null()) return codec;
  const std::string id = json.is_object() && json.contains("id") && json["id"].is_string()
                             ? json["id"].get<std::string>()
                             : "";
  if (id == "zlib" || id == "gzip") {
    codec.id = id == "zlib" ? ZarrCodecId::kZlib : ZarrCodecId::kGzip;
    codec.level = static_cast<int>(IntAt(json, "level").value_or(1));
  } else if (id == "zstd") {
    codec.id = ZarrCodecId::kZstd;
    codec.level = static_cast<int>(IntAt(json, "level").value_or(1));
  } else if (id == "blosc") {
    codec.id = ZarrCodecId::kBlosc;
    codec.blosc_name = StringAt(json, "cname", "lz4");
    codec.level = static_cast<int>(IntAt(json, "clevel").value_or(5));
    // -1 (numcodecs' AUTOSHUFFLE) matters only when encoding; the stream says what it used.
    codec.shuffle = std::clamp(static_cast<int>(IntAt(json, "shuffle").value_or(1)), 0, 2);
  } else {
    return Bad(name, absl::StrCat("compressor ", json.dump(),
                                  " is not one stackproc reads (none, zlib, gzip, zstd, blosc)"));
  }
  absl::Status valid = ValidateZarrCodec(codec);
  if (!valid.ok()) return Bad(name, valid.message());
  return codec;
}

Json CompressorJson(const ZarrCodec& codec) {
  switch (codec.id) {
    case ZarrCodecId::kNone:
      return nullptr;
    case ZarrCodecId::kZlib:
      return {{"id", "zlib"}, {"level", codec.level}};
    case ZarrCodecId::kGzip:
      return {{"id", "gzip"}, {"level", codec.level}};
    case ZarrCodecId::kZstd:
      return {{"id", "zstd"}, {"level", codec.level}};
    case ZarrCodecId::kBlosc:
      return {{"id", "blosc"},
              {"cname", codec.blosc_name},
              {"clevel", codec.level},
              {"shuffle", codec.shuffle},
              {"blocksize", 0}};
  }
  return nullptr;
}

absl::Status ParseDtype(const Json& json, ZarrArrayMeta& meta, const std::string& name) {
  const std::string dtype = json.is_string() ? json.get<std::string>() : json.dump();
  const auto type_of = [](absl::string_view code) -> std::optional<PixelType> {
    if (code == "u1") return PixelType::kUint8;
    if (code == "u2") return PixelType::kUint16;
    if (code == "f4") return PixelType::kFloat32;
    return std::nullopt;
  };
  const std::optional<PixelType> type =
      dtype.size() == 3 && (dtype[0] == '<' || dtype[0] == '>' || dtype[0] == '|')
          ? type_of(absl::string_view(dtype).substr(1))
          : std::nullopt;
  if (!type) {
    return Bad(name, absl::StrCat("dtype ", json.dump(),
                                  ": stackproc reads uint8 (\"|u1\"), uint16 (\"<u2\", \">u2\") "
                                  "and float32 (\"<f4\", \">f4\")"));
  }
  meta.type = *type;
  meta.big_endian = dtype[0] == '>' && *type != PixelType::kUint8;
  return absl::OkStatus();
}

}  // namespace

int64_t ZarrArrayMeta::chunk_elements() const {
  int64_t n = 1;
  for (int64_t c : chunks) n *= c;
  return n;
}

absl::StatusOr<ZarrArrayMeta> ParseZarray(absl::string_view text, const std::string& name) {
  STACKPROC_ASSIGN_OR_RETURN(Json json, ParseJson(text, name));
  if (IntAt(json, "zarr_format") != 2) {
    return Bad(name, "not a Zarr v2 array (\"zarr_format\": 2)");
  }
  ZarrArrayMeta meta;
  STACKPROC_ASSIGN_OR_RETURN(meta.shape, IntArray(json, "shape", name));
  STACKPROC_ASSIGN_OR_RETURN(meta.chunks, IntArray(json, "chunks", name));
  if (meta.chunks.size() != meta.shape.size()) {
    return Bad(name, absl::StrCat("chunks [", absl::StrJoin(meta.chunks, ","), "] do not match ",
                                  "shape [", absl::StrJoin(meta.shape, ","), "]"));
  }
  for (int64_t c : meta.chunks) {
    if (c == 0) return Bad(name, "a chunk length of 0");
  }
  STACKPROC_RETURN_IF_ERROR(ParseDtype(json.value("dtype", Json()), meta, name));
  if (StringAt(json, "order", "C") != "C") {
    return Bad(name, "order \"F\": stackproc reads arrays in C order");
  }
  const Json filters = json.value("filters", Json());
  if (!filters.is_null() && !(filters.is_array() && filters.empty())) {
    return Bad(name, absl::StrCat("filters ", filters.dump(), ": stackproc reads arrays without"));
  }
  STACKPROC_ASSIGN_OR_RETURN(meta.codec, ParseCompressor(json.value("compressor", Json()), name));
  STACKPROC_ASSIGN_OR_RETURN(meta.fill_value,
                             ParseFill(json.value("fill_value", Json()), meta.type, name));
  const std::string separator = StringAt(json, "dimension_separator", ".");
  if (separator != "." && separator != "/") {
    return Bad(name, absl::StrCat("dimension_separator \"", separator, "\""));
  }
  meta.nested = separator == "/";
  return meta;
}

std::string FormatZarray(const ZarrArrayMeta& meta) {
  const char* code = meta.type == PixelType::kUint8    ? "|u1"
                     : meta.type == PixelType::kUint16 ? "<u2"
                                                       : "<f4";
  Json json = {{"zarr_format", 2},
               {"shape", meta.shape},
               {"chunks", meta.chunks},
               {"dtype", code},
               {"compressor", CompressorJson(meta.codec)},
               {"fill_value", 0},
               {"order", "C"},
               {"filters", nullptr},
               {"dimension_separator", meta.nested ? "/" : "."}};
  return json.dump(2) + "\n";
}

std::string ChunkKey(const ZarrArrayMeta& meta, const std::vector<int64_t>& index) {
  const char* separator = meta.nested ? "/" : ".";
  const std::string indices = absl::StrJoin(index, separator);
  if (!meta.key_prefix) return index.empty() ? "0" : indices;
  return index.empty() ? "c" : absl::StrCat("c", separator, indices);
}

absl::StatusOr<std::optional<NgffImage>> ParseNgffAttributes(absl::string_view text,
                                                             const std::string& name) {
  STACKPROC_ASSIGN_OR_RETURN(Json file, ParseJson(text, name));
  // NGFF 0.5: a v3 group's attributes, the image under "ome"; 0.4: .zattrs, the image itself.
  Json attributes =
      IntAt(file, "zarr_format") == 3 ? file.value("attributes", Json::object()) : std::move(file);
  if (!attributes.is_object()) return Bad(name, "\"attributes\" must be an object");
  const Json json =
      attributes.contains("ome") && attributes["ome"].is_object() ? attributes["ome"] : attributes;
  auto multiscales = json.find("multiscales");
  if (multiscales == json.end()) return std::nullopt;
  if (!multiscales->is_array() || multiscales->empty() || !(*multiscales)[0].is_object()) {
    return Bad(name, "\"multiscales\" must be a list of images");
  }
  const Json& image = (*multiscales)[0];
  NgffImage out;
  out.name = StringAt(image, "name");
  // Axes (NGFF 0.4: objects with a name, a type and a unit; 0.3: names; older: none, z,y,x).
  const Json axes = image.value("axes", Json::array());
  if (!axes.is_array()) return Bad(name, "\"axes\" must be a list");
  // A field that is not of its type is taken as absent (StringAt).
  for (const Json& axis : axes) {
    const std::string axis_name =
        axis.is_string() ? axis.get<std::string>() : StringAt(axis, "name");
    std::string type = StringAt(axis, "type");
    if (type.empty()) type = axis_name == "t" ? "time" : axis_name == "c" ? "channel" : "space";
    out.axes.push_back(type == "time" ? "t" : type == "channel" ? "c" : type);
    if (type == "space" && !StringAt(axis, "unit").empty()) {
      out.unit = NgffUnitName(StringAt(axis, "unit"));
    }
  }
  // NGFF's order: time, then channel (then axes of other types, which the array must give one
  // element: ZarrSource checks), then 2 or 3 spatial axes.
  std::string roles;
  for (const std::string& role : out.axes) {
    roles += role == "space" ? 's' : role == "t" ? 't' : role == "c" ? 'c' : 'o';
  }
  static const std::regex kRoles("t?c?o*s{2,3}");
  if (!out.axes.empty() && !std::regex_match(roles, kRoles)) {
    return Bad(name, absl::StrCat("axes ", axes.dump(),
                                  ": stackproc reads images of axes t, c, z, y, x (each of t, c "
                                  "and z optional, in that order; y and x spatial)"));
  }
  if (auto record = attributes.find(kProvenanceKey); record != attributes.end()) {
    out.provenance = record->dump();
  }
  if (auto omero = json.find("omero"); omero != json.end() && omero->is_object() &&
                                       omero->contains("channels") &&
                                       (*omero)["channels"].is_array()) {
    for (const Json& c : (*omero)["channels"]) {
      if (!c.is_object()) continue;
      // Display settings of the wrong type are left out: they never make an image unreadable.
      ChannelInfo channel;
      channel.name = StringAt(c, "label");
      uint32_t rgb = 0;
      if (const std::string hex = StringAt(c, "color");
          hex.size() == 6 && absl::SimpleHexAtoi(hex, &rgb)) {
        channel.rgba = (rgb << 8) | 0xff;
      }
      if (c.contains("window") && c["window"].is_object()) {
        const Json& window = c["window"];
        if (window.contains("start") && window["start"].is_number()) {
          channel.window_start = window["start"].get<double>();
        }
        if (window.contains("end") && window["end"].is_number()) {
          channel.window_end = window["end"].get<double>();
        }
      }
      out.channels.push_back(std::move(channel));
    }
  }
  // The datasets, each scaled by its own transformations and then the multiscale's.
  const Json datasets = image.value("datasets", Json::array());
  if (!datasets.is_array() || datasets.empty()) return Bad(name, "a multiscale without datasets");
  const auto apply_scale = [&](const Json& transforms, std::array<double, 3>& scale) {
    if (!transforms.is_array()) return;
    for (const Json& t : transforms) {
      if (!t.is_object() || StringAt(t, "type") != "scale" || !t.contains("scale")) continue;
      const Json& s = t["scale"];
      if (!s.is_array() || s.size() < 2) continue;
      const size_t n = s.size();
      for (size_t i = 0; i < std::min<size_t>(3, n); ++i) {
        if (s[n - 1 - i].is_number()) scale[2 - i] *= s[n - 1 - i].get<double>();
      }
    }
  };
  for (const Json& dataset : datasets) {
    if (!dataset.is_object() || !dataset.contains("path") || !dataset["path"].is_string()) {
      return Bad(name, "a dataset without a \"path\"");
    }
    NgffImage::Level level{dataset["path"].get<std::string>()};
    apply_scale(dataset.value("coordinateTransformations", Json()), level.scale);
    apply_scale(image.value("coordinateTransformations", Json()), level.scale);
    out.levels.push_back(std::move(level));
  }
  return out;
}

int NgffImage::spatial() const {
  int n = 0;
  for (auto it = axes.rbegin(); it != axes.rend() && *it == "space"; ++it) ++n;
  return axes.empty() ? 3 : n;
}

namespace {

// An image's attributes: NGFF 0.4's (.zattrs), or what 0.5 puts under "ome" (the version beside
// the multiscales, not in them) with stackproc's record beside it.
Json NgffJson(const NgffImage& image, const char* version) {
  Json axes = Json::array();
  for (const std::string& role : image.axes) {
    if (role == "t") axes.push_back({{"name", "t"}, {"type", "time"}});
    if (role == "c") axes.push_back({{"name", "c"}, {"type", "channel"}});
  }
  for (const char* axis : {"z", "y", "x"}) {
    Json a = {{"name", axis}, {"type", "space"}};
    if (!image.unit.empty()) a["unit"] = image.unit;
    axes.push_back(std::move(a));
  }
  const size_t lead = axes.size() - 3;  // t and c, unscaled
  Json datasets = Json::array();
  for (const NgffImage::Level& level : image.levels) {
    std::vector<double> scale(lead, 1.0);
    scale.insert(scale.end(), level.scale.begin(), level.scale.end());
    datasets.push_back({{"path", level.path},
                        {"coordinateTransformations", {{{"type", "scale"}, {"scale", scale}}}}});
  }
  Json multiscale = {{"axes", axes}, {"datasets", datasets}};
  if (std::string_view(version) == "0.4") multiscale["version"] = version;
  if (!image.name.empty()) multiscale["name"] = image.name;
  if (image.levels.size() > 1) {
    multiscale["type"] = "mean";
    multiscale["metadata"] = {{"description",
                               "each level the mean of 2x2 blocks of the one before (2x2x2 where z "
                               "is halved too)"},
                              {"method", "stackproc"}};
  }
  Json attributes = {{"multiscales", {multiscale}}};
  if (!image.channels.empty()) {
    Json channels = Json::array();
    for (const ChannelInfo& c : image.channels) {
      Json channel = {{"label", c.name}, {"active", true}};
      if (c.rgba) channel["color"] = absl::StrFormat("%06X", *c.rgba >> 8);
      if (c.window_start && c.window_end) {  // NGFF 0.4's omero names all four
        std::array<double, 2> range =
            image.pixel_range.value_or(std::array{*c.window_start, *c.window_end});
        range = {std::min(range[0], *c.window_start), std::max(range[1], *c.window_end)};
        channel["window"] = {{"min", range[0]},
                             {"max", range[1]},
                             {"start", *c.window_start},
                             {"end", *c.window_end}};
      }
      channels.push_back(std::move(channel));
    }
    attributes["omero"] = {{"channels", channels}};
  }
  if (std::string_view(version) != "0.4") {
    attributes = {{"ome", attributes}};
    attributes["ome"]["version"] = version;
  }
  if (!image.provenance.empty()) {
    attributes[kProvenanceKey] = Json::parse(image.provenance, nullptr, /*allow_exceptions=*/false);
  }
  return attributes;
}

}  // namespace

std::string FormatNgffAttributes(const NgffImage& image) {
  return NgffJson(image, "0.4").dump(2) + "\n";
}

std::string FormatNgffGroup(const NgffImage& image) {
  const Json group = {
      {"zarr_format", 3}, {"node_type", "group"}, {"attributes", NgffJson(image, "0.5")}};
  return group.dump(2) + "\n";
}

std::string FormatZgroup() { return Json{{"zarr_format", 2}}.dump(2) + "\n"; }

}  // namespace stackproc::core
