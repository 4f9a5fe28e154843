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

// Rows per strip of about kTargetStripBytes.
uint32_t RowsPerStrip(size_t slice_bytes, int64_t height) {
  const auto rows = static_cast<size_t>(height);
  return static_cast<uint32_t>(
      std::clamp<size_t>(kTargetStripBytes / (slice_bytes / rows), 1, rows));
}

// The Predictor tag of a page: what `predictor` asks for, its default (compression.h) made
// concrete; differencing is floating-point for float32.
uint16_t PredictorFor(Compression compression, PixelType type, Predictor predictor) {
  if (compression == Compression::kNone) return PREDICTOR_NONE;
  if (predictor == Predictor::kDefault) {
    const bool imagej_undoes = compression == Compression::kLzw && type != PixelType::kFloat32;
    predictor = imagej_undoes || compression == Compression::kZstd ? Predictor::kDifferencing
                                                                   : Predictor::kNone;
  }
  if (predictor == Predictor::kNone) return PREDICTOR_NONE;
  return type == PixelType::kFloat32 ? PREDICTOR_FLOATINGPOINT : PREDICTOR_HORIZONTAL;
}

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

namespace {

// How a stack's pages are written: the options resolved, page 0's description, and whether it
// takes a BigTIFF.
struct Layout {
  StackMetadata metadata;
  WriteOptions options;
  size_t slice_bytes = 0;
  bool bigtiff = false;
};

absl::StatusOr<Layout> LayoutFor(const StackShape& shape, PixelType type, StackMetadata metadata,
                                 const WriteOptions& requested) {
  Layout layout;
  layout.options = requested;
  STACKPROC_ASSIGN_OR_RETURN(layout.options.compression,
                             ResolveTiffCompression(requested.compression));
  // Page 0's description as written: the stack's (or a default), with what made it.
  if (metadata.description.empty()) {
    metadata.description = DefaultDescription(shape, type, metadata.dims);
  }
  if (metadata.provenance) {
    metadata.description = DescriptionWithProvenance(metadata.description, *metadata.provenance);
    metadata.provenance.reset();
  }
  STACKPROC_ASSIGN_OR_RETURN(size_t stack_bytes, StackBytes(shape, type));
  STACKPROC_ASSIGN_OR_RETURN(layout.slice_bytes, SliceBytes(shape, type));
  // The directories count too: at most 512 bytes a page and 16 a strip (a BigTIFF's sizes), and
  // page 0's description; many small slices make them gigabytes.
  const uint64_t rows = RowsPerStrip(layout.slice_bytes, shape.height);
  const uint64_t strips = (static_cast<uint64_t>(shape.height) + rows - 1) / rows;
  const uint64_t directories = static_cast<uint64_t>(shape.depth) * (512 + 16 * strips) +
                               metadata.description.size() + requested.shard_record.size();
  layout.bigtiff = stack_bytes + directories > requested.bigtiff_threshold;
  layout.metadata = std::move(metadata);
  return layout;
}

// An unsigned integer of sizeof(T) bytes in this machine's byte order.
template <typename T>
uint64_t ReadNative(const uint8_t* raw) {
  T value;
  std::memcpy(&value, raw, sizeof value);
  return value;
}

// Where the directory chain of the compressed TIFF in `fd` is linked past its page `pages - 1`:
// the link a writer that ended while adding a page may have made. DataLoss unless the chain has
// that many directories, all within the file's first `end` bytes.
absl::StatusOr<uint64_t> LinkAfter(int fd, bool bigtiff, int64_t pages, uint64_t end) {
  const size_t offset_bytes = bigtiff ? 8 : 4;
  const size_t count_bytes = bigtiff ? 8 : 2;
  const size_t entry_bytes = bigtiff ? 20 : 12;
  auto read = [&](uint64_t at, size_t bytes) -> std::optional<uint64_t> {
    uint8_t raw[8];  // native byte order, as libtiff writes a new file
    if (at + bytes > end ||
        ::pread(fd, raw, bytes, static_cast<off_t>(at)) != static_cast<ssize_t>(bytes)) {
      return std::nullopt;
    }
    if (bytes == 2) return ReadNative<uint16_t>(raw);
    if (bytes == 4) return ReadNative<uint32_t>(raw);
    return ReadNative<uint64_t>(raw);
  };
  std::optional<uint64_t> directory = read(bigtiff ? 8 : 4, offset_bytes);
  for (int64_t page = 0; page < pages; ++page) {
    const std::optional<uint64_t> count = directory && *directory >= (bigtiff ? 16 : 8)
                                              ? read(*directory, count_bytes)
                                              : std::nullopt;
    if (!count) {
      return absl::DataLossError(absl::StrCat("page ", page, "'s directory is not in the file"));
    }
    const uint64_t link = *directory + count_bytes + *count * entry_bytes;
    if (link + offset_bytes > end) {
      return absl::DataLossError(absl::StrCat("page ", page, "'s directory is cut short"));
    }
    if (page + 1 == pages) return link;
    directory = read(link, offset_bytes);
  }
  return absl::DataLossError("no pages");
}

}  // namespace

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

absl::StatusOr<std::unique_ptr<TiffPageWriter>> TiffPageWriter::Resume(
    const OutputTarget& target, const Progress& at, const StackShape& shape, PixelType type,
    StackMetadata metadata, const WriteOptions& requested) {
  STACKPROC_ASSIGN_OR_RETURN(Layout layout, LayoutFor(shape, type, std::move(metadata), requested));
  const std::string& path = target.display();
  const auto lost = [&](absl::string_view why) {
    return absl::DataLossError(
        absl::StrCat(path, ": its unfinished file ", at.temp, " cannot be taken up: ", why));
  };
  // Only a temporary file of this target's, as Create names them, is taken up.
  if (!absl::StartsWith(at.temp, absl::StrCat(".", target.name(), ".tmp-")) ||
      absl::StrContains(at.temp, '/') || at.pages < 0 || at.pages > shape.depth) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no unfinished file to take up at page ",
                                                   at.pages, " of ", shape.depth, " (", at.temp,
                                                   ")"));
  }
  UniqueFd fd(
      ::openat(target.dir(), at.temp.c_str(), O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    const int error = errno;
    if (error == ENOENT) {
      return absl::NotFoundError(absl::StrCat(path, ": its unfinished file ", at.temp, " is gone"));
    }
    return IoError(path, absl::StrCat("cannot open its unfinished file ", at.temp), "", error);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return IoError(path, "fstat failed", "", errno);
  if (!S_ISREG(st.st_mode) || st.st_uid != ::geteuid() || st.st_nlink != 1) {
    return lost("it is not a file of this user's own");
  }
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": its unfinished file ", at.temp,
                                                      " is being written by another process"));
  }
  const bool compressed = layout.options.compression != Compression::kNone;
  const uint64_t header = TiffHeader(layout.bigtiff, 0).size();
  if (!compressed && at.end != header + static_cast<uint64_t>(at.pages) * layout.slice_bytes) {
    return lost(absl::StrCat(at.pages, " uncompressed pages do not end at byte ", at.end));
  }
  // An uncompressed file has nothing before its first plane until Commit writes the header.
  if (at.pages > 0 && static_cast<uint64_t>(st.st_size) < at.end) {
    return lost(absl::StrCat("it has ", st.st_size, " bytes of the ", at.end, " its ", at.pages,
                             " pages took"));
  }
  // Checked before anything changes: the chain holds the pages kept.
  std::optional<uint64_t> link;
  if (compressed && at.pages > 0) {
    absl::StatusOr<uint64_t> found = LinkAfter(fd.get(), layout.bigtiff, at.pages, at.end);
    if (!found.ok()) return lost(found.status().message());
    link = *found;
  }
  const uint64_t keep = compressed && at.pages == 0 ? 0 : at.end;
  if (::ftruncate(fd.get(), static_cast<off_t>(keep)) != 0) {
    return IoError(path, absl::StrCat("cutting back ", at.temp, " failed"), "", errno);
  }
  if (link) {  // the chain ends at the last page kept
    const uint64_t none = 0;
    const size_t bytes = layout.bigtiff ? 8 : 4;
    if (PwriteFull(fd.get(), &none, bytes, *link) != 0) {
      return IoError(path, absl::StrCat("ending the pages of ", at.temp, " failed"), "", errno);
    }
  }
  std::unique_ptr<TiffHandle> handle;
  if (compressed) {
    if (at.pages > 0) {  // libtiff's own reading of the pages kept, before any is added
      UniqueFd copy(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
      STACKPROC_ASSIGN_OR_RETURN(InputFile file, InputFile::Adopt(std::move(copy), at.temp));
      absl::StatusOr<TiffHandle> read = TiffHandle::OpenRead(file);
      if (!read.ok()) return lost(read.status().message());
      TIFF* tif = read->get();
      uint16_t compression = 0;
      uint16_t predictor = 0;
      TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &compression);
      TIFFGetFieldDefaulted(tif, TIFFTAG_PREDICTOR, &predictor);
      const bool bigtiff = TIFFIsBigTIFF(tif) != 0;
      const tdir_t pages = TIFFNumberOfDirectories(tif);
      const uint16_t want_predictor =
          PredictorFor(layout.options.compression, type, layout.options.predictor);
      if (bigtiff != layout.bigtiff || static_cast<int64_t>(pages) != at.pages ||
          compression != TiffCompression(layout.options.compression) ||
          predictor != want_predictor) {
        return lost(absl::StrCat("it holds ", pages, bigtiff ? " BigTIFF" : " classic TIFF",
                                 " pages (compression ", compression, ", predictor ", predictor,
                                 "), not ", at.pages, layout.bigtiff ? " BigTIFF" : " classic TIFF",
                                 " ones (compression ", TiffCompression(layout.options.compression),
                                 ", predictor ", want_predictor, ")"));
      }
    }
    const char* mode = at.pages > 0 ? "a" : layout.bigtiff ? "w8" : "w";
    STACKPROC_ASSIGN_OR_RETURN(TiffHandle opened, TiffHandle::OpenWrite(fd.get(), path, mode));
    handle = std::make_unique<TiffHandle>(std::move(opened));
  }
  std::unique_ptr<TiffPageWriter> writer(new TiffPageWriter(
      target, at.temp, std::move(fd), std::move(handle), shape, type, std::move(layout.metadata),
      layout.options, layout.slice_bytes, layout.bigtiff));
  writer->next_page_ = at.pages;
  writer->written_back_ = static_cast<off_t>(keep);
  return writer;
}

TiffPageWriter::Progress TiffPageWriter::progress() const {
  Progress at{temp_, next_page_, 0};
  if (!handle_) {
    at.end = TiffHeader(bigtiff_, 0).size() + static_cast<uint64_t>(next_page_) * slice_bytes_;
  } else if (struct stat st; ::fstat(temp_fd_.get(), &st) == 0) {
    at.end = static_cast<uint64_t>(st.st_size);  // each page ends with its directory
  }
  return at;
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
