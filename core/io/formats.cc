#include "core/io/formats.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "core/base/status_macros.h"
#include "core/io/sequence_io.h"
#include "core/io/stack_io.h"
#include "core/io/tiff_io.h"
#include "core/io/zarr_sink.h"
#include "core/io/zarr_source.h"

namespace stackproc::core {

absl::string_view FormatName(Format format) {
  switch (format) {
    case Format::kTiff:
      return "TIFF";
    case Format::kPlanes:
      return "plane sequence";
    case Format::kOmeZarr:
      return "OME-Zarr";
  }
  return "TIFF";
}

absl::StatusOr<OutputName> ParseOutputName(const std::string& output) {
  const absl::string_view stripped = absl::StripSuffix(output, "/");
  if (absl::EndsWithIgnoreCase(stripped, ".zarr")) {
    return OutputName{Format::kOmeZarr, std::string(stripped), ""};
  }
  STACKPROC_ASSIGN_OR_RETURN(std::optional<SequenceOutput> sequence, ParseSequenceOutput(output));
  if (sequence) return OutputName{Format::kPlanes, sequence->folder, sequence->pattern};
  if (IsTiffName(output)) return OutputName{Format::kTiff, output, ""};
  return absl::InvalidArgumentError(
      absl::StrCat(output,
                   ": the output's name says its format, and this one says none: NAME.tif "
                   "or NAME.tiff (TIFF), NAME.ome.zarr or NAME.zarr (OME-Zarr), NAME/ or "
                   "NAME/z%04d.tif (a folder of planes)"));
}

absl::Status CheckReplaceable(Format format, const OutputTarget& target) {
  if (format == Format::kTiff) return absl::OkStatus();
  const std::string kind(FormatName(format));
  UniqueFd folder(::openat(target.dir(), target.name().c_str(),
                           O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!folder) {
    return absl::FailedPreconditionError(absl::StrCat(
        target.display(), ": exists and is not a folder; not replaced by a ", kind, " output"));
  }
  STACKPROC_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDirectory(folder.get()));
  bool ours = true;
  if (format == Format::kOmeZarr) {
    ours = std::any_of(names.begin(), names.end(), [](const std::string& n) {
      return n == "zarr.json" || n == ".zgroup" || n == ".zattrs" || n == ".zarray";
    });
  } else {
    for (const std::string& n : names) {
      struct stat st;
      ours = ours && (IsTiffName(n) || n == kProvenanceSidecar) &&
             ::fstatat(folder.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
             S_ISREG(st.st_mode);
    }
  }
  if (!ours) {
    return absl::FailedPreconditionError(
        absl::StrCat(target.display(), ": exists and does not hold a ", kind,
                     format == Format::kOmeZarr ? " (no zarr.json, .zgroup, .zattrs or .zarray)"
                                                : " (files other than .tif and stackproc.json)",
                     "; not replaced (remove it yourself)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateOutput(const OutputName& name, const WriteOptions& options) {
  if (name.format == Format::kOmeZarr) return ValidateZarrWrite(options);
  STACKPROC_RETURN_IF_ERROR(ResolveTiffCompression(options.compression).status());
  if (options.chunks || options.zarr_shards || options.pyramid_levels != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunks, shards and pyramid levels are for OME-Zarr outputs (NAME.zarr), not for a ",
        FormatName(name.format), " output"));
  }
  return absl::OkStatus();
}

std::string EffectiveCompression(const OutputName& name, const WriteOptions& write) {
  const Compression compression = write.compression;
  if (name.format == Format::kOmeZarr) {
    absl::StatusOr<ZarrCodec> codec =
        ZarrCodecFor(compression, write.compression_level, write.zarr_format);
    return codec.ok() ? ZarrCodecName(*codec) : std::string(CompressionName(compression));
  }
  return std::string(CompressionName(ResolveTiffCompression(compression).value_or(compression)));
}

SinkTraits OutputTraits(const OutputName& name, const WriteOptions& options) {
  if (name.format == Format::kOmeZarr) return ZarrSink::TraitsFor(options);
  return {.compressed = CompressesTiff(options.compression)};
}

absl::StatusOr<std::unique_ptr<SliceSource>> OpenInput(const Files& files, const std::string& input,
                                                       const StackLimits& limits) {
  if (IsZarrPath(files, input)) return ZarrSource::Open(files, input, limits);
  STACKPROC_ASSIGN_OR_RETURN(std::optional<PlaneFiles> planes, ListPlanes(files, input));
  if (planes) return SequenceSource::Open(files, *std::move(planes), limits);
  STACKPROC_ASSIGN_OR_RETURN(InputFile file, files.Input(input));
  STACKPROC_ASSIGN_OR_RETURN(TiffInfo info, ProbeTiff(file, limits));
  return TiffSource::Open(file, std::move(info));
}

ImageReader ImagesIn(const Files& files, const StackLimits& limits) {
  // Each file read once: a pipeline makes its ops again per channel and per binding, and all
  // of them must see the same image. Copies of the reader share what it read.
  struct Read {
    std::mutex mutex;
    std::map<std::string, cv::Mat> images;
  };
  auto read = std::make_shared<Read>();
  return [&files, limits, read](const std::string& path) -> absl::StatusOr<cv::Mat> {
    std::lock_guard lock(read->mutex);
    if (auto it = read->images.find(path); it != read->images.end()) return it->second;
    STACKPROC_RETURN_IF_ERROR(CheckPathText(path));
    STACKPROC_ASSIGN_OR_RETURN(std::unique_ptr<SliceSource> source, OpenInput(files, path, limits));
    const StackInfo& info = source->info();
    if (info.shape.depth != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " holds ", info.shape.depth,
                       " planes; it must be one (a stack of channels takes one for each: "
                       "c1.flat=FILE)"));
    }
    cv::Mat image(static_cast<int>(info.shape.height), static_cast<int>(info.shape.width),
                  CvType(info.type));
    STACKPROC_RETURN_IF_ERROR(source->Read(0, image.data));
    read->images.emplace(path, image);
    return image;
  };
}

absl::StatusOr<std::unique_ptr<SliceSink>> OpenOutput(const std::string& output,
                                                      const WriteOptions& options,
                                                      const std::optional<OutputTarget>& target) {
  STACKPROC_ASSIGN_OR_RETURN(OutputName name, ParseOutputName(output));
  STACKPROC_RETURN_IF_ERROR(ValidateOutput(name, options));
  STACKPROC_ASSIGN_OR_RETURN(OutputTarget where, target ? absl::StatusOr<OutputTarget>(*target)
                                                        : OutputTarget::ForPath(name.target));
  switch (name.format) {
    case Format::kOmeZarr:
      return std::make_unique<ZarrSink>(std::move(where), options);
    case Format::kPlanes:
      return std::make_unique<SequenceSink>(std::move(where), name.pattern, options);
    case Format::kTiff:
      break;
  }
  return std::make_unique<TiffSink>(std::move(where), options);
}

absl::Status WriteStack(const std::string& output, const Stack& stack,
                        const WriteOptions& options) {
  if (stack.empty()) return absl::InvalidArgumentError("cannot write an empty stack");
  STACKPROC_ASSIGN_OR_RETURN(std::unique_ptr<SliceSink> sink, OpenOutput(output, options));
  StackSource source(stack);
  Pipeline none;
  RunOptions run;
  run.arena = options.arena;
  run.cancel = options.cancel;
  return Run(source, none, *sink, run);
}

namespace {

// The codecs with `column` set in the codec table, the format's default (`first`) first.
std::string CodecsOf(bool CodecInfo::*column, Compression first) {
  std::vector<absl::string_view> names = {CompressionName(first)};
  for (const CodecInfo& codec : kCodecs) {
    if (codec.*column && codec.compression != Compression::kDefault && codec.compression != first) {
      names.push_back(codec.name);
    }
  }
  return absl::StrJoin(names, ", ");
}

// The codecs a TIFF or a plane writes, and which of them ImageJ/Fiji open.
std::string TiffCodecs() {
  return absl::StrCat(CodecsOf(&CodecInfo::tiff, Compression::kNone), " (ImageJ/Fiji open ",
                      CodecNames(&CodecInfo::imagej), ")");
}

// --compression's lines of FormatsHelp, from the codec table.
std::string CompressionHelp() {
  std::vector<std::string> levels;
  for (const CodecInfo& codec : kCodecs) {
    if (codec.most_level == 0) continue;
    levels.push_back(
        absl::StrFormat("%s 1-%d (default %d%s)", codec.name, codec.most_level, codec.default_level,
                        codec.compression == Compression::kZstd ? "; OME-Zarr 1-9" : ""));
  }
  std::vector<std::string> predictors;
  for (const CodecInfo& codec : kCodecs) {
    if (codec.predictor) predictors.emplace_back(codec.name);
  }
  return absl::StrFormat(
      "  --compression %s\n"
      "                    TIFF and planes: %s\n"
      "                    OME-Zarr: %s (each list's first: the default)\n"
      "                    CODEC:level=N        %s\n"
      "                    CODEC:predictor=P    TIFF %s: none or differencing (smaller;\n"
      "                                         default: differencing for lzw and zstd, none for "
      "deflate\n"
      "                                         and float32 lzw, as ImageJ/Fiji read them)\n"
      "  ImageJ/Fiji open TIFF %s (not deflate with differencing).\n",
      CodecNames(nullptr, true, "|"), CodecsOf(&CodecInfo::tiff, Compression::kNone),
      CodecsOf(&CodecInfo::zarr, Compression::kLz4),
      absl::StrJoin(levels, "\n                                         "),
      absl::StrJoin(predictors, ", "), CodecNames(&CodecInfo::imagej));
}

}  // namespace

const std::vector<FormatInfo>& Formats() {
  static const std::vector<FormatInfo> kFormats = {
      {Format::kTiff, "a file (output: NAME.tif or NAME.tiff)",
       "classic and BigTIFF, strips or tiles, uint8/uint16/float32, samples as channels; none, "
       "lzw, "
       "deflate, packbits, zstd; ImageJ big stacks (one IFD, contiguous planes); channels and "
       "time points of OME-XML (sizes, DimensionOrder, TiffData) and ImageJ hyperstacks",
       "BigTIFF past 3.75 GiB of pixels; ImageJ, OME-XML or tifffile description and resolution "
       "kept, their counts restated; a stack of channels or time points without one: an ImageJ "
       "hyperstack (CZT) or OME-XML; "
       "uncompressed planes one after another (as ImageJ and tifffile write them); what made "
       "it in the description",
       TiffCodecs(), "--compression CODEC:predictor=none|differencing"},
      {Format::kPlanes, "a folder (NAME/), a pattern (NAME/z%04d.tif) or a glob (NAME/*.tif)",
       "one 2-D TIFF per plane (a file of several pages gives them in order), natural order; "
       "named t0_c1_z0003.tif: time points and channels",
       "one single-page TIFF per plane, named by the pattern (z%04d.tif; t0_c1_z0003.tif with "
       "time points or channels), into a new folder; what made them in stackproc.json",
       TiffCodecs(), ""},
      {Format::kOmeZarr,
       "NAME.zarr or NAME.ome.zarr (input: also any folder with a zarr.json, .zarray or .zattrs)",
       "OME-NGFF 0.5 (Zarr v3) or 0.4 (v2) level 0 (axes t, c, z, y, x, t and c as time points "
       "and channels; omero channels) or a plain v3 or v2 array, z,y,x (leading axes of length "
       "1), any chunks, v3 shards (index at start or end, crc32c); none, zlib, gzip, zstd, blosc "
       "(lz4, lz4hc, zstd, zlib, blosclz; shuffles), v3's transpose and crc32c; either byte "
       "order; both v3 key encodings; fill values; scale and unit",
       "NGFF 0.5 image (--zarr-format 2: NGFF 0.4), axes (t, c,) z, y, x with unit and scale, "
       "omero channels; chunks (--chunks) packed in shards (--zarr-shards), each written whole; "
       "what made it in the stackproc attribute",
       absl::StrCat(CodecsOf(&CodecInfo::zarr, Compression::kLz4),
                    " (lz4 and zstd by blosc; deflate gzip, zlib in 0.4)"),
       "--chunks ZxYxX (default 1x256x256; 0.4: 1x1024x1024), --zarr-shards ZxYxX (default 16 "
       "slices by the plane up to 2048x2048), --zarr-format 2|3, --pyramid N (levels below full "
       "size)"},
  };
  return kFormats;
}

absl::string_view FormatsHelp() {
  static const std::string kHelp = absl::StrCat(
      R"(An input is a TIFF file; a sequence of 2-D TIFF files, one per plane: a folder (planes/),
a printf pattern (planes/z%04d.tif) or a glob (planes/*.tif), in natural order; or an OME-Zarr
image or Zarr array (NAME.zarr). The output's name picks its format: NAME.tif a TIFF file;
NAME.zarr or NAME.ome.zarr an OME-Zarr image (NGFF 0.5; --zarr-format 2: 0.4); out/ or
out/slice_%03d.tif a sequence of planes. Folders (planes, stores) are written under a temporary name and renamed into place;
--overwrite replaces an existing output (a folder only if it holds what the format writes).
)",
      CompressionHelp(),
      R"(  --chunks DxHxW    OME-Zarr chunk shape (default 1x1024x1024, clipped to the stack)
  --pyramid N       OME-Zarr levels below full resolution, each half the one before
)");
  return kHelp;
}

}  // namespace stackproc::core
