#include "core/tiff/tiff_reader.h"

#include <tbb/enumerable_thread_specific.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <mutex>
#include <opencv2/core.hpp>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "core/tiff/imagej_metadata.h"
#include "core/tiff/strip_decoder.h"
#include "core/tiff/tiff_handle.h"
#include "core/tiff/tiff_page_layout.h"

namespace stackproc::core {
namespace {

StackMetadata ReadMetadata(TIFF* tif) {
  StackMetadata metadata;
  char* description = nullptr;
  if (TIFFGetField(tif, TIFFTAG_IMAGEDESCRIPTION, &description) && description != nullptr) {
    metadata.description = description;
    metadata.provenance = TakeProvenance(metadata.description);
  }
  float x = 0, y = 0;
  uint16_t unit = RESUNIT_NONE;
  if (TIFFGetField(tif, TIFFTAG_XRESOLUTION, &x) && x > 0) metadata.x_resolution = x;
  if (TIFFGetField(tif, TIFFTAG_YRESOLUTION, &y) && y > 0) metadata.y_resolution = y;
  TIFFGetFieldDefaulted(tif, TIFFTAG_RESOLUTIONUNIT, &unit);
  if (unit == RESUNIT_INCH || unit == RESUNIT_CENTIMETER) {
    metadata.resolution_unit = static_cast<ResolutionUnit>(unit);
  }
  return metadata;
}

// Decodes page `page` of `info` into `dst`: its sample `sample` when each sample has striles of
// its own (planar), else every sample of each pixel, interleaved (one sample: the plane itself).
absl::Status DecodePage(TiffHandle& handle, const std::string& path, const TiffInfo& info,
                        int64_t page, uint16_t sample, uint8_t* dst, std::vector<uint8_t>& tile) {
  TIFF* tif = handle.get();
  if (!TIFFSetSubDirectory(tif, info.page_offsets[page])) {
    return PageError(path, page, "cannot read its directory", handle.TakeError());
  }
  // The file may have changed since it was probed: re-check what the buffer size depends on.
  STACKPROC_ASSIGN_OR_RETURN(PageLayout layout, ReadLayout(tif, path, page, StackLimits{}));
  if (layout.width != info.shape.width || layout.height != info.shape.height ||
      layout.type != info.pixel_type || layout.samples != info.samples ||
      layout.separate != info.separate) {
    return PageError(path, page, "changed since it was validated");
  }
  const uint16_t interleaved = layout.separate ? 1 : layout.samples;
  if (!layout.separate) sample = 0;
  const size_t bpp = BytesPerPixel(layout.type) * interleaved;
  const size_t row_bytes = size_t{layout.width} * bpp;
  if (!layout.tiled) {
    const Inflating inflate = CanInflateStrips(tif, layout.compression, layout.type);
    for (uint32_t row0 = 0; row0 < layout.height; row0 += layout.rows_per_strip) {
      const uint32_t s = TIFFComputeStrip(tif, row0, sample);
      const size_t rows = std::min<size_t>(layout.rows_per_strip, layout.height - row0);
      auto want = static_cast<tmsize_t>(rows * row_bytes);
      if (inflate != Inflating::kNo &&
          InflateStrip(tif, inflate, s, layout.type, layout.width, interleaved, rows,
                       dst + row0 * row_bytes, static_cast<size_t>(want), tile)) {
        continue;
      }
      tmsize_t got = TIFFReadEncodedStrip(tif, s, dst + row0 * row_bytes, want);
      if (got != want) {
        return PageError(path, page,
                         absl::StrCat("strip ", s, " decoded to ", std::max<tmsize_t>(got, 0),
                                      " of ", want, " bytes: corrupt data"),
                         handle.TakeError());
      }
    }
    return absl::OkStatus();
  }
  const tmsize_t tile_bytes = TIFFTileSize(tif);
  if (tile_bytes <= 0 ||
      static_cast<size_t>(tile_bytes) != size_t{layout.tile_width} * layout.tile_height * bpp) {
    return PageError(path, page, "inconsistent tile size", handle.TakeError());
  }
  tile.resize(static_cast<size_t>(tile_bytes));
  for (uint32_t y = 0; y < layout.height; y += layout.tile_height) {
    for (uint32_t x = 0; x < layout.width; x += layout.tile_width) {
      uint32_t t = TIFFComputeTile(tif, x, y, 0, sample);
      if (TIFFReadEncodedTile(tif, t, tile.data(), tile_bytes) != tile_bytes) {
        return PageError(path, page, absl::StrCat("tile ", t, " is corrupt"), handle.TakeError());
      }
      size_t rows = std::min(layout.tile_height, layout.height - y);
      size_t cols = std::min(layout.tile_width, layout.width - x);
      for (size_t r = 0; r < rows; ++r) {
        std::memcpy(dst + (y + r) * row_bytes + x * bpp, tile.data() + r * layout.tile_width * bpp,
                    cols * bpp);
      }
    }
  }
  return absl::OkStatus();
}

// Plane `page` of an ImageJ raw stack, read straight from the file.
absl::Status ReadPlane(const InputFile& file, const TiffInfo& info, int64_t page, uint8_t* dst) {
  const size_t bytes =
      static_cast<size_t>(info.shape.height * info.shape.width) * BytesPerPixel(info.pixel_type);
  const uint64_t at = *info.contiguous_planes_at + static_cast<uint64_t>(page) * bytes;
  for (size_t done = 0; done < bytes;) {
    const ssize_t n = ::pread(file.fd(), dst + done, bytes - done, static_cast<off_t>(at + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return PageError(file.name(), page,
                       n == 0 ? "ends early: the file was truncated after it was validated"
                              : absl::StrCat("cannot be read: ", std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  if (info.big_endian && info.pixel_type == PixelType::kUint16) {
    TIFFSwabArrayOfShort(reinterpret_cast<uint16_t*>(dst), static_cast<tmsize_t>(bytes / 2));
  } else if (info.big_endian && info.pixel_type == PixelType::kFloat32) {
    TIFFSwabArrayOfLong(reinterpret_cast<uint32_t*>(dst), static_cast<tmsize_t>(bytes / 4));
  }
  return absl::OkStatus();
}

// One thread's libtiff handle over a file (opened on first use), its tile buffer, and the last
// chunky page of several samples it decoded (for the page's other samples).
struct PageDecoder {
  std::optional<TiffHandle> handle;
  std::vector<uint8_t> tile;
  std::vector<uint8_t> pixels;
  int64_t pixels_page = -1;

  absl::Status Decode(const InputFile& file, const TiffInfo& info, int64_t plane, uint8_t* dst) {
    if (info.contiguous_planes_at) return ReadPlane(file, info, plane, dst);
    if (!handle) {
      STACKPROC_ASSIGN_OR_RETURN(TiffHandle opened, TiffHandle::OpenRead(file));
      handle = std::move(opened);
    }
    const int64_t page = plane / info.samples;
    const auto sample = static_cast<uint16_t>(plane % info.samples);
    if (info.samples == 1 || info.separate) {
      return DecodePage(*handle, file.name(), info, page, sample, dst, tile);
    }
    const auto height = static_cast<int>(info.shape.height);
    const auto width = static_cast<int>(info.shape.width);
    const int depth = CV_MAT_DEPTH(CvType(info.pixel_type));
    if (pixels_page != page) {
      pixels_page = -1;
      pixels.resize(static_cast<size_t>(height) * width * info.samples *
                    BytesPerPixel(info.pixel_type));
      STACKPROC_RETURN_IF_ERROR(
          DecodePage(*handle, file.name(), info, page, 0, pixels.data(), tile));
      pixels_page = page;
    }
    cv::Mat one(height, width, CV_MAKETYPE(depth, 1), dst);
    cv::extractChannel(cv::Mat(height, width, CV_MAKETYPE(depth, info.samples), pixels.data()), one,
                       sample);
    return absl::OkStatus();
  }
};

}  // namespace

namespace {
constexpr char kTiffValidationPayload[] = "type.stackproc/tiff-validation";
absl::StatusOr<TiffInfo> Validate(const InputFile& file, const StackLimits& limits);
}  // namespace

absl::StatusOr<TiffInfo> ProbeTiff(const std::string& path, const StackLimits& limits) {
  STACKPROC_ASSIGN_OR_RETURN(InputFile file, InputFile::Open(path));
  return ProbeTiff(file, limits);
}

absl::StatusOr<TiffInfo> ProbeTiff(const InputFile& file, const StackLimits& limits) {
  absl::StatusOr<TiffInfo> info = Validate(file, limits);
  if (!info.ok()) {
    absl::Status status = info.status();
    status.SetPayload(kTiffValidationPayload, absl::Cord("refused"));
    return status;
  }
  return info;
}

bool IsTiffValidationError(const absl::Status& status) {
  return status.GetPayload(kTiffValidationPayload).has_value();
}

namespace {

// An RGB(A) file's channels, when what it says of them has no more: each is its sample's colour
// (and named after it when the pages are the only channels).
void NameRgbChannels(uint16_t samples, Dimensions& dims) {
  if (!dims.channel_info.empty()) return;
  static constexpr const char* kNames[] = {"red", "green", "blue"};
  static constexpr uint32_t kColours[] = {0xFF0000FF, 0x00FF00FF, 0x0000FFFF};
  for (int64_t c = 0; c < dims.channels; ++c) {
    ChannelInfo channel;
    if (const int64_t s = c % samples; s < 3) {
      channel.rgba = kColours[s];
      if (dims.channels == samples) channel.name = kNames[s];
    }
    dims.channel_info.push_back(std::move(channel));
  }
}

// An ImageJ raw stack: page 0's description says images=N, more than the file's `info` pages,
// and page 0's pixels are uncompressed and in one run (the planes follow it). Sets the planes'
// start and the depth; leaves any other file as it is.
absl::Status FindContiguousPlanes(TIFF* tif, const std::string& path, uint64_t file_size,
                                  const PageLayout& first, const StackLimits& limits,
                                  TiffInfo& info) {
  if (ClassifyDescription(info.metadata.description) != DescriptionKind::kImageJ) {
    return absl::OkStatus();
  }
  const std::optional<std::string> images =
      ImageJField(ParseImageJDescription(info.metadata.description), "images");
  int64_t planes = 0;
  if (!images || !absl::SimpleAtoi(*images, &planes) || planes <= info.shape.depth) {
    return absl::OkStatus();
  }
  const std::string claim = absl::StrCat("the ImageJ description says images=", planes,
                                         " but the file has ", info.shape.depth, " pages");
  if (first.compression != COMPRESSION_NONE || first.tiled || first.samples > 1) {
    return PageError(path, 0,
                     absl::StrCat(claim, ", and they are compressed, tiled or of several samples"));
  }
  if (planes > limits.max_pages) {
    return limits.DepthRefused(absl::StrCat(path, ": ", planes, " planes"));
  }
  if (!TIFFSetSubDirectory(tif, info.page_offsets[0])) {
    return PageError(path, 0, "cannot read its directory");
  }
  const uint64_t plane =
      static_cast<uint64_t>(info.shape.height * info.shape.width) * BytesPerPixel(info.pixel_type);
  const uint64_t start = TIFFGetStrileOffset(tif, 0);
  uint64_t end = start;
  for (uint32_t s = 0; s < TIFFNumberOfStrips(tif); ++s) {
    if (TIFFGetStrileOffset(tif, s) != end) {
      return PageError(path, 0, absl::StrCat(claim, ", and page 0's strips are not in one run"));
    }
    end += TIFFGetStrileByteCount(tif, s);
  }
  if (end - start < plane) return PageError(path, 0, absl::StrCat(claim, "; page 0 is short"));
  if (start > file_size || (file_size - start) / plane < static_cast<uint64_t>(planes)) {
    return PageError(path, 0,
                     absl::StrCat(claim, "; ", planes, " planes of ", plane, " bytes from byte ",
                                  start, " need ", start + planes * plane, " bytes, the file has ",
                                  file_size, ": truncated"));
  }
  info.contiguous_planes_at = start;
  info.shape.depth = planes;
  return absl::OkStatus();
}

absl::StatusOr<TiffInfo> Validate(const InputFile& file, const StackLimits& limits) {
  const std::string& path = file.name();
  STACKPROC_ASSIGN_OR_RETURN(TiffHandle handle, TiffHandle::OpenRead(file));
  const uint64_t file_size = file.size();
  TIFF* tif = handle.get();

  TiffInfo info;
  info.bigtiff = TIFFIsBigTIFF(tif);
  info.big_endian = TIFFIsBigEndian(tif);
  int64_t page = 0;
  PageLayout first;
  while (true) {
    if (page >= limits.max_pages) return limits.DepthRefused(path);
    info.page_offsets.push_back(TIFFCurrentDirOffset(tif));
    STACKPROC_ASSIGN_OR_RETURN(PageLayout layout, ReadLayout(tif, path, page, limits));
    STACKPROC_RETURN_IF_ERROR(CheckStriles(tif, path, page, layout, file_size));
    if (page == 0) {
      first = layout;
      info.metadata = ReadMetadata(tif);
      if (const char* record = nullptr; TIFFGetField(tif, kShardRecordTag, &record) && record) {
        info.shard_record = record;
      }
      uint32_t n = 0, bytes = 0;
      const uint32_t* counts = nullptr;
      const uint8_t* data = nullptr;
      if (TIFFGetField(tif, kImageJMetadataByteCountsTag, &n, &counts) && counts != nullptr &&
          TIFFGetField(tif, kImageJMetadataTag, &bytes, &data) && data != nullptr) {
        info.imagej = ParseImageJChannels({{data, data + bytes}, {counts, counts + n}},
                                          TIFFIsBigEndian(tif) != 0);
      }
    } else if (layout.width != first.width || layout.height != first.height ||
               layout.type != first.type || layout.samples != first.samples ||
               layout.separate != first.separate) {
      auto kind = [](const PageLayout& l) {
        return absl::StrCat(l.width, "x", l.height, " ", PixelTypeName(l.type),
                            l.samples > 1 ? absl::StrCat(" x ", l.samples, " samples") : "",
                            l.separate ? " (planar)" : "");
      };
      return PageError(path, page,
                       absl::StrCat(kind(layout), " differs from page 0 (", kind(first),
                                    "): every page of a stack must have the same size and type"));
    }
    ++page;
    if (!TIFFReadDirectory(tif)) break;
  }
  if (std::string error = handle.TakeError(); !error.empty()) {
    return PageError(path, page, "unreadable directory after the last good page", error);
  }
  if (page > limits.max_pages / first.samples) {  // planes: pages x samples
    return limits.DepthRefused(
        absl::StrCat(path, ": ", page, " pages of ", first.samples, " samples"));
  }
  info.shape = {page, first.height, first.width};
  info.samples = first.samples;
  info.separate = first.separate;
  info.pixel_type = first.type;
  info.tiled = first.tiled;
  info.compression = first.compression;
  // A shard keeps the whole stack's description, images= too: its pages are its planes.
  if (info.shard_record.empty()) {
    STACKPROC_RETURN_IF_ERROR(FindContiguousPlanes(tif, path, file_size, first, limits, info));
  }
  // A shard of a job's slices keeps the whole stack's description (for its assembly): its
  // counts are the whole stack's, not its pages'.
  if (info.shard_record.empty()) {
    absl::StatusOr<Dimensions> dims =
        DimensionsOf(info.metadata.description, info.shape.depth, info.samples);
    if (!dims.ok()) return PageError(path, 0, dims.status().message());
    info.metadata.dims = *std::move(dims);
    if (ClassifyDescription(info.metadata.description) == DescriptionKind::kImageJ) {
      ApplyImageJChannels(info.imagej, info.metadata.dims);
    }
  }
  info.shape.depth *= info.samples;  // from here on, planes
  if (info.samples > 1) {
    if (first.photometric == PHOTOMETRIC_RGB) NameRgbChannels(info.samples, info.metadata.dims);
    info.metadata = SamplesAsChannels(info.metadata, info.shape, info.pixel_type);
  }
  STACKPROC_ASSIGN_OR_RETURN(size_t bytes, StackBytes(info.shape, info.pixel_type));
  if (bytes > limits.max_stack_bytes) {
    return limits.BytesRefused(path, bytes);
  }
  return info;
}

}  // namespace

absl::Status ReadTiffPage(const InputFile& file, const TiffInfo& info, int64_t plane,
                          uint8_t* dst) {
  if (plane < 0 || plane >= info.shape.depth) {
    return absl::OutOfRangeError(absl::StrCat(file.name(), ": no plane ", plane));
  }
  PageDecoder decoder;
  return decoder.Decode(file, info, plane, dst);
}

struct TiffPageReader::Workers {
  tbb::enumerable_thread_specific<PageDecoder> local;
};

absl::StatusOr<std::unique_ptr<TiffPageReader>> TiffPageReader::Open(const std::string& path,
                                                                     const StackLimits& limits) {
  STACKPROC_ASSIGN_OR_RETURN(InputFile file, InputFile::Open(path));
  return Open(file, limits);
}

absl::StatusOr<std::unique_ptr<TiffPageReader>> TiffPageReader::Open(const InputFile& file,
                                                                     const StackLimits& limits) {
  STACKPROC_ASSIGN_OR_RETURN(TiffInfo info, ProbeTiff(file, limits));
  return Open(file, std::move(info));
}

absl::StatusOr<std::unique_ptr<TiffPageReader>> TiffPageReader::Open(const InputFile& file,
                                                                     TiffInfo info) {
  STACKPROC_ASSIGN_OR_RETURN(size_t slice_bytes, SliceBytes(info.shape, info.pixel_type));
  return std::unique_ptr<TiffPageReader>(new TiffPageReader(file, std::move(info), slice_bytes));
}

TiffPageReader::TiffPageReader(InputFile file, TiffInfo info, size_t slice_bytes)
    : file_(std::move(file)),
      info_(std::move(info)),
      slice_bytes_(slice_bytes),
      workers_(std::make_unique<Workers>()) {}

TiffPageReader::~TiffPageReader() = default;

absl::Status TiffPageReader::ReadPage(int64_t z, uint8_t* dst) {
  if (z < 0 || z >= info_.shape.depth) {
    return absl::OutOfRangeError(absl::StrCat(file_.name(), ": no plane ", z));
  }
  return workers_->local.local().Decode(file_, info_, z, dst);
}

}  // namespace stackproc::core
