#include "core/tiff/tiff_writer.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <tbb/parallel_for.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/base/status_macros.h"
#include "core/tiff/strip_encoder.h"
#include "core/tiff/tiff_handle.h"

namespace stackproc::core {
namespace {

// Strips of about this many bytes: large enough for few syscalls, small enough for codecs to
// work in cache.
constexpr size_t kTargetStripBytes = 512 * 1024;
// The pages written are handed to the disk in batches of at least this much (StartWriteback).
constexpr off_t kWritebackBytes = off_t{8} << 20;

uint16_t TiffCompression(Compression c) {
  switch (c) {
    case Compression::kDefault:
    case Compression::kLz4:  // refused by TiffPageWriter::Create
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

// `error`: the errno behind it, 0 when unknown. A full disk, an exhausted quota or the file
// size limit is ResourceExhausted; anything else Internal.
absl::Status IoError(const std::string& path, absl::string_view what, const std::string& detail,
                     int error) {
  std::string message = absl::StrCat(path, ": ", what, detail.empty() ? "" : ": ", detail);
  if (error != 0 && detail.find(std::strerror(error)) == std::string::npos) {
    absl::StrAppend(&message, " (", std::strerror(error), ")");
  }
  if (error == ENOSPC || error == EDQUOT) {
    return absl::ResourceExhaustedError(absl::StrCat(message, ": the disk is full"));
  }
  if (error == EFBIG) {
    return absl::ResourceExhaustedError(absl::StrCat(message, ": the file size limit is reached"));
  }
  return absl::InternalError(message);
}

// The Predictor tag of a page: horizontal differencing (floating-point for float32) before a
// compression, none without.
uint16_t PredictorFor(uint16_t compression, PixelType type) {
  if (compression == COMPRESSION_NONE) return PREDICTOR_NONE;
  return type == PixelType::kFloat32 ? PREDICTOR_FLOATINGPOINT : PREDICTOR_HORIZONTAL;
}

void SetPageTags(TIFF* tif, const StackShape& shape, PixelType type, const StackMetadata& metadata,
                 int64_t z, uint16_t compression, int level, uint32_t rows_per_strip) {
  TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, static_cast<uint32_t>(shape.width));
  TIFFSetField(tif, TIFFTAG_IMAGELENGTH, static_cast<uint32_t>(shape.height));
  TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, static_cast<uint16_t>(BytesPerPixel(type) * 8));
  TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, uint16_t{1});
  TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT,
               type == PixelType::kFloat32 ? SAMPLEFORMAT_IEEEFP : SAMPLEFORMAT_UINT);
  TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
  TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
  TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, rows_per_strip);
  TIFFSetField(tif, TIFFTAG_COMPRESSION, compression);
  if (compression != COMPRESSION_NONE) {
    TIFFSetField(tif, TIFFTAG_PREDICTOR, PredictorFor(compression, type));
  }
  if (compression == COMPRESSION_ZSTD) {
    TIFFSetField(tif, TIFFTAG_ZSTD_LEVEL, CompressionLevel(Compression::kZstd, level));
  }
  if (compression == COMPRESSION_ADOBE_DEFLATE) {
    TIFFSetField(tif, TIFFTAG_ZIPQUALITY, CompressionLevel(Compression::kDeflate, level));
  }
  TIFFSetField(tif, TIFFTAG_SOFTWARE, "stackproc");
  if (metadata.x_resolution && metadata.y_resolution) {
    TIFFSetField(tif, TIFFTAG_XRESOLUTION, static_cast<float>(*metadata.x_resolution));
    TIFFSetField(tif, TIFFTAG_YRESOLUTION, static_cast<float>(*metadata.y_resolution));
    TIFFSetField(tif, TIFFTAG_RESOLUTIONUNIT, static_cast<uint16_t>(metadata.resolution_unit));
  }
  if (z == 0) {
    std::string description =
        metadata.description.empty() ? DefaultImageJDescription(shape) : metadata.description;
    TIFFSetField(tif, TIFFTAG_IMAGEDESCRIPTION, description.c_str());
  }
}

}  // namespace

absl::StatusOr<Compression> ResolveTiffCompression(Compression compression) {
  if (compression == Compression::kLz4) {
    return absl::InvalidArgumentError(
        "lz4 is not a TIFF compression (TIFF: none, deflate, zstd, lzw; lz4 is OME-Zarr's)");
  }
  return compression == Compression::kDefault ? Compression::kNone : compression;
}

std::optional<Compression> CompressionOfTag(uint16_t tag) {
  for (Compression c :
       {Compression::kNone, Compression::kDeflate, Compression::kZstd, Compression::kLzw}) {
    if (TiffCompression(c) == tag) return c;
  }
  return std::nullopt;
}

uint16_t TiffPageWriter::predictor() const {
  return PredictorFor(TiffCompression(options_.compression), type_);
}

absl::string_view CompressionName(Compression compression) {
  switch (compression) {
    case Compression::kDefault:
      return "default";
    case Compression::kNone:
      return "none";
    case Compression::kDeflate:
      return "deflate";
    case Compression::kZstd:
      return "zstd";
    case Compression::kLzw:
      return "lzw";
    case Compression::kLz4:
      return "lz4";
  }
  return "none";
}

absl::StatusOr<Compression> ParseCompression(absl::string_view name) {
  for (Compression c : kAllCompressions) {
    if (name == CompressionName(c)) return c;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown compression '", name, "' (use default, none, deflate, zstd, lzw or lz4)"));
}

namespace {

// The levels a codec takes: [1, most]; 0 when it takes none.
int MostLevel(Compression compression) {
  switch (compression) {
    case Compression::kDeflate:
    case Compression::kLz4:
      return 9;
    case Compression::kZstd:
      return 19;
    default:
      return 0;
  }
}

}  // namespace

absl::Status CheckCompressionLevel(Compression compression, int level) {
  if (level == 0) return absl::OkStatus();
  const int most = MostLevel(compression);
  if (most == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("compression ", CompressionName(compression),
                     " takes no level (levels: deflate 1-9, zstd 1-19, lz4 1-9)"));
  }
  if (level < 1 || level > most) {
    return absl::InvalidArgumentError(absl::StrCat("compression ", CompressionName(compression),
                                                   ": level ", level, " is outside 1-", most));
  }
  return absl::OkStatus();
}

absl::Status ParseCompressionText(absl::string_view text, Compression& compression, int& level) {
  const size_t colon = text.find(':');
  absl::StatusOr<Compression> parsed = ParseCompression(text.substr(0, colon));
  if (!parsed.ok()) return parsed.status();
  int parsed_level = 0;
  if (colon != absl::string_view::npos) {
    absl::string_view rest = text.substr(colon + 1);
    if (!absl::ConsumePrefix(&rest, "level=") || !absl::SimpleAtoi(rest, &parsed_level) ||
        parsed_level < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "compression '", text, "': write NAME or NAME:level=N, e.g. deflate:level=9"));
    }
  }
  STACKPROC_RETURN_IF_ERROR(CheckCompressionLevel(*parsed, parsed_level));
  compression = *parsed;
  level = parsed_level;
  return absl::OkStatus();
}

std::string CompressionText(Compression compression, int level) {
  return level == 0 ? std::string(CompressionName(compression))
                    : absl::StrCat(CompressionName(compression), ":level=", level);
}

int CompressionLevel(Compression compression, int level) {
  if (level != 0) return level;
  // On 12-bit camera-like data (tests/bench/levels.py, docs/benchmarks.md) deflate and zstd at
  // level 1 are 3.9x and 3.5x faster than at 6 and 3, for the same size or smaller; lz4 at 5 is
  // as fast as at 1 and smaller.
  switch (compression) {
    case Compression::kDeflate:
      return 1;
    case Compression::kZstd:
      return 1;
    case Compression::kLz4:
      return 5;
    default:
      return 0;
  }
}

absl::StatusOr<std::unique_ptr<TiffPageWriter>> TiffPageWriter::Create(
    const std::string& path, const StackShape& shape, PixelType type, StackMetadata metadata,
    const WriteOptions& options) {
  STACKPROC_ASSIGN_OR_RETURN(OutputTarget target, OutputTarget::ForPath(path));
  return Create(target, shape, type, std::move(metadata), options);
}

absl::StatusOr<std::unique_ptr<TiffPageWriter>> TiffPageWriter::Create(
    const OutputTarget& target, const StackShape& shape, PixelType type, StackMetadata metadata,
    const WriteOptions& requested) {
  WriteOptions options = requested;
  STACKPROC_ASSIGN_OR_RETURN(options.compression, ResolveTiffCompression(requested.compression));
  STACKPROC_ASSIGN_OR_RETURN(size_t stack_bytes, StackBytes(shape, type));
  STACKPROC_ASSIGN_OR_RETURN(size_t slice_bytes, SliceBytes(shape, type));
  const std::string& path = target.display();
  if (!options.overwrite && target.Exists()) {
    return absl::AlreadyExistsError(absl::StrCat(path, ": exists (overwrite not requested)"));
  }
  std::string temp = TempNameFor(target.name(), options.temp_tag);
  UniqueFd fd(::openat(target.dir(), temp.c_str(),
                       O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666));
  if (!fd) {
    const int error = errno;
    if (error == EACCES || error == EPERM || error == EROFS) {
      return absl::PermissionDeniedError(
          absl::StrCat(path, ": cannot create a file there (", std::strerror(error), ")"));
    }
    return IoError(path, "cannot create its temporary file", "", error);
  }
  const bool bigtiff = stack_bytes > options.bigtiff_threshold;
  absl::StatusOr<TiffHandle> handle = TiffHandle::OpenWrite(fd.get(), path, bigtiff ? "w8" : "w");
  if (!handle.ok()) {
    ::unlinkat(target.dir(), temp.c_str(), 0);
    return handle.status();
  }
  return std::unique_ptr<TiffPageWriter>(new TiffPageWriter(
      target, std::move(temp), std::move(fd), std::make_unique<TiffHandle>(*std::move(handle)),
      shape, type, std::move(metadata), options, slice_bytes));
}

TiffPageWriter::TiffPageWriter(OutputTarget target, std::string temp, UniqueFd temp_fd,
                               std::unique_ptr<TiffHandle> handle, const StackShape& shape,
                               PixelType type, StackMetadata metadata, const WriteOptions& options,
                               size_t slice_bytes)
    : target_(std::move(target)),
      path_(target_.display()),
      temp_(std::move(temp)),
      temp_fd_(std::move(temp_fd)),
      handle_(std::move(handle)),
      shape_(shape),
      type_(type),
      metadata_(std::move(metadata)),
      options_(options),
      slice_bytes_(slice_bytes),
      rows_per_strip_(static_cast<uint32_t>(
          std::clamp<size_t>(kTargetStripBytes / (slice_bytes / static_cast<size_t>(shape.height)),
                             1, static_cast<size_t>(shape.height)))),
      encode_here_(options_.parallel_compression && CanEncodeStrips(options_.compression, type)) {
  if (options_.compression != Compression::kNone && !encode_here_) {
    scratch_.resize(rows_per_strip_ * (slice_bytes_ / static_cast<size_t>(shape_.height)));
  }
}

TiffPageWriter::~TiffPageWriter() {
  if (committed_) return;
  handle_.reset();
  ::unlinkat(target_.dir(), temp_.c_str(), 0);
}

absl::Status TiffPageWriter::WritePage(const uint8_t* page) {
  auto encode = [&] { return Encode(page, encoded_); };
  absl::Status status = options_.arena != nullptr ? options_.arena->execute(encode) : encode();
  STACKPROC_RETURN_IF_ERROR(status);
  return WriteEncoded(encoded_);
}

absl::Status TiffPageWriter::Encode(const uint8_t* page, EncodedPage& out) const {
  out.page = page;
  out.encoded = encode_here_;
  if (!encode_here_) return absl::OkStatus();
  const auto height = static_cast<size_t>(shape_.height);
  const size_t row_bytes = slice_bytes_ / height;
  const size_t strips = (height + rows_per_strip_ - 1) / rows_per_strip_;
  out.strips.resize(strips);
  std::vector<absl::Status> status(strips);
  tbb::parallel_for(size_t{0}, strips, [&](size_t s) {
    thread_local std::vector<uint8_t> scratch;
    const size_t row = s * rows_per_strip_;
    const size_t rows = std::min<size_t>(rows_per_strip_, height - row);
    status[s] = EncodeStrip(options_.compression, options_.compression_level, type_,
                            page + row * row_bytes, rows, row_bytes, scratch, out.strips[s]);
  });
  for (absl::Status& s : status) STACKPROC_RETURN_IF_ERROR(s);
  return absl::OkStatus();
}

absl::Status TiffPageWriter::WriteEncoded(const EncodedPage& encoded) {
  if (!handle_ || next_page_ >= shape_.depth) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": page ", next_page_, " is past the stack's ", shape_.depth));
  }
  TIFF* tif = handle_->get();
  const int64_t z = next_page_;
  SetPageTags(tif, shape_, type_, metadata_, z, TiffCompression(options_.compression),
              options_.compression_level, rows_per_strip_);
  auto write_failed = [&] {
    return IoError(path_, absl::StrCat("writing page ", z, " failed"), handle_->TakeError(),
                   handle_->TakeWriteErrno());
  };
  const auto height = static_cast<size_t>(shape_.height);
  const size_t row_bytes = slice_bytes_ / height;
  // Strips in order, as libtiff would write them: strip offsets grow with the strip index.
  for (size_t row = 0, strip = 0; row < height; row += rows_per_strip_, ++strip) {
    const auto s = static_cast<uint32_t>(strip);
    if (encoded.encoded) {
      const std::vector<uint8_t>& bytes = encoded.strips[strip];
      if (TIFFWriteRawStrip(tif, s, const_cast<uint8_t*>(bytes.data()),
                            static_cast<tmsize_t>(bytes.size())) < 0) {
        return write_failed();
      }
      continue;
    }
    const size_t bytes = std::min<size_t>(rows_per_strip_, height - row) * row_bytes;
    // Not written to: uncompressed strips go out as they are.
    auto* data = const_cast<uint8_t*>(encoded.page + row * row_bytes);
    if (options_.compression == Compression::kNone) {
      if (TIFFWriteRawStrip(tif, s, data, static_cast<tmsize_t>(bytes)) < 0) return write_failed();
      continue;
    }
    std::memcpy(scratch_.data(), data, bytes);
    if (TIFFWriteEncodedStrip(tif, s, scratch_.data(), static_cast<tmsize_t>(bytes)) < 0) {
      return write_failed();
    }
  }
  if (!TIFFWriteDirectory(tif)) {
    return IoError(path_, absl::StrCat("writing page ", z, " directory failed"),
                   handle_->TakeError(), handle_->TakeWriteErrno());
  }
  ++next_page_;
  if (options_.sync) StartWriteback();
  return absl::OkStatus();
}

void TiffPageWriter::StartWriteback() {
  struct stat st;
  if (::fstat(temp_fd_.get(), &st) != 0 || st.st_size - written_back_ < kWritebackBytes) return;
  // Asynchronous: the disk writes while later pages are made. Errors show at Commit's fsync.
  ::sync_file_range(temp_fd_.get(), written_back_, st.st_size - written_back_,
                    SYNC_FILE_RANGE_WRITE);
  written_back_ = st.st_size;
}

absl::Status TiffPageWriter::Commit() {
  if (!handle_ || next_page_ != shape_.depth) {
    return absl::FailedPreconditionError(absl::StrCat(path_, ": ", next_page_, " of ", shape_.depth,
                                                      " pages written, nothing committed"));
  }
  // Close flushes the last directory: its errors count too.
  std::string close_error = handle_->Close();
  const int close_errno = handle_->TakeWriteErrno();
  handle_.reset();
  if (!close_error.empty()) return IoError(path_, "closing failed", close_error, close_errno);
  if (options_.sync && ::fsync(temp_fd_.get()) != 0) {
    return IoError(path_, "fsync failed", "", errno);
  }
  const int dir = target_.dir();
  const char* name = target_.name().c_str();
  // Without overwrite, a file that appeared since Create is not replaced either.
  int rc = options_.overwrite ? ::renameat(dir, temp_.c_str(), dir, name)
                              : ::renameat2(dir, temp_.c_str(), dir, name, RENAME_NOREPLACE);
  if (rc != 0 && !options_.overwrite && errno == EINVAL) {  // a file system without NOREPLACE
    rc = target_.Exists() ? (errno = EEXIST, -1) : ::renameat(dir, temp_.c_str(), dir, name);
  }
  if (rc != 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(
          absl::StrCat(path_, ": appeared while it was being written (overwrite not requested)"));
    }
    return IoError(path_, "rename of the finished file failed", "", errno);
  }
  committed_ = true;
  if (options_.sync) ::fsync(dir);  // best effort: the data itself is already durable
  return absl::OkStatus();
}

}  // namespace stackproc::core
