#include "core/stack/dimensions.h"

#include <algorithm>
#include <regex>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/base/status_macros.h"
#include "core/stack/metadata.h"

namespace stackproc::core {
namespace {

// The size of axis `axis` (one of "ZCT").
int64_t SizeOf(const Dimensions& d, char axis, int64_t slices) {
  return axis == 'T' ? d.times : axis == 'C' ? d.channels : slices;
}

// The start tags of every `element` (any namespace prefix) of an XML document, in order.
std::vector<std::string> StartTags(const std::string& xml, const std::string& element) {
  const std::regex tag("<([A-Za-z0-9_]+:)?" + element + "(\\s[^>]*)?/?>");
  std::vector<std::string> tags;
  for (auto it = std::sregex_iterator(xml.begin(), xml.end(), tag); it != std::sregex_iterator();
       ++it) {
    tags.push_back(it->str());
  }
  return tags;
}

std::optional<std::string> Attribute(const std::string& tag, const std::string& name) {
  const std::regex re("\\s" + name + "\\s*=\\s*\"([^\"]*)\"");
  std::smatch m;
  if (std::regex_search(tag, m, re)) return XmlUnescaped(m[1].str());
  return std::nullopt;
}

// A non-negative integer attribute: `fallback` when absent, InvalidArgument when malformed.
absl::StatusOr<int64_t> Count(const std::string& tag, const std::string& name, int64_t fallback) {
  const std::optional<std::string> text = Attribute(tag, name);
  if (!text) return fallback;
  int64_t value = 0;
  if (!absl::SimpleAtoi(*text, &value) || value < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the OME-XML's ", name, "=\"", *text, "\" is not a count"));
  }
  return value;
}

std::vector<ChannelInfo> OmeChannels(const std::string& xml) {
  std::vector<ChannelInfo> channels;
  for (const std::string& tag : StartTags(xml, "Channel")) {
    ChannelInfo channel;
    channel.name = Attribute(tag, "Name").value_or("");
    int64_t color = 0;
    if (std::optional<std::string> c = Attribute(tag, "Color"); c && absl::SimpleAtoi(*c, &color)) {
      channel.rgba = static_cast<uint32_t>(color);  // OME states it as a signed 32-bit RGBA
    }
    double nm = 0;
    if (std::optional<std::string> w = Attribute(tag, "EmissionWavelength");
        w && absl::SimpleAtod(*w, &nm)) {
      channel.emission_wavelength = nm;
    }
    channels.push_back(std::move(channel));
  }
  return channels;
}

// Every TiffData element must put its planes where DimensionOrder does: IFD i is plane i.
absl::Status CheckTiffData(const std::string& xml, const Dimensions& d, int64_t planes) {
  // Bio-Formats names the file itself in every TiffData's UUID: one name is one file.
  std::set<std::string> files;
  for (const std::string& tag : StartTags(xml, "UUID")) {
    if (std::optional<std::string> name = Attribute(tag, "FileName")) files.insert(*name);
  }
  if (files.size() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the OME-XML spreads the image over ", files.size(),
                     " files (TiffData UUID FileName): stackproc reads single-file OME-TIFFs"));
  }
  for (const std::string& tag : StartTags(xml, "TiffData")) {
    absl::StatusOr<int64_t> ifd = Count(tag, "IFD", 0), t = Count(tag, "FirstT", 0),
                            c = Count(tag, "FirstC", 0), z = Count(tag, "FirstZ", 0);
    for (const absl::StatusOr<int64_t>* v : {&ifd, &t, &c, &z}) {
      if (!v->ok()) return v->status();
    }
    const PlaneIndex first{*t, *c, *z};
    if (first.t >= d.times || first.c >= d.channels || first.z >= d.Slices(planes) ||
        d.PlaneOf(first, planes) != *ifd) {
      return absl::InvalidArgumentError(
          absl::StrCat("the OME-XML's ", tag, " puts IFD ", *ifd, " at t=", first.t, " c=", first.c,
                       " z=", first.z,
                       ", not where its DimensionOrder does: stackproc reads planes in "
                       "DimensionOrder"));
    }
  }
  return absl::OkStatus();
}

// Over `planes` pages of `samples` samples each: OME's SizeC counts the samples (an RGB image's
// SizeC is 3, over planes of one page each), its DimensionOrder and TiffData the pages. The
// result counts the pages' channels (SizeC / samples); its channel_info is the Channel elements
// when there is one per sample (WithSamples makes the channels whole).
absl::StatusOr<Dimensions> OmeDimensions(const std::string& xml, int64_t planes, int64_t samples) {
  const std::vector<std::string> images = StartTags(xml, "Image");
  const std::vector<std::string> pixels = StartTags(xml, "Pixels");
  if (images.size() > 1 || pixels.size() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the OME-XML describes ", std::max(images.size(), pixels.size()),
                     " images (series): stackproc reads OME-TIFFs of one image"));
  }
  if (pixels.empty()) return Dimensions{};
  const std::string& p = pixels[0];
  Dimensions d;
  absl::StatusOr<int64_t> t = Count(p, "SizeT", 1), c = Count(p, "SizeC", 1),
                          z = Count(p, "SizeZ", 1);
  for (const absl::StatusOr<int64_t>* v : {&t, &c, &z}) {
    if (!v->ok()) return v->status();
  }
  const std::string order = Attribute(p, "DimensionOrder").value_or("XYZCT");
  if (order.size() != 5 || order.compare(0, 2, "XY") != 0 || !CheckOrder(order.substr(2)).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the OME-XML's DimensionOrder=\"", order, "\" is not one OME defines"));
  }
  if (*c % samples != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the OME-XML says SizeC=", *c, ", the file's pages hold ", samples, " samples per pixel"));
  }
  *c /= samples;
  d.times = *t;
  d.channels = *c;
  d.order = order.substr(2);
  if (*t == 0 || *c == 0 || *z == 0 || *t > planes || *c > planes / *t || *z > planes / (*t * *c) ||
      *t * *c * *z != planes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the OME-XML says SizeT=", *t, " SizeC=", *c * samples, " SizeZ=", *z, " (",
                     *t * *c * *z, " planes), the file has ", planes));
  }
  if (std::vector<ChannelInfo> channels = OmeChannels(xml);
      std::ssize(channels) == d.channels * samples) {
    d.channel_info = std::move(channels);
  }
  STACKPROC_RETURN_IF_ERROR(CheckTiffData(xml, d, planes));
  return d;
}

absl::StatusOr<Dimensions> ImageJDimensions(absl::string_view description, int64_t planes) {
  const ImageJFields fields = ParseImageJDescription(description);
  auto count = [&](absl::string_view key) -> absl::StatusOr<std::optional<int64_t>> {
    const std::optional<std::string> text = ImageJField(fields, key);
    if (!text) return std::nullopt;
    int64_t value = 0;
    if (!absl::SimpleAtoi(*text, &value) || value <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("the ImageJ description's ", key, "=", *text, " is not a count"));
    }
    return value;
  };
  absl::StatusOr<std::optional<int64_t>> c = count("channels"), t = count("frames"),
                                         z = count("slices");
  for (const auto* v : {&c, &t, &z}) {
    if (!v->ok()) return v->status();
  }
  Dimensions d;
  if (!c->has_value() && !t->has_value())
    return d;  // a z-stack (images= and slices= may be
               // stale: UpdateMetadata restates them)
  d.order = "CZT";
  d.channels = c->value_or(1);
  d.times = t->value_or(1);
  if (d.channels > planes || d.times > planes / d.channels) {
    return absl::InvalidArgumentError(
        absl::StrCat("the ImageJ description says channels=", d.channels, " frames=", d.times,
                     ": more than the file's ", planes, " planes"));
  }
  const int64_t slices = z->value_or(planes / (d.channels * d.times));
  if (slices > planes / (d.channels * d.times) || d.channels * d.times * slices != planes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the ImageJ description says channels=", d.channels, " slices=", slices, " frames=",
        d.times, " (", d.channels * d.times * slices, " planes), the file has ", planes));
  }
  if (d.single()) d.order = "ZCT";  // one z-stack: the same in any order
  return d;
}

// Dimensions of pages of `samples` samples each, as planes of one sample: sample s of page p is
// plane p x samples + s, so the samples are channels stored fastest (a page's own channels, if
// it has any, are channels too only when they are stored fastest as well).
absl::StatusOr<Dimensions> WithSamples(Dimensions d, int64_t samples) {
  if (samples == 1) return d;
  if (d.channels > 1 && d.order.front() != 'C') {
    return absl::InvalidArgumentError(
        absl::StrCat("the file's pages hold ", samples, " samples per pixel and its ", d.channels,
                     " channels are not stored fastest (planes ", d.order,
                     "): its channels would not follow one another"));
  }
  d.channels *= samples;
  d.order.erase(d.order.find('C'), 1);
  d.order.insert(0, "C");
  if (!d.channel_info.empty() && std::ssize(d.channel_info) != d.channels) d.channel_info.clear();
  return d;
}

}  // namespace

PlaneIndex Dimensions::Of(int64_t plane, int64_t planes) const {
  const int64_t slices = Slices(planes);
  plane = picked.empty() ? first_plane + plane : picked[static_cast<size_t>(plane)];
  PlaneIndex index;
  for (char axis : order) {
    const int64_t size = SizeOf(*this, axis, slices);
    const int64_t at = plane % size;
    plane /= size;
    (axis == 'T' ? index.t : axis == 'C' ? index.c : index.z) = at;
  }
  return index;
}

int64_t Dimensions::ZStride() const {
  int64_t stride = 1;
  for (char axis : order) {
    if (axis == 'Z') break;
    stride *= SizeOf(*this, axis, 1);
  }
  return stride;
}

int64_t Dimensions::PlaneOf(const PlaneIndex& index, int64_t planes) const {
  const int64_t slices = Slices(planes);
  int64_t plane = 0;
  for (auto axis = order.rbegin(); axis != order.rend(); ++axis) {
    const int64_t at = *axis == 'T' ? index.t : *axis == 'C' ? index.c : index.z;
    plane = plane * SizeOf(*this, *axis, slices) + at;
  }
  return plane;
}

std::string Dimensions::Describe(int64_t planes) const {
  if (single()) return absl::StrCat(planes, " z");
  std::string text;
  if (times > 1) absl::StrAppend(&text, times, " time points x ");
  if (channels > 1) absl::StrAppend(&text, channels, " channels x ");
  absl::StrAppend(&text, Slices(planes), " z (planes ", order, ", fastest first)");
  return text;
}

absl::Status Dimensions::Check(int64_t planes) const {
  const int64_t whole = Whole(planes);
  // Each count at most the planes before they are multiplied: no product overflows.
  if (times < 1 || channels < 1 || times > whole || channels > whole / times ||
      whole % (times * channels) != 0 || whole < planes ||
      (!picked.empty() && std::ssize(picked) != planes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        planes, " planes are not ", times, " time points x ", channels, " channels x z-slices",
        whole != planes ? absl::StrCat(" (of ", whole, ")") : ""));
  }
  return CheckOrder(order);
}

Dimensions Dimensions::Range(int64_t first, int64_t count, int64_t planes) const {
  Dimensions range = *this;
  range.whole_planes = Whole(planes);
  range.first_plane = picked.empty() ? first_plane + first : 0;
  if (!picked.empty()) {
    range.picked.assign(picked.begin() + first, picked.begin() + first + count);
  }
  return range;
}

Dimensions Dimensions::Picked(std::vector<int64_t> planes_picked, int64_t planes) const {
  Dimensions some = *this;
  some.whole_planes = Whole(planes);
  for (int64_t& p : planes_picked) {
    p = picked.empty() ? first_plane + p : picked[static_cast<size_t>(p)];
  }
  some.first_plane = 0;
  some.picked = std::move(planes_picked);
  return some;
}

absl::StatusOr<std::vector<int64_t>> ParseChannelList(absl::string_view text) {
  std::vector<int64_t> channels;
  for (absl::string_view item : absl::StrSplit(text, '+')) {
    int64_t c = 0;
    if (!absl::SimpleAtoi(item, &c) || c < 0 ||
        std::find(channels.begin(), channels.end(), c) != channels.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("channels '", text,
                       "' is not valid (channel numbers from 0, each once, joined by '+': "
                       "0+2)"));
    }
    channels.push_back(c);
  }
  return channels;
}

absl::Status CheckOrder(absl::string_view order) {
  std::string sorted(order);
  std::sort(sorted.begin(), sorted.end());
  if (sorted != "CTZ") {
    return absl::InvalidArgumentError(
        absl::StrCat("plane order '", order, "' is not Z, C and T in some order"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Dimensions> DimensionsOf(absl::string_view description, int64_t pages,
                                        int64_t samples) {
  absl::StatusOr<Dimensions> d = Dimensions{};
  switch (ClassifyDescription(description)) {
    case DescriptionKind::kOmeXml:
      d = OmeDimensions(std::string(description), pages, samples);
      break;
    case DescriptionKind::kImageJ:
      d = ImageJDimensions(description, pages);
      break;
    default:
      break;
  }
  if (!d.ok()) return d.status();
  return WithSamples(*std::move(d), samples);
}

}  // namespace stackproc::core
