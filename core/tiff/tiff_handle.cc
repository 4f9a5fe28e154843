#include "core/tiff/tiff_handle.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/tiff/imagej_metadata.h"

namespace stackproc::core {
namespace {

// Where a TIFF header says the first directory is, when the file starts with one (either byte
// order, classic or BigTIFF).
std::optional<uint64_t> FirstDirectoryOffset(const InputFile& file) {
  uint8_t h[16] = {};
  if (::pread(file.fd(), h, sizeof h, 0) < 8) return std::nullopt;
  const bool little = h[0] == 'I' && h[1] == 'I';
  if (!little && !(h[0] == 'M' && h[1] == 'M')) return std::nullopt;
  auto number = [&](int at, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) {
      v = (v << 8) | h[little ? at + bytes - 1 - i : at + i];
    }
    return v;
  };
  const uint64_t version = number(2, 2);
  if (version == 42) return number(4, 4);
  if (version == 43) return number(8, 8);
  return std::nullopt;
}

// libtiff learns stackproc's tags once per process: each handle then reads and writes them.
TIFFExtendProc g_next_extender = nullptr;
void ExtendTags(TIFF* tif) {
  static const TIFFFieldInfo kFields[] = {
      {kShardRecordTag, TIFF_VARIABLE, TIFF_VARIABLE, TIFF_ASCII, FIELD_CUSTOM, 1, 0,
       const_cast<char*>("StackprocShardRecord")},
      {kImageJMetadataByteCountsTag, TIFF_VARIABLE2, TIFF_VARIABLE2, TIFF_LONG, FIELD_CUSTOM, 1, 1,
       const_cast<char*>("IJMetadataByteCounts")},
      {kImageJMetadataTag, TIFF_VARIABLE2, TIFF_VARIABLE2, TIFF_BYTE, FIELD_CUSTOM, 1, 1,
       const_cast<char*>("IJMetadata")}};
  TIFFMergeFieldInfo(tif, kFields, 3);
  if (g_next_extender != nullptr) g_next_extender(tif);
}
void RegisterTags() {
  static std::once_flag once;
  std::call_once(once, [] { g_next_extender = TIFFSetTagExtender(ExtendTags); });
}

}  // namespace

int TiffHandle::OnError(TIFF*, void* user_data, const char* module, const char* fmt, va_list ap) {
  auto* messages = static_cast<Messages*>(user_data);
  char buffer[512];
  std::vsnprintf(buffer, sizeof buffer, fmt, ap);
  if (!messages->error.empty()) messages->error += "; ";
  if (messages->error.size() < 2048)
    absl::StrAppend(&messages->error, module ? module : "libtiff", ": ", buffer);
  return 1;  // handled: libtiff must not also print it
}

int TiffHandle::OnWarning(TIFF*, void*, const char*, const char*, va_list) {
  // Warnings (unknown tags, odd but readable layouts) do not change what we read or write.
  return 1;
}

// A libtiff handle's view of a descriptor: its own offset, pread/pwrite at it. Read handles
// keep their InputFile (and so its descriptor) alive; a write handle's descriptor belongs to
// its caller.
struct TiffHandle::Source {
  int fd = -1;
  uint64_t offset = 0;
  uint64_t size = 0;
  std::optional<InputFile> file;
  int write_errno = 0;  // why the last failed write failed

  static tmsize_t Read(thandle_t h, void* buffer, tmsize_t size) {
    auto* source = static_cast<Source*>(h);
    auto* out = static_cast<char*>(buffer);
    tmsize_t done = 0;
    while (done < size) {
      const ssize_t n = ::pread(source->fd, out + done, static_cast<size_t>(size - done),
                                static_cast<off_t>(source->offset));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return -1;
      if (n == 0) break;  // end of file: libtiff sees the short read
      done += n;
      source->offset += static_cast<uint64_t>(n);
    }
    return done;
  }
  static tmsize_t Write(thandle_t h, void* buffer, tmsize_t size) {
    auto* source = static_cast<Source*>(h);
    if (const int error = PwriteFull(source->fd, buffer, static_cast<size_t>(size), source->offset);
        error != 0) {
      source->write_errno = error;  // ENOSPC: the disk is full
      return -1;
    }
    source->offset += static_cast<uint64_t>(size);
    source->size = std::max(source->size, source->offset);
    return size;
  }
  static toff_t Seek(thandle_t h, toff_t offset, int whence) {
    auto* source = static_cast<Source*>(h);
    const uint64_t base = whence == SEEK_CUR   ? source->offset
                          : whence == SEEK_END ? source->size
                                               : 0;
    source->offset = base + offset;
    return source->offset;
  }
  static int Close(thandle_t) { return 0; }
  static toff_t Size(thandle_t h) { return static_cast<Source*>(h)->size; }
  static int Map(thandle_t, void**, toff_t*) { return 0; }
  static void Unmap(thandle_t, void*, toff_t) {}
};

TIFFOpenOptions* TiffHandle::Options(Messages* messages) {
  TIFFOpenOptions* options = TIFFOpenOptionsAlloc();
  TIFFOpenOptionsSetErrorHandlerExtR(options, &TiffHandle::OnError, messages);
  TIFFOpenOptionsSetWarningHandlerExtR(options, &TiffHandle::OnWarning, messages);
  // Caps any single buffer libtiff allocates itself (strip/tile scratch, tag arrays): a file
  // that declares absurd sizes fails instead of exhausting memory.
  TIFFOpenOptionsSetMaxSingleMemAlloc(options, tmsize_t{1} << 30);
  return options;
}

absl::StatusOr<TiffHandle> TiffHandle::OpenRead(const InputFile& file) {
  RegisterTags();
  TiffHandle handle;
  handle.messages_ = std::make_unique<Messages>();
  handle.source_ = std::make_unique<Source>(Source{file.fd(), 0, file.size(), file, 0});
  TIFFOpenOptions* options = Options(handle.messages_.get());
  handle.tif_ = TIFFClientOpenExt(file.name().c_str(), "rm", handle.source_.get(), &Source::Read,
                                  &Source::Write, &Source::Seek, &Source::Close, &Source::Size,
                                  &Source::Map, &Source::Unmap, options);
  TIFFOpenOptionsFree(options);
  if (handle.tif_ == nullptr) {
    std::string why = handle.TakeError();
    // An uncompressed stack's directories follow its planes: cut short, it has none left.
    if (const std::optional<uint64_t> first = FirstDirectoryOffset(file);
        first && *first >= file.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          file.name(), ": page 0: its directory at byte ", *first, " is past the end of the file (",
          file.size(), " bytes): the file is truncated"));
    }
    return absl::InvalidArgumentError(absl::StrCat(file.name(), ": not a readable TIFF file (",
                                                   why.empty() ? "open failed" : why, ")"));
  }
  return handle;
}

absl::StatusOr<TiffHandle> TiffHandle::OpenWrite(int fd, const std::string& name,
                                                 const char* mode) {
  RegisterTags();
  TiffHandle handle;
  handle.messages_ = std::make_unique<Messages>();
  struct stat st;
  if (::fstat(fd, &st) != 0) return absl::InternalError(absl::StrCat(name, ": fstat failed"));
  handle.source_ =
      std::make_unique<Source>(Source{fd, 0, static_cast<uint64_t>(st.st_size), std::nullopt, 0});
  TIFFOpenOptions* options = Options(handle.messages_.get());
  handle.tif_ = TIFFClientOpenExt(name.c_str(), mode, handle.source_.get(), &Source::Read,
                                  &Source::Write, &Source::Seek, &Source::Close, &Source::Size,
                                  &Source::Map, &Source::Unmap, options);
  TIFFOpenOptionsFree(options);
  if (handle.tif_ == nullptr) {
    std::string why = handle.TakeError();
    return absl::InternalError(
        absl::StrCat(name, ": cannot start the file (", why.empty() ? "open failed" : why, ")"));
  }
  return handle;
}

void TiffHandle::Abandon() {
  if (source_) source_->fd = -1;  // libtiff's writes fail from now on (EBADF)
}

TiffHandle::TiffHandle() = default;

TiffHandle::TiffHandle(TiffHandle&& other) noexcept
    : messages_(std::move(other.messages_)),
      source_(std::move(other.source_)),
      tif_(std::exchange(other.tif_, nullptr)) {}

TiffHandle& TiffHandle::operator=(TiffHandle&& other) noexcept {
  if (this != &other) {
    Close();
    messages_ = std::move(other.messages_);
    source_ = std::move(other.source_);
    tif_ = std::exchange(other.tif_, nullptr);
  }
  return *this;
}

TiffHandle::~TiffHandle() { Close(); }

int TiffHandle::TakeWriteErrno() { return source_ ? std::exchange(source_->write_errno, 0) : 0; }

std::string TiffHandle::TakeError() {
  if (!messages_) return "";
  return std::exchange(messages_->error, "");
}

std::string TiffHandle::Close() {
  if (tif_ != nullptr) {
    TIFFClose(tif_);
    tif_ = nullptr;
  }
  return TakeError();
}

}  // namespace stackproc::core
