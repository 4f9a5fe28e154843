#include "core/io/sequence_io.h"

#include <fcntl.h>
#include <fnmatch.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "core/base/status_macros.h"
#include "core/io/formats.h"
#include "core/io/tiff_io.h"

namespace stackproc::core {
namespace {

// The most of a folder's provenance record read.
constexpr size_t kMaxSidecarBytes = 1 << 20;

// "planes/z%04d.tif" -> "planes" and "z%04d.tif"; "z.tif" -> "" and "z.tif".
std::pair<std::string, std::string> Split(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {"", path};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

std::string Join(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : absl::StrCat(dir, "/", name);
}

// A printf pattern with one integer conversion: %d, %Nd or %0Nd.
struct NumberPattern {
  std::string prefix, suffix;
  size_t width = 0;
  bool zeros = false;

  static absl::StatusOr<NumberPattern> Parse(const std::string& name) {
    NumberPattern p;
    const size_t percent = name.find('%');
    size_t i = percent + 1;
    if (i < name.size() && name[i] == '0') p.zeros = true, ++i;
    while (i < name.size() && absl::ascii_isdigit(static_cast<unsigned char>(name[i]))) {
      p.width = p.width * 10 + static_cast<size_t>(name[i++] - '0');
    }
    if (i >= name.size() || name[i] != 'd' || name.find('%', i) != std::string::npos ||
        p.width > 18) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": a plane pattern has one %d, %Nd or %0Nd (e.g. z%04d.tif) and no other %"));
    }
    p.prefix = name.substr(0, percent);
    p.suffix = name.substr(i + 1);
    return p;
  }

  std::string Format(int64_t n) const {
    std::string digits = absl::StrCat(n);
    if (digits.size() < width) digits.insert(0, width - digits.size(), zeros ? '0' : ' ');
    return absl::StrCat(prefix, digits, suffix);
  }

  // The number `name` was made from, if the pattern makes it.
  std::optional<int64_t> Match(const std::string& name) const {
    if (name.size() <= prefix.size() + suffix.size() || !absl::StartsWith(name, prefix) ||
        !absl::EndsWith(name, suffix)) {
      return std::nullopt;
    }
    std::string middle = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    int64_t n = 0;
    if (!absl::SimpleAtoi(absl::StripLeadingAsciiWhitespace(middle), &n) || n < 0 ||
        Format(n) != name) {
      return std::nullopt;
    }
    return n;
  }
};

absl::StatusOr<std::vector<std::string>> Numbered(const Files& files, const std::string& dir,
                                                  const std::string& name,
                                                  const std::string& input) {
  STACKPROC_ASSIGN_OR_RETURN(NumberPattern pattern, NumberPattern::Parse(name));
  STACKPROC_ASSIGN_OR_RETURN(std::vector<std::string> names, files.List(dir.empty() ? "." : dir));
  std::vector<std::pair<int64_t, std::string>> found;
  for (const std::string& candidate : names) {
    if (std::optional<int64_t> n = pattern.Match(candidate)) found.emplace_back(*n, candidate);
  }
  if (found.empty()) return absl::NotFoundError(absl::StrCat(input, ": no file matches"));
  std::sort(found.begin(), found.end());
  std::vector<std::string> paths;
  for (size_t i = 0; i < found.size(); ++i) {
    if (i > 0 && found[i].first != found[i - 1].first + 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          input, ": plane ", Join(dir, pattern.Format(found[i - 1].first + 1)), " is missing (",
          found[i - 1].second, " is there, then ", found[i].second, ")"));
    }
    paths.push_back(Join(dir, found[i].second));
  }
  return paths;
}

absl::StatusOr<std::vector<std::string>> Matching(
    const Files& files, const std::string& dir, const std::string& input,
    const std::function<bool(const std::string&)>& keep) {
  STACKPROC_ASSIGN_OR_RETURN(std::vector<std::string> names, files.List(dir.empty() ? "." : dir));
  std::vector<std::string> kept;
  for (const std::string& name : names) {
    if (!absl::StartsWith(name, ".") && keep(name)) kept.push_back(name);
  }
  if (kept.empty()) return absl::NotFoundError(absl::StrCat(input, ": no TIFF file matches"));
  std::sort(kept.begin(), kept.end(), NaturalLess);
  for (std::string& name : kept) name = Join(dir, name);
  return kept;
}

}  // namespace

bool IsTiffName(absl::string_view name) {
  return absl::EndsWithIgnoreCase(name, ".tif") || absl::EndsWithIgnoreCase(name, ".tiff");
}

bool NaturalLess(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const bool da = absl::ascii_isdigit(static_cast<unsigned char>(a[i]));
    const bool db = absl::ascii_isdigit(static_cast<unsigned char>(b[j]));
    if (da && db) {
      size_t ei = i, ej = j;
      while (ei < a.size() && absl::ascii_isdigit(static_cast<unsigned char>(a[ei]))) ++ei;
      while (ej < b.size() && absl::ascii_isdigit(static_cast<unsigned char>(b[ej]))) ++ej;
      // By value: without leading zeros, the longer run is the larger number.
      absl::string_view x(a.data() + i, ei - i), y(b.data() + j, ej - j);
      while (x.size() > 1 && x.front() == '0') x.remove_prefix(1);
      while (y.size() > 1 && y.front() == '0') y.remove_prefix(1);
      if (x.size() != y.size()) return x.size() < y.size();
      if (x != y) return x < y;
      if (ei - i != ej - j) return ei - i < ej - j;  // "7" before "007"
      i = ei, j = ej;
      continue;
    }
    if (a[i] != b[j]) return a[i] < b[j];
    ++i, ++j;
  }
  return a.size() - i < b.size() - j;
}

absl::StatusOr<std::optional<PlaneFiles>> ListPlanes(const Files& files, const std::string& input) {
  auto [dir, name] = Split(input);
  // A file may have "%", "{" or "*" in its name: then it is that file.
  if (name.find_first_of("%{*?[") != std::string::npos && !files.IsDirectory(input) &&
      files.Input(input).ok()) {
    return std::nullopt;
  }
  if ((absl::StrContains(name, "{t}") || absl::StrContains(name, "{c}") ||
       absl::StrContains(name, "{z}")) &&
      !files.IsDirectory(input)) {
    return Fielded(files, dir, name, input);
  }
  absl::StatusOr<std::vector<std::string>> paths;
  if (name.find('%') != std::string::npos) {
    paths = Numbered(files, dir, name, input);
  } else if (name.find_first_of("*?[") != std::string::npos) {
    if (dir.find_first_of("*?[%{") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(input, ": wildcards and patterns go in the file name, not the folders"));
    }
    paths = Matching(files, dir, input, [&, &name = name](const std::string& candidate) {
      return ::fnmatch(name.c_str(), candidate.c_str(), FNM_PERIOD) == 0;
    });
  } else if (name.empty() || files.IsDirectory(input)) {
    const std::string folder = name.empty() ? dir : input;
    paths = Matching(files, folder, input, IsTiffName);
  } else {
    return std::nullopt;
  }
  if (!paths.ok()) return paths.status();
  PlaneFiles planes{*std::move(paths), std::nullopt};
  STACKPROC_ASSIGN_OR_RETURN(planes.dims, NamedDimensions(planes.paths));
  if (!planes.dims && name.find('%') == std::string::npos) {
    STACKPROC_RETURN_IF_ERROR(CheckNoUnnamedAxes(input, planes.paths));
  }
  return planes;
}

absl::StatusOr<std::unique_ptr<SequenceSource>> SequenceSource::Open(const Files& files,
                                                                     PlaneFiles listed,
                                                                     const StackLimits& limits) {
  const std::optional<Dimensions>& named = listed.dims;
  std::vector<std::string>& paths = listed.paths;
  std::vector<File> planes;
  StackInfo info;
  int64_t depth = 0;
  for (std::string& path : paths) {
    STACKPROC_ASSIGN_OR_RETURN(InputFile file, files.Input(path));
    STACKPROC_ASSIGN_OR_RETURN(TiffInfo tiff, ProbeTiff(file, limits));
    if (planes.empty()) {
      info.shape = tiff.shape;
      info.type = tiff.pixel_type;
      info.metadata = tiff.metadata;
    } else if (tiff.shape.height != info.shape.height || tiff.shape.width != info.shape.width ||
               tiff.pixel_type != info.type || tiff.samples != planes.front().info.samples) {
      auto kind = [](const TiffInfo& t) {
        return absl::StrCat(t.shape.width, "x", t.shape.height, " ", PixelTypeName(t.pixel_type),
                            t.samples > 1 ? absl::StrCat(" x ", t.samples, " samples") : "");
      };
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": ", kind(tiff), " differs from ", planes.front().path, " (",
          kind(planes.front().info), "): every plane must have the same size and type"));
    }
    const int64_t pages = tiff.shape.depth;
    planes.push_back({std::move(path), std::move(tiff), depth});
    depth += pages;
    if (depth > limits.max_pages) {
      return limits.DepthRefused(absl::StrCat("the sequence up to ", planes.back().path));
    }
  }
  info.shape.depth = depth;
  STACKPROC_RETURN_IF_ERROR(limits.Check("the sequence", info.shape, info.type));
  if (named) {
    if (depth != std::ssize(planes)) {
      return absl::InvalidArgumentError(
          "a sequence whose names say time points and channels has one page a file");
    }
    info.metadata.dims = *named;
    info.metadata.description.clear();  // the first plane's own: not the stack's
  }
  // Files of several samples each: a file's description counts its own planes, not the folder's
  // (the writer states the stack's from its dimensions).
  if (planes.front().info.samples > 1) info.metadata.description.clear();
  // What made the folder, in its sidecar (a plane's own record, if any, is not the folder's).
  info.metadata.provenance.reset();
  const std::string sidecar = Join(Split(planes.front().path).first, kProvenanceSidecar);
  if (absl::StatusOr<InputFile> file = files.Input(sidecar); file.ok()) {
    absl::StatusOr<std::vector<uint8_t>> bytes = ReadWholeFile(*file, kMaxSidecarBytes);
    absl::StatusOr<Provenance> record =
        bytes.ok() ? ParseProvenanceJson(std::string(bytes->begin(), bytes->end()))
                   : absl::StatusOr<Provenance>(bytes.status());
    if (record.ok()) info.metadata.provenance = *std::move(record);
  }
  return std::unique_ptr<SequenceSource>(
      new SequenceSource(files, std::move(planes), std::move(info)));
}

absl::Status SequenceSource::Read(int64_t z, uint8_t* buffer) {
  auto after = std::upper_bound(files_of_planes_.begin(), files_of_planes_.end(), z,
                                [](int64_t plane, const File& f) { return plane < f.first_plane; });
  if (z < 0 || z >= info_.shape.depth || after == files_of_planes_.begin()) {
    return absl::OutOfRangeError(absl::StrCat("no plane ", z));
  }
  const File& file = *std::prev(after);
  STACKPROC_ASSIGN_OR_RETURN(InputFile input, files_.Input(file.path));
  return ReadTiffPage(input, file.info, z - file.first_plane, buffer);
}

absl::StatusOr<std::optional<SequenceOutput>> ParseSequenceOutput(const std::string& output) {
  if (absl::EndsWith(output, "/")) {
    const std::string folder(absl::StripSuffix(output, "/"));
    if (folder.empty() || absl::EndsWith(folder, "/")) {
      return absl::InvalidArgumentError(absl::StrCat(output, ": not a folder name"));
    }
    return SequenceOutput{folder, "z%04d.tif"};
  }
  auto [dir, name] = Split(output);
  if (name.find('%') == std::string::npos) return std::nullopt;
  STACKPROC_RETURN_IF_ERROR(NumberPattern::Parse(name).status());
  if (dir.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        output, ": a sequence is written into a folder of its own (e.g. planes/", name, ")"));
  }
  return SequenceOutput{dir, name};
}

SequenceSink::SequenceSink(OutputTarget folder, std::string pattern, WriteOptions options)
    : folder_(std::move(folder)), pattern_(std::move(pattern)), options_(std::move(options)) {}

absl::Status SequenceSink::Open(const StackInfo& output, int64_t window_slices,
                                std::function<void(int64_t)> release) {
  (void)window_slices;
  (void)release;
  STACKPROC_ASSIGN_OR_RETURN(NumberPattern pattern, NumberPattern::Parse(pattern_));
  // Planes of several time points or channels are named by them too: t003_c01_z0042.tif.
  const Dimensions dims = output.metadata.dims;
  const int64_t planes = output.shape.depth;
  const auto digits = [](int64_t n) { return static_cast<int>(absl::StrCat(n - 1).size()); };
  name_of_ = [pattern, dims, planes, digits](int64_t p) {
    if (dims.single()) return pattern.Format(p);
    const PlaneIndex at = dims.Of(p, planes);
    std::string name;
    if (dims.times > 1) name += absl::StrFormat("t%0*d_", digits(dims.times), at.t);
    if (dims.channels > 1) name += absl::StrFormat("c%0*d_", digits(dims.channels), at.c);
    return name + pattern.Format(at.z);
  };
  plane_ = output;
  plane_.shape.depth = 1;
  StackMetadata one = output.metadata;
  if (!dims.single()) {
    // Each file is one plane: a description of the whole hyperstack would not be its own.
    one.dims = {};
    const DescriptionKind kind = ClassifyDescription(one.description);
    if (kind == DescriptionKind::kOmeXml || kind == DescriptionKind::kImageJ) {
      one.description.clear();
    }
  }
  one.provenance.reset();  // the folder's, in its sidecar
  plane_.metadata = UpdateMetadata(one, plane_.shape, output.type, output.type, PixelGeometry{});
  const bool replace = options_.overwrite && folder_.Exists();
  if (replace) {
    STACKPROC_RETURN_IF_ERROR(CheckReplaceable(Format::kPlanes, folder_));
  }
  STACKPROC_ASSIGN_OR_RETURN(
      temp_, TempFolder::Make(folder_, options_.temp_tag, "plane sequence", replace));
  if (output.metadata.provenance) {
    const std::string record = ProvenanceJson(*output.metadata.provenance, true) + "\n";
    STACKPROC_RETURN_IF_ERROR(
        WriteFileAt(temp_->fd(), kProvenanceSidecar, record.data(), record.size(),
                    absl::StrCat(folder_.display(), "/", kProvenanceSidecar)));
  }
  return absl::OkStatus();
}

absl::Status SequenceSink::Encode(int64_t z, const uint8_t* data) {
  const std::string name = name_of_(z);
  UniqueFd dir(::fcntl(temp_->fd(), F_DUPFD_CLOEXEC, 0));
  if (!dir) return absl::InternalError(absl::StrCat("dup: ", std::strerror(errno)));
  const OutputTarget target =
      OutputTarget::In(std::move(dir), name, absl::StrCat(folder_.display(), "/", name));
  WriteOptions plane = options_;
  plane.overwrite = false;  // each name once
  plane.sync = false;       // the whole folder is synced once, by Close
  plane.arena = nullptr;    // compressed in the engine's own arena, this thread's
  STACKPROC_ASSIGN_OR_RETURN(
      std::unique_ptr<TiffPageWriter> writer,
      TiffPageWriter::Create(target, plane_.shape, plane_.type, plane_.metadata, plane));
  STACKPROC_RETURN_IF_ERROR(writer->WritePage(data));
  return writer->Commit();
}

absl::Status SequenceSink::Close() { return temp_->Commit(options_.sync); }

}  // namespace stackproc::core
