#include "core/tiff_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "core/tiff_handle.h"

namespace stackproc::core {
namespace {

namespace fs = std::filesystem;

// Strips of about this many bytes: large enough for few syscalls, small enough for codecs to
// work in cache.
constexpr size_t kTargetStripBytes = 512 * 1024;

uint16_t TiffCompression(Compression c) {
  switch (c) {
    case Compression::kNone:
      return COMPRESSION_NONE;
    case Compression::kDeflate:
      return COMPRESSION_ADOBE_DEFLATE;
    case Compression::kZstd:
      return COMPRESSION_ZSTD;
    case Compression::kLzw:
      return COMPRESSION_LZW;
  }
  return COMPRESSION_NONE;
}

std::string TempPathFor(const fs::path& target) {
  std::random_device random;
  return (target.parent_path() /
          absl::StrCat(".", target.filename().string(), ".tmp-", ::getpid(), "-", random()))
      .string();
}

absl::Status IoError(const std::string& path, absl::string_view what, std::string detail) {
  bool full = errno == ENOSPC || errno == EDQUOT || detail.find("No space") != std::string::npos;
  std::string message = absl::StrCat(path, ": ", what, detail.empty() ? "" : ": ", detail);
  return full ? absl::ResourceExhaustedError(absl::StrCat(message, " (disk full)"))
              : absl::InternalError(message);
}

absl::Status SyncFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IoError(path, "cannot reopen to sync", std::strerror(errno));
  int rc = ::fsync(fd);
  int saved = errno;
  ::close(fd);
  errno = saved;
  if (rc != 0) return IoError(path, "fsync failed", std::strerror(errno));
  return absl::OkStatus();
}

void SyncDirectory(const fs::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);  // best effort: the data itself is already durable
    ::close(fd);
  }
}

void SetPageTags(TIFF* tif, const Stack& stack, int64_t z, uint16_t compression,
                 uint32_t rows_per_strip) {
  const PixelType type = stack.pixel_type();
  TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, static_cast<uint32_t>(stack.shape().width));
  TIFFSetField(tif, TIFFTAG_IMAGELENGTH, static_cast<uint32_t>(stack.shape().height));
  TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, static_cast<uint16_t>(BytesPerPixel(type) * 8));
  TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, uint16_t{1});
  TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT,
               type == PixelType::kFloat32 ? SAMPLEFORMAT_IEEEFP : SAMPLEFORMAT_UINT);
  TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
  TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
  TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, rows_per_strip);
  TIFFSetField(tif, TIFFTAG_COMPRESSION, compression);
  if (compression != COMPRESSION_NONE) {
    TIFFSetField(tif, TIFFTAG_PREDICTOR,
                 type == PixelType::kFloat32 ? PREDICTOR_FLOATINGPOINT : PREDICTOR_HORIZONTAL);
  }
  if (compression == COMPRESSION_ZSTD) TIFFSetField(tif, TIFFTAG_ZSTD_LEVEL, 3);
  if (compression == COMPRESSION_ADOBE_DEFLATE) TIFFSetField(tif, TIFFTAG_ZIPQUALITY, 6);
  TIFFSetField(tif, TIFFTAG_SOFTWARE, "stackproc");
  const StackMetadata& metadata = stack.metadata();
  if (metadata.x_resolution && metadata.y_resolution) {
    TIFFSetField(tif, TIFFTAG_XRESOLUTION, static_cast<float>(*metadata.x_resolution));
    TIFFSetField(tif, TIFFTAG_YRESOLUTION, static_cast<float>(*metadata.y_resolution));
    TIFFSetField(tif, TIFFTAG_RESOLUTIONUNIT, static_cast<uint16_t>(metadata.resolution_unit));
  }
  if (z == 0) {
    std::string description = metadata.description.empty() ? DefaultImageJDescription(stack.shape())
                                                           : metadata.description;
    TIFFSetField(tif, TIFFTAG_IMAGEDESCRIPTION, description.c_str());
  }
}

absl::Status WritePages(TiffHandle& handle, const std::string& path, const Stack& stack,
                        const WriteOptions& options) {
  TIFF* tif = handle.get();
  const uint16_t compression = TiffCompression(options.compression);
  const size_t row_bytes = stack.slice_bytes() / static_cast<size_t>(stack.shape().height);
  const auto rows_per_strip = static_cast<uint32_t>(std::clamp<size_t>(
      kTargetStripBytes / row_bytes, 1, static_cast<size_t>(stack.shape().height)));
  // Codecs and predictors modify the buffer they are given, and the stack is const: compressed
  // strips go through this scratch copy.
  std::vector<uint8_t> scratch(compression == COMPRESSION_NONE ? 0 : rows_per_strip * row_bytes);
  const auto height = static_cast<size_t>(stack.shape().height);
  for (int64_t z = 0; z < stack.depth(); ++z) {
    if (IsCancelled(options.cancel)) {
      return absl::CancelledError(absl::StrCat(path, ": write cancelled at page ", z));
    }
    SetPageTags(tif, stack, z, compression, rows_per_strip);
    const uint8_t* slice = stack.slice_data(z);
    for (size_t row = 0, strip = 0; row < height; row += rows_per_strip, ++strip) {
      size_t bytes = std::min<size_t>(rows_per_strip, height - row) * row_bytes;
      uint8_t* data = const_cast<uint8_t*>(slice + row * row_bytes);  // not written: no codec
      if (!scratch.empty()) {
        std::memcpy(scratch.data(), data, bytes);
        data = scratch.data();
      }
      if (TIFFWriteEncodedStrip(tif, static_cast<uint32_t>(strip), data,
                                static_cast<tmsize_t>(bytes)) < 0) {
        return IoError(path, absl::StrCat("writing page ", z, " failed"), handle.TakeError());
      }
    }
    if (!TIFFWriteDirectory(tif)) {
      return IoError(path, absl::StrCat("writing page ", z, " directory failed"),
                     handle.TakeError());
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view CompressionName(Compression compression) {
  switch (compression) {
    case Compression::kNone:
      return "none";
    case Compression::kDeflate:
      return "deflate";
    case Compression::kZstd:
      return "zstd";
    case Compression::kLzw:
      return "lzw";
  }
  return "none";
}

absl::StatusOr<Compression> ParseCompression(absl::string_view name) {
  for (Compression c :
       {Compression::kNone, Compression::kDeflate, Compression::kZstd, Compression::kLzw}) {
    if (name == CompressionName(c)) return c;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown compression '", name, "' (use none, deflate, zstd or lzw)"));
}

absl::Status WriteTiff(const std::string& path, const Stack& stack, const WriteOptions& options) {
  if (stack.empty()) return absl::InvalidArgumentError("cannot write an empty stack");
  const fs::path target(path);
  if (target.filename().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a file name"));
  }
  std::error_code ec;
  if (!options.overwrite && fs::exists(target, ec)) {
    return absl::AlreadyExistsError(absl::StrCat(path, ": exists (overwrite not requested)"));
  }
  const std::string temp = TempPathFor(target);
  const bool bigtiff = stack.size_bytes() > options.bigtiff_threshold;
  absl::Status status;
  {
    STACKPROC_ASSIGN_OR_RETURN(TiffHandle handle, TiffHandle::Open(temp, bigtiff ? "w8" : "w"));
    status = WritePages(handle, path, stack, options);
    // Close flushes the last directory: its errors count too.
    std::string close_error = handle.Close();
    if (status.ok() && !close_error.empty()) status = IoError(path, "closing failed", close_error);
  }
  if (status.ok() && options.sync) status = SyncFile(temp);
  if (status.ok() && std::rename(temp.c_str(), path.c_str()) != 0) {
    status = IoError(path, "rename of the finished file failed", std::strerror(errno));
  }
  if (!status.ok()) {
    fs::remove(temp, ec);
    return status;
  }
  if (options.sync) SyncDirectory(target.parent_path());
  return absl::OkStatus();
}

}  // namespace stackproc::core
