#include "core/io/plane_names.h"

#include <algorithm>
#include <array>
#include <map>
#include <regex>
#include <set>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace stackproc::core {
namespace {

// A field pattern ("img_c{c}_z{z}.tif"): {z}, and {c} and {t} where the names have them, each
// a run of digits; the rest as it is.
struct FieldPattern {
  std::regex regex;
  std::string fields;  // the regex's groups' axes in order: "cz"

  static absl::StatusOr<FieldPattern> Parse(const std::string& name) {
    static const std::regex kField(R"(\{([tcz])\})");
    static const std::regex kSpecial(R"([.^$|()\[\]{}*+?\\])");
    FieldPattern p;
    std::string regex;
    auto literal = [&](const std::string& text) {
      regex += std::regex_replace(text, kSpecial, "\\$&");
    };
    std::string rest = name;
    for (std::smatch m; std::regex_search(rest, m, kField); rest = m.suffix().str()) {
      literal(m.prefix().str());
      regex += R"((\d+))";
      p.fields += m[1].str();
    }
    literal(rest);
    const auto count = [&](char axis) { return std::ranges::count(p.fields, axis); };
    if (p.fields.empty() || count('z') > 1 || count('c') > 1 || count('t') > 1 ||
        absl::StrContains(name, "}{") ||
        absl::StrContains(std::regex_replace(name, kField, ""), '{') ||
        absl::StrContains(std::regex_replace(name, kField, ""), '}') ||
        absl::StrContains(name, '%')) {
      return absl::InvalidArgumentError(absl::StrCat(
          name,
          ": a field pattern has {z}, {c} and {t} at most once each (one at least), text "
          "between them, and no other braces or % (e.g. img_c{c}_z{z}.tif)"));
    }
    p.regex = std::regex(regex);
    return p;
  }
};

}  // namespace

absl::StatusOr<std::optional<Dimensions>> NamedDimensions(const std::vector<std::string>& paths) {
  static const std::regex kName(R"(^(t(\d+)_)?(c(\d+)_)?\D*(\d+)[^/]*$)");
  std::vector<PlaneIndex> at;
  bool by_time = false, by_channel = false;
  for (const std::string& path : paths) {
    const std::string name = path.substr(path.find_last_of('/') + 1);
    std::smatch m;
    if (!std::regex_match(name, m, kName)) return std::nullopt;
    if (at.empty()) by_time = m[1].matched, by_channel = m[3].matched;
    if (m[1].matched != by_time || m[3].matched != by_channel) return std::nullopt;
    PlaneIndex index;
    if (!(m[1].matched ? absl::SimpleAtoi(m[2].str(), &index.t) : true) ||
        !(m[3].matched ? absl::SimpleAtoi(m[4].str(), &index.c) : true)) {
      return std::nullopt;
    }
    at.push_back(index);
  }
  if (!by_time && !by_channel) return std::nullopt;
  Dimensions dims;
  for (const PlaneIndex& index : at) {
    dims.times = std::max(dims.times, index.t + 1);
    dims.channels = std::max(dims.channels, index.c + 1);
  }
  const int64_t planes = std::ssize(paths);
  if (planes % (dims.times * dims.channels) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(paths.front(), ": ", planes, " planes named by ",
                                                   dims.times, " time points and ", dims.channels,
                                                   " channels: each needs as many z-planes (one is "
                                                   "missing or extra)"));
  }
  for (int64_t p = 0; p < planes; ++p) {
    const PlaneIndex want = dims.Of(p, planes);
    const PlaneIndex& got = at[static_cast<size_t>(p)];
    if (got.t != want.t || got.c != want.c) {
      return absl::InvalidArgumentError(absl::StrCat(
          paths[static_cast<size_t>(p)], ": in natural order this is plane ", want.z,
          " of time point ", want.t, ", channel ", want.c, "; a plane is missing or extra"));
    }
  }
  return dims;
}

absl::StatusOr<PlaneFiles> Fielded(const Files& files, const std::string& dir,
                                   const std::string& name, const std::string& input) {
  STACKPROC_ASSIGN_OR_RETURN(FieldPattern pattern, FieldPattern::Parse(name));
  STACKPROC_ASSIGN_OR_RETURN(std::vector<std::string> names, files.List(dir.empty() ? "." : dir));
  std::map<std::array<int64_t, 3>, std::string> found;  // by t, c, z
  std::array<std::set<int64_t>, 3> values;
  for (const std::string& candidate : names) {
    std::smatch m;
    if (absl::StartsWith(candidate, ".") || !std::regex_match(candidate, m, pattern.regex)) {
      continue;
    }
    std::array<int64_t, 3> at = {0, 0, 0};
    bool ok = true;
    for (size_t i = 0; i < pattern.fields.size(); ++i) {
      const size_t axis = std::string_view("tcz").find(pattern.fields[i]);
      ok = ok && absl::SimpleAtoi(m[static_cast<int>(i) + 1].str(), &at[axis]) && at[axis] >= 0;
    }
    if (!ok) continue;
    auto [it, added] = found.emplace(at, candidate);
    if (!added) {
      return absl::InvalidArgumentError(
          absl::StrCat(input, ": ", it->second, " and ", candidate, " are the same plane"));
    }
    for (size_t axis = 0; axis < 3; ++axis) values[axis].insert(at[axis]);
  }
  if (found.empty()) return absl::NotFoundError(absl::StrCat(input, ": no file matches"));
  constexpr const char* kAxis[] = {"time point", "channel", "z-slice"};
  for (size_t axis = 0; axis < 3; ++axis) {
    const std::set<int64_t>& v = values[axis];
    if (*v.rbegin() - *v.begin() + 1 != std::ssize(v)) {
      int64_t missing = *v.begin();
      while (v.contains(missing)) ++missing;
      return absl::InvalidArgumentError(absl::StrCat(input, ": no file of ", kAxis[axis], " ",
                                                     missing, " (there are ", *v.begin(), " to ",
                                                     *v.rbegin(), ")"));
    }
  }
  const size_t whole = values[0].size() * values[1].size() * values[2].size();
  if (found.size() != whole) {
    for (int64_t t : values[0]) {
      for (int64_t c : values[1]) {
        for (int64_t z : values[2]) {
          if (!found.contains({t, c, z})) {
            return absl::InvalidArgumentError(
                absl::StrCat(input, ": no file of time point ", t, ", channel ", c, ", z-slice ", z,
                             " (", found.size(), " of the ", whole, " planes are there)"));
          }
        }
      }
    }
  }
  PlaneFiles planes;
  for (const auto& [at, file] : found)
    planes.paths.push_back(dir.empty() ? file : absl::StrCat(dir, "/", file));  // t, c, z order
  if (values[0].size() > 1 || values[1].size() > 1) {
    Dimensions dims;
    dims.times = std::ssize(values[0]);
    dims.channels = std::ssize(values[1]);
    planes.dims = dims;
  }
  return planes;
}

absl::Status CheckNoUnnamedAxes(const std::string& input, const std::vector<std::string>& paths) {
  // c1, ch01, channel000, t3, tm0002, time000000001: after a separator (or at the start), and
  // before one (or the end).
  static const std::regex kAxis(
      R"((?:^|[^A-Za-z0-9])(channel|ch|c|time|tm|t)(\d{1,15})(?=[_\-. ]|$))", std::regex::icase);
  std::map<char, std::set<int64_t>> seen;  // 'c' -> 0, 1
  std::set<std::string> rest;              // the names without those numbers
  for (const std::string& path : paths) {
    const std::string name = path.substr(path.find_last_of('/') + 1);
    for (std::sregex_iterator m(name.begin(), name.end(), kAxis), end; m != end; ++m) {
      int64_t value = 0;
      if (absl::SimpleAtoi((*m)[2].str(), &value)) {
        seen[absl::ascii_tolower(static_cast<unsigned char>((*m)[1].str()[0]))].insert(value);
      }
    }
    rest.insert(std::regex_replace(name, kAxis, "$1"));
  }
  // Refused where the numbers run 0, 1, ... (or 1, 2, ...) without a gap, as indices do (not a
  // time of day), and the names vary otherwise too (z beside them): one axis would be read as
  // z. A folder of single channels or time points (img_c1.tif, img_c2.tif) reads as before.
  for (const auto& [axis, numbers] : seen) {
    if (numbers.size() < 2 || rest.size() < 2 ||
        *numbers.rbegin() - *numbers.begin() + 1 != std::ssize(numbers)) {
      continue;
    }
    const std::string first = paths.front().substr(paths.front().find_last_of('/') + 1);
    return absl::InvalidArgumentError(absl::StrCat(
        input, ": the planes' names carry ", axis == 'c' ? "a channel" : "a time point", " (",
        first, ", ...): name them with a field pattern, e.g. FOLDER/img_c{c}_z{z}.tif ({c} the ",
        "channel, {t} the time point, {z} the slice), rather than read every plane as a z-slice"));
  }
  return absl::OkStatus();
}

}  // namespace stackproc::core
