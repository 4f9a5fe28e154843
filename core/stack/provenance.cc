#include "core/stack/provenance.h"

#include <nlohmann/json.hpp>
#include <regex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "core/stack/metadata.h"

#ifndef STACKPROC_VERSION
#error "STACKPROC_VERSION is CMake's project version (core/CMakeLists.txt)"
#endif

namespace stackproc::core {
namespace {

using Json = nlohmann::ordered_json;

// The line an ImageJ (or free-text) description holds the record on, and its key in tifffile's
// JSON description.
constexpr char kLinePrefix[] = "stackproc=";
constexpr char kJsonKey[] = "\"stackproc\": ";

// The OME-XML annotation that holds the record (one M element per field).
const std::regex& OmeAnnotationPattern() {
  static const std::regex pattern(
      R"(<MapAnnotation\s[^>]*Namespace="stackproc"[^>]*>[\s\S]*?</MapAnnotation>)");
  return pattern;
}

// The fields an OME MapAnnotation states as JSON (the others are text as they are).
bool StatedAsJson(const std::string& key) {
  return key == "pipeline" || key == "input" || key == "pyramid";
}

Json ToJson(const Provenance& p) {
  Json j;
  j["version"] = p.version;
  j["pipeline"] = p.pipeline;
  if (!p.channels.empty()) j["channels"] = p.channels;
  if (!p.z_range.empty()) j["z_range"] = p.z_range;
  j["compression"] = p.compression;
  if (!p.chunks.empty()) j["chunks"] = p.chunks;
  if (p.pyramid != 0) j["pyramid"] = p.pyramid;
  const Provenance::Input& in = p.input;
  j["input"] = {{"name", in.name},
                {"shape", {{"t", in.t}, {"c", in.c}, {"z", in.z}, {"y", in.y}, {"x", in.x}}},
                {"type", in.type},
                {"bytes", in.bytes}};
  j["time"] = p.time;
  j["executor"] = p.executor;
  return j;
}

absl::StatusOr<Provenance> FromJson(const Json& j) {
  try {
    Provenance p;
    p.version = j.at("version").get<std::string>();
    p.pipeline = j.at("pipeline").get<std::vector<std::string>>();
    p.channels = j.value("channels", "");
    p.z_range = j.value("z_range", "");
    p.compression = j.at("compression").get<std::string>();
    p.chunks = j.value("chunks", "");
    p.pyramid = j.value("pyramid", 0);
    const Json& in = j.at("input");
    p.input.name = in.at("name").get<std::string>();
    const Json& shape = in.at("shape");
    for (auto [axis, value] : {std::pair{"t", &p.input.t},
                               {"c", &p.input.c},
                               {"z", &p.input.z},
                               {"y", &p.input.y},
                               {"x", &p.input.x}}) {
      *value = shape.at(axis).get<int64_t>();
    }
    p.input.type = in.at("type").get<std::string>();
    p.input.bytes = in.at("bytes").get<uint64_t>();
    p.time = j.at("time").get<std::string>();
    p.executor = j.at("executor").get<std::string>();
    return p;
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a stackproc provenance record (", e.what(), ")"));
  }
}

std::string XmlUnescaped(std::string text) {
  return absl::StrReplaceAll(
      text, {{"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&apos;", "'"}, {"&amp;", "&"}});
}

std::string OmeAnnotation(const Json& j) {
  std::string xml = absl::StrCat("<MapAnnotation ID=\"Annotation:", kProvenanceKey,
                                 "\" Namespace=\"", kProvenanceKey, "\"><Value>");
  for (const auto& [key, value] : j.items()) {
    absl::StrAppend(&xml, "<M K=\"", key, "\">",
                    XmlEscaped(value.is_string() ? value.get<std::string>() : value.dump()),
                    "</M>");
  }
  return xml + "</Value></MapAnnotation>";
}

std::optional<Provenance> TakeFromOme(std::string& xml) {
  std::smatch annotation;
  if (!std::regex_search(xml, annotation, OmeAnnotationPattern())) return std::nullopt;
  Json j = Json::object();
  static const std::regex kField(R"re(<M\s+K="([^"]*)"\s*>([^<]*)</M>)re");
  const std::string text = annotation.str();
  for (std::sregex_iterator it(text.begin(), text.end(), kField), end; it != end; ++it) {
    const std::string key = (*it)[1].str(), value = XmlUnescaped((*it)[2].str());
    j[key] =
        StatedAsJson(key) ? Json::parse(value, nullptr, /*allow_exceptions=*/false) : Json(value);
  }
  absl::StatusOr<Provenance> p = FromJson(j);
  if (!p.ok()) return std::nullopt;
  xml.erase(static_cast<size_t>(annotation.position()), static_cast<size_t>(annotation.length()));
  xml = std::regex_replace(
      xml, std::regex(R"(<StructuredAnnotations\s*>\s*</StructuredAnnotations>)"), "");
  return *std::move(p);
}

std::string WithOme(std::string xml, const Json& j) {
  const std::string annotation = OmeAnnotation(j);
  // OME's children come in order: StructuredAnnotations after the images, before any ROI.
  if (size_t at = xml.find("</StructuredAnnotations>"); at != std::string::npos) {
    return xml.insert(at, annotation);
  }
  size_t at = xml.find("<ROI");
  if (at == std::string::npos) at = xml.rfind("</OME>");
  if (at == std::string::npos) return xml;  // not a document this can add to
  return xml.insert(
      at, absl::StrCat("<StructuredAnnotations>", annotation, "</StructuredAnnotations>"));
}

}  // namespace

absl::string_view StackprocVersion() { return STACKPROC_VERSION; }

std::string ProvenanceTime(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", time, absl::UTCTimeZone());
}

std::string ProvenanceJson(const Provenance& provenance, bool indented) {
  return ToJson(provenance).dump(indented ? 2 : -1);
}

absl::StatusOr<Provenance> ParseProvenanceJson(absl::string_view json) {
  const Json j = Json::parse(json.begin(), json.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return absl::InvalidArgumentError("not a stackproc provenance record (not JSON)");
  return FromJson(j);
}

std::string DescriptionWithProvenance(const std::string& description,
                                      const Provenance& provenance) {
  const Json record = ToJson(provenance);
  switch (ClassifyDescription(description)) {
    case DescriptionKind::kOmeXml:
      return WithOme(description, record);
    case DescriptionKind::kTifffileJson: {
      // The record as the object's last key, the rest as tifffile wrote it.
      const Json j = Json::parse(description, nullptr, /*allow_exceptions=*/false);
      const size_t last = description.rfind('}');
      if (!j.is_object() || last == std::string::npos) break;  // a line, as for any text
      return absl::StrCat(description.substr(0, last), j.empty() ? "" : ", ", kJsonKey,
                          record.dump(), description.substr(last));
    }
    default:
      break;
  }
  std::string out = description;
  if (!out.empty() && out.back() != '\n') out += '\n';
  // '=' only in JSON strings, escaped as JSON allows: the line is then one key=value, as
  // tifffile's ImageJ reader splits lines (at every '=').
  return absl::StrCat(out, kLinePrefix, absl::StrReplaceAll(record.dump(), {{"=", "\\u003d"}}),
                      "\n");
}

std::optional<Provenance> TakeProvenance(std::string& description) {
  switch (ClassifyDescription(description)) {
    case DescriptionKind::kOmeXml:
      return TakeFromOme(description);
    case DescriptionKind::kTifffileJson: {
      // As DescriptionWithProvenance put it: the last key.
      const size_t key = description.rfind(kJsonKey), last = description.rfind('}');
      if (key == std::string::npos || last == std::string::npos || last < key) return std::nullopt;
      const size_t value = key + sizeof(kJsonKey) - 1;
      absl::StatusOr<Provenance> p =
          ParseProvenanceJson(absl::string_view(description).substr(value, last - value));
      if (!p.ok()) return std::nullopt;
      const size_t from = key >= 2 && description.compare(key - 2, 2, ", ") == 0 ? key - 2 : key;
      description.erase(from, last - from);
      return *std::move(p);
    }
    default:
      break;
  }
  const size_t at = description.rfind(kLinePrefix);
  if (at == std::string::npos || (at > 0 && description[at - 1] != '\n')) return std::nullopt;
  size_t end = description.find('\n', at);
  if (end == std::string::npos) end = description.size();
  const size_t start = at + sizeof(kLinePrefix) - 1;
  absl::StatusOr<Provenance> p =
      ParseProvenanceJson(absl::string_view(description).substr(start, end - start));
  if (!p.ok()) return std::nullopt;
  description.erase(at, std::min(end + 1, description.size()) - at);
  return *std::move(p);
}

}  // namespace stackproc::core
