#include "core/tiff/tiff_writer.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <tbb/parallel_for.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/base/status_macros.h"
#include "core/tiff/imagej_metadata.h"
#include "core/tiff/strip_encoder.h"
#include "core/tiff/tiff_directory.h"
#include "core/tiff/tiff_handle.h"
#include "core/tiff/tiff_layout.h"

namespace stackproc::core {
namespace {

// The pages written are handed to the disk in batches of at least this much (StartWriteback).
constexpr off_t kWritebackBytes = off_t{8} << 20;

// The tags every page states, compression aside, in either writer: `tags` takes Short, Long,
// Ascii, Rational, ByteArray and LongArray (libtiff's fields, or a TiffDirectory of a page laid
// out by hand).
template <typename Tags>
void PageTags(Tags& tags, const StackShape& shape, PixelType type, const StackMetadata& metadata,
              const std::string& shard_record, int64_t z, uint32_t rows_per_strip) {
  tags.Long(TIFFTAG_IMAGEWIDTH, static_cast<uint32_t>(shape.width));
  tags.Long(TIFFTAG_IMAGELENGTH, static_cast<uint32_t>(shape.height));
  tags.Short(TIFFTAG_BITSPERSAMPLE, static_cast<uint16_t>(BytesPerPixel(type) * 8));
  tags.Short(TIFFTAG_SAMPLESPERPIXEL, 1);
  tags.Short(TIFFTAG_SAMPLEFORMAT,
             type == PixelType::kFloat32 ? SAMPLEFORMAT_IEEEFP : SAMPLEFORMAT_UINT);
  tags.Short(TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
  tags.Short(TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
  tags.Long(TIFFTAG_ROWSPERSTRIP, rows_per_strip);
  tags.Ascii(TIFFTAG_SOFTWARE, "stackproc");
  if (metadata.x_resolution && metadata.y_resolution) {
    tags.Rational(TIFFTAG_XRESOLUTION, *metadata.x_resolution);
    tags.Rational(TIFFTAG_YRESOLUTION, *metadata.y_resolution);
    tags.Short(TIFFTAG_RESOLUTIONUNIT, static_cast<uint16_t>(metadata.resolution_unit));
  }
  if (z == 0) {
    tags.Ascii(TIFFTAG_IMAGEDESCRIPTION, metadata.description);
    if (!shard_record.empty()) tags.Ascii(kShardRecordTag, shard_record);
    // An ImageJ hyperstack's channel colours and windows, where ImageJ keeps them.
    if (ClassifyDescription(metadata.description) == DescriptionKind::kImageJ) {
      if (std::optional<ImageJMetadata> ij = FormatImageJChannels(metadata.dims)) {
        tags.LongArray(kImageJMetadataByteCountsTag, ij->counts);
        tags.ByteArray(kImageJMetadataTag, ij->data);
      }
    }
  }
}

// PageTags' Tags for libtiff's fields.
struct LibtiffTags {
  TIFF* tif;
  void Short(uint16_t tag, uint16_t v) { TIFFSetField(tif, tag, v); }
  void Long(uint16_t tag, uint32_t v) { TIFFSetField(tif, tag, v); }
  void Ascii(uint16_t tag, const std::string& text) { TIFFSetField(tif, tag, text.c_str()); }
  void Rational(uint16_t tag, double v) { TIFFSetField(tif, tag, v); }
  void ByteArray(uint16_t tag, const std::vector<uint8_t>& v) {
    TIFFSetField(tif, tag, static_cast<uint32_t>(v.size()), v.data());
  }
  void LongArray(uint16_t tag, const std::vector<uint32_t>& v) {
    TIFFSetField(tif, tag, static_cast<uint32_t>(v.size()), v.data());
  }
};

}  // namespace

absl::StatusOr<Compression> ResolveTiffCompression(Compression compression) {
  if (!CodecOf(compression).tiff) {
    return absl::InvalidArgumentError(absl::StrCat(
        CompressionName(compression), " is not a TIFF compression (TIFF: ",
        CodecNames(&CodecInfo::tiff), "; ", CompressionName(compression), " is OME-Zarr's)"));
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

absl::StatusOr<std::unique_ptr<TiffPageWriter>> TiffPageWriter::Create(
    const std::string& path, const StackShape& shape, PixelType type, StackMetadata metadata,
    const WriteOptions& options) {
  STACKPROC_ASSIGN_OR_RETURN(OutputTarget target, OutputTarget::ForPath(path));
  return Create(target, shape, type, std::move(metadata), options);
}

absl::StatusOr<std::unique_ptr<TiffPageWriter>> TiffPageWriter::Create(
    const OutputTarget& target, const StackShape& shape, PixelType type, StackMetadata metadata,
    const WriteOptions& requested) {
  STACKPROC_ASSIGN_OR_RETURN(Layout layout, LayoutFor(shape, type, std::move(metadata), requested));
  const WriteOptions& options = layout.options;
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
  ::flock(fd.get(), LOCK_EX | LOCK_NB);  // while it is being written: Resume will not take it up
  std::unique_ptr<TiffHandle> handle;
  if (options.compression != Compression::kNone) {
    absl::StatusOr<TiffHandle> opened =
        TiffHandle::OpenWrite(fd.get(), path, layout.bigtiff ? "w8" : "w");
    if (!opened.ok()) {
      ::unlinkat(target.dir(), temp.c_str(), 0);
      return opened.status();
    }
    handle = std::make_unique<TiffHandle>(*std::move(opened));
  }
  return std::unique_ptr<TiffPageWriter>(
      new TiffPageWriter(target, std::move(temp), std::move(fd), std::move(handle), shape, type,
                         std::move(layout.metadata), options, layout.slice_bytes, layout.bigtiff));
}

TiffPageWriter::TiffPageWriter(OutputTarget target, std::string temp, UniqueFd temp_fd,
                               std::unique_ptr<TiffHandle> handle, const StackShape& shape,
                               PixelType type, StackMetadata metadata, const WriteOptions& options,
                               size_t slice_bytes, bool bigtiff)
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
      rows_per_strip_(RowsPerStrip(slice_bytes, shape.height)),
      predictor_(PredictorFor(options_.compression, type, options_.predictor)),
      bigtiff_(bigtiff),
      encode_here_(options_.parallel_compression && CanEncodeStrips(options_.compression, type)) {
  if (options_.compression != Compression::kNone && !encode_here_) {
    scratch_.resize(rows_per_strip_ * (slice_bytes_ / static_cast<size_t>(shape_.height)));
  }
}

TiffPageWriter::~TiffPageWriter() {
  if (committed_) return;
  if (keep_) {
    if (handle_) handle_->Abandon();
    return;
  }
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
                            predictor_ != PREDICTOR_NONE, page + row * row_bytes, rows, row_bytes,
                            scratch, out.strips[s]);
  });
  for (absl::Status& s : status) STACKPROC_RETURN_IF_ERROR(s);
  return absl::OkStatus();
}

absl::Status TiffPageWriter::WriteEncoded(const EncodedPage& encoded) {
  if (closed_ || next_page_ >= shape_.depth) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": page ", next_page_, " is past the stack's ", shape_.depth));
  }
  if (!handle_) return WritePlane(encoded.page);
  TIFF* tif = handle_->get();
  const int64_t z = next_page_;
  LibtiffTags tags{tif};
  PageTags(tags, shape_, type_, metadata_, options_.shard_record, z, rows_per_strip_);
  TIFFSetField(tif, TIFFTAG_COMPRESSION, TiffCompression(options_.compression));
  TIFFSetField(tif, TIFFTAG_PREDICTOR, predictor_);
  if (options_.compression == Compression::kZstd) {
    TIFFSetField(tif, TIFFTAG_ZSTD_LEVEL,
                 CompressionLevel(Compression::kZstd, options_.compression_level));
  }
  if (options_.compression == Compression::kDeflate) {
    TIFFSetField(tif, TIFFTAG_ZIPQUALITY,
                 CompressionLevel(Compression::kDeflate, options_.compression_level));
  }
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
    std::memcpy(scratch_.data(), encoded.page + row * row_bytes, bytes);
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

absl::Status TiffPageWriter::WritePlane(const uint8_t* page) {
  const uint64_t at =
      TiffHeader(bigtiff_, 0).size() + static_cast<uint64_t>(next_page_) * slice_bytes_;
  STACKPROC_RETURN_IF_ERROR(
      PwriteAll(page, slice_bytes_, at, absl::StrCat("writing page ", next_page_)));
  ++next_page_;
  if (options_.sync) StartWriteback();
  return absl::OkStatus();
}

absl::Status TiffPageWriter::PwriteAll(const void* data, size_t size, uint64_t at,
                                       absl::string_view what) {
  const int error = PwriteFull(temp_fd_.get(), data, size, at);
  return error == 0 ? absl::OkStatus() : IoError(path_, absl::StrCat(what, " failed"), "", error);
}

absl::Status TiffPageWriter::WriteDirectories() {
  const uint64_t header = TiffHeader(bigtiff_, 0).size();
  const auto height = static_cast<size_t>(shape_.height);
  const size_t row_bytes = slice_bytes_ / height;
  std::vector<uint64_t> counts;
  for (size_t row = 0; row < height; row += rows_per_strip_) {
    counts.push_back(std::min<size_t>(rows_per_strip_, height - row) * row_bytes);
  }
  // The directories follow the planes, each after the one before, at even offsets.
  uint64_t at = header + static_cast<uint64_t>(shape_.depth) * slice_bytes_;
  at += at % 2;
  const uint64_t first = at;
  std::string out;
  uint64_t out_at = at;
  for (int64_t z = 0; z < shape_.depth; ++z) {
    TiffDirectory directory(bigtiff_);
    PageTags(directory, shape_, type_, metadata_, options_.shard_record, z, rows_per_strip_);
    directory.Short(TIFFTAG_COMPRESSION, COMPRESSION_NONE);
    std::vector<uint64_t> offsets;
    uint64_t strip_at = header + static_cast<uint64_t>(z) * slice_bytes_;
    for (uint64_t count : counts) {
      offsets.push_back(strip_at);
      strip_at += count;
    }
    directory.Offsets(TIFFTAG_STRIPOFFSETS, offsets);
    directory.Offsets(TIFFTAG_STRIPBYTECOUNTS, counts);
    const uint64_t next = z + 1 < shape_.depth ? at + directory.size() : 0;
    if (!bigtiff_ && at + directory.size() > std::numeric_limits<uint32_t>::max()) {
      return absl::InternalError(absl::StrCat(path_, ": page ", z,
                                              "'s directory would lie past 4 GiB in a classic "
                                              "TIFF (the BigTIFF estimate was short)"));
    }
    directory.AppendTo(at, next, out);
    at += directory.size();
    if (out.size() >= (size_t{1} << 20) || next == 0) {  // written in pieces of about 1 MiB
      STACKPROC_RETURN_IF_ERROR(PwriteAll(out.data(), out.size(), out_at, "writing directories"));
      out_at += out.size();
      out.clear();
    }
  }
  const std::string start = TiffHeader(bigtiff_, first);
  return PwriteAll(start.data(), start.size(), 0, "writing the header");
}

absl::Status TiffPageWriter::Commit() {
  if (closed_ || next_page_ != shape_.depth) {
    return absl::FailedPreconditionError(absl::StrCat(path_, ": ", next_page_, " of ", shape_.depth,
                                                      " pages written, nothing committed"));
  }
  closed_ = true;
  if (handle_) {
    // Close flushes the last directory: its errors count too.
    std::string close_error = handle_->Close();
    const int close_errno = handle_->TakeWriteErrno();
    handle_.reset();
    if (!close_error.empty()) return IoError(path_, "closing failed", close_error, close_errno);
  } else {
    STACKPROC_RETURN_IF_ERROR(WriteDirectories());
  }
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
