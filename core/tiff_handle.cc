#include "core/tiff_handle.h"

#include <sys/stat.h>

#include <cstdarg>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"

namespace stackproc::core {

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

absl::StatusOr<TiffHandle> TiffHandle::Open(const std::string& path, const char* mode) {
  TiffHandle handle;
  handle.messages_ = std::make_unique<Messages>();
  if (mode[0] == 'r') {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    }
    if (!S_ISREG(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
    }
  }
  TIFFOpenOptions* options = TIFFOpenOptionsAlloc();
  TIFFOpenOptionsSetErrorHandlerExtR(options, &TiffHandle::OnError, handle.messages_.get());
  TIFFOpenOptionsSetWarningHandlerExtR(options, &TiffHandle::OnWarning, handle.messages_.get());
  // Caps any single buffer libtiff allocates itself (strip/tile scratch, tag arrays): a file
  // that declares absurd sizes fails instead of exhausting memory.
  TIFFOpenOptionsSetMaxSingleMemAlloc(options, tmsize_t{1} << 30);
  const std::string libtiff_mode = mode[0] == 'r' ? std::string(mode) + "m" : std::string(mode);
  handle.tif_ = TIFFOpenExt(path.c_str(), libtiff_mode.c_str(), options);
  TIFFOpenOptionsFree(options);
  if (handle.tif_ == nullptr) {
    std::string why = handle.TakeError();
    if (mode[0] == 'r') {
      return absl::InvalidArgumentError(absl::StrCat(path, ": not a readable TIFF file (",
                                                     why.empty() ? "open failed" : why, ")"));
    }
    return absl::PermissionDeniedError(
        absl::StrCat(path, ": cannot create (", why.empty() ? "open failed" : why, ")"));
  }
  return handle;
}

TiffHandle::~TiffHandle() { Close(); }

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
