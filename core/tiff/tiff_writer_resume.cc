// TiffPageWriter::Resume and progress(): a writer takes up the temporary file another left.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/tiff/tiff_directory.h"
#include "core/tiff/tiff_handle.h"
#include "core/tiff/tiff_layout.h"
#include "core/tiff/tiff_writer.h"

namespace stackproc::core {
namespace {

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
  if (!IsTempNameOf(at.temp, target.name()) || at.pages < 0 || at.pages > shape.depth) {
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

}  // namespace stackproc::core
