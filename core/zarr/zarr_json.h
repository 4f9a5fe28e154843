// The JSON fields of Zarr metadata that v2's and v3's parsers share (zarr_metadata.cc,
// zarr_v3.cc): each refuses what is not of its type with InvalidArgument naming the file.
#pragma once

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/stack/pixel_type.h"

namespace stackproc::core::zarr_json {

using Json = nlohmann::json;

inline absl::Status Bad(const std::string& name, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(name, ": ", why));
}

inline absl::StatusOr<Json> ParseJson(absl::string_view text, const std::string& name) {
  Json json = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) return Bad(name, "not a JSON object");
  return json;
}

// The string at `json[key]`, or `otherwise` when there is none or it is not a string (never
// nlohmann's exception: metadata of the wrong type must not end the process).
inline std::string StringAt(const Json& json, const char* key, std::string otherwise = "") {
  if (!json.is_object()) return otherwise;
  auto it = json.find(key);
  return it != json.end() && it->is_string() ? it->get<std::string>() : otherwise;
}

// The integer at `json[key]`, if it is one (a JSON number without a fraction).
inline std::optional<int64_t> IntAt(const Json& json, const char* key) {
  auto it = json.find(key);
  if (it == json.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

inline absl::StatusOr<std::vector<int64_t>> IntArray(const Json& json, const char* key,
                                                     const std::string& name) {
  auto it = json.find(key);
  if (it == json.end() || !it->is_array() || it->empty()) {
    return Bad(name, absl::StrCat("\"", key, "\" must be a list of lengths"));
  }
  std::vector<int64_t> out;
  for (const Json& v : *it) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0) {
      return Bad(name, absl::StrCat("\"", key, "\" holds ", v.dump(), ": not a length"));
    }
    out.push_back(v.get<int64_t>());
  }
  return out;
}

inline absl::StatusOr<double> ParseFill(const Json& json, PixelType type, const std::string& name) {
  if (json.is_null()) return 0.0;
  if (json.is_number()) return json.get<double>();
  if (json.is_string() && type == PixelType::kFloat32) {
    const std::string s = json.get<std::string>();
    if (s == "NaN") return std::numeric_limits<double>::quiet_NaN();
    if (s == "Infinity") return std::numeric_limits<double>::infinity();
    if (s == "-Infinity") return -std::numeric_limits<double>::infinity();
  }
  return Bad(name, absl::StrCat("fill_value ", json.dump(), " is not a number"));
}

}  // namespace stackproc::core::zarr_json
