#include "core/stack/provenance.h"

#include <nlohmann/json.hpp>

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

// The fields an OME MapAnnotation states as JSON (the others are text as they are).
bool StatedAsJson(const std::string& key) {
  return key == "pipeline" || key == "input" || key == "pyramid" || key == "zarr_format";
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
  if (p.zarr_format != 0) j["zarr_format"] = p.zarr_format;
  if (!p.shards.empty()) j["shards"] = p.shards;
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
    p.zarr_format = j.value("zarr_format", 0);
    p.shards = j.value("shards", "");
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

// The record as JSON text; a name that is not UTF-8 (a file name may be anything) has its bad
// bytes replaced rather than failing the write.
std::string Dump(const Json& j, int indent = -1) {
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

// An OME-XML document's root element's namespace prefix ("" or "ome:"), from its end tag.
std::string OmePrefix(const std::string& xml) {
  const size_t end = xml.rfind("</");
  const size_t colon = end == std::string::npos ? std::string::npos : xml.find(':', end);
  const size_t close = end == std::string::npos ? std::string::npos : xml.find('>', end);
  return colon != std::string::npos && colon < close ? xml.substr(end + 2, colon - end - 1) : "";
}

// Where element `name` (with `prefix`) starts at or after `from`: "<ROI" but not "<ROIRef".
size_t FindElement(const std::string& xml, const std::string& prefix, const std::string& name,
                   size_t from = 0) {
  const std::string open = absl::StrCat("<", prefix, name);
  for (size_t at = xml.find(open, from); at != std::string::npos; at = xml.find(open, at + 1)) {
    const char next = at + open.size() < xml.size() ? xml[at + open.size()] : '\0';
    if (next == '>' || next == '/' || next == ' ' || next == '\t' || next == '\n' || next == '\r') {
      return at;
    }
  }
  return std::string::npos;
}

std::string OmeAnnotation(const Json& j, const std::string& prefix) {
  std::string xml = absl::StrCat("<", prefix, "MapAnnotation ID=\"Annotation:", kProvenanceKey,
                                 "\" Namespace=\"", kProvenanceKey, "\"><", prefix, "Value>");
  for (const auto& [key, value] : j.items()) {
    absl::StrAppend(&xml, "<", prefix, "M K=\"", key, "\">",
                    XmlEscaped(value.is_string() ? value.get<std::string>() : Dump(value)), "</",
                    prefix, "M>");
  }
  return absl::StrCat(xml, "</", prefix, "Value></", prefix, "MapAnnotation>");
}

// Every stackproc annotation taken out of an OME-XML document (found by plain search: a
// regex over a crafted document could recurse deep); the last that parses is the record.
std::optional<Provenance> TakeFromOme(std::string& xml) {
  const std::string prefix = OmePrefix(xml);
  const std::string end_tag = absl::StrCat("</", prefix, "MapAnnotation>");
  std::optional<Provenance> record;
  for (size_t at = FindElement(xml, prefix, "MapAnnotation"); at != std::string::npos;
       at = FindElement(xml, prefix, "MapAnnotation", at)) {
    const size_t start_end = xml.find('>', at);
    if (start_end == std::string::npos) break;
    if (xml[start_end - 1] == '/' ||
        xml.substr(at, start_end - at).find("Namespace=\"stackproc\"") == std::string::npos) {
      at = start_end;  // another's (or empty): the next one
      continue;
    }
    const size_t end = xml.find(end_tag, start_end);
    if (end == std::string::npos) break;
    Json j = Json::object();
    const std::string field_open = absl::StrCat("<", prefix, "M K=\"");
    const std::string field_close = absl::StrCat("</", prefix, "M>");
    for (size_t f = xml.find(field_open, start_end); f != std::string::npos && f < end;
         f = xml.find(field_open, f + 1)) {
      const size_t key_end = xml.find('"', f + field_open.size());
      const size_t value_start = key_end == std::string::npos ? key_end : xml.find('>', key_end);
      const size_t value_end = xml.find(field_close, f);
      if (value_start == std::string::npos || value_end == std::string::npos || value_end > end) {
        break;
      }
      const std::string key = xml.substr(f + field_open.size(), key_end - f - field_open.size());
      const std::string value =
          XmlUnescaped(xml.substr(value_start + 1, value_end - value_start - 1));
      j[key] =
          StatedAsJson(key) ? Json::parse(value, nullptr, /*allow_exceptions=*/false) : Json(value);
    }
    if (absl::StatusOr<Provenance> p = FromJson(j); p.ok()) record = *std::move(p);
    xml.erase(at, end + end_tag.size() - at);
  }
  // An annotations element left empty goes too.
  const std::string empty =
      absl::StrCat("<", prefix, "StructuredAnnotations></", prefix, "StructuredAnnotations>");
  if (const size_t at = xml.find(empty); at != std::string::npos) xml.erase(at, empty.size());
  return record;
}

std::string WithOme(std::string xml, const Json& j) {
  const std::string prefix = OmePrefix(xml);
  const std::string annotation = OmeAnnotation(j, prefix);
  // OME's children come in order: StructuredAnnotations after the images, before any ROI.
  if (size_t at = xml.find(absl::StrCat("</", prefix, "StructuredAnnotations>"));
      at != std::string::npos) {
    return xml.insert(at, annotation);
  }
  size_t at = FindElement(xml, prefix, "ROI");
  if (at == std::string::npos) at = xml.rfind(absl::StrCat("</", prefix, "OME>"));
  if (at == std::string::npos) return xml;  // not a document this can add to
  return xml.insert(at, absl::StrCat("<", prefix, "StructuredAnnotations>", annotation, "</",
                                     prefix, "StructuredAnnotations>"));
}

}  // namespace

absl::string_view StackprocVersion() { return STACKPROC_VERSION; }

std::string ProvenanceTime(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", time, absl::UTCTimeZone());
}

std::string ProvenanceJson(const Provenance& provenance, bool indented) {
  return Dump(ToJson(provenance), indented ? 2 : -1);
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
                          Dump(record), description.substr(last));
    }
    default:
      break;
  }
  std::string out = description;
  if (!out.empty() && out.back() != '\n') out += '\n';
  // '=' only in JSON strings, escaped as JSON allows: the line is then one key=value, as
  // tifffile's ImageJ reader splits lines (at every '=').
  return absl::StrCat(out, kLinePrefix, absl::StrReplaceAll(Dump(record), {{"=", "\\u003d"}}),
                      "\n");
}

std::optional<Provenance> TakeProvenance(std::string& description) {
  switch (ClassifyDescription(description)) {
    case DescriptionKind::kOmeXml:
      return TakeFromOme(description);
    case DescriptionKind::kTifffileJson: {
      // As DescriptionWithProvenance put it: the last key.
      // As DescriptionWithProvenance put it: the last key (else a line, as any text has it: a
      // description that only looked like tifffile's).
      const size_t key = description.rfind(kJsonKey), last = description.rfind('}');
      if (key == std::string::npos || last == std::string::npos || last < key) break;
      const size_t value = key + sizeof(kJsonKey) - 1;
      absl::StatusOr<Provenance> p =
          ParseProvenanceJson(absl::string_view(description).substr(value, last - value));
      if (!p.ok()) break;
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
