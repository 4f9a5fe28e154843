// RAII libtiff handle whose errors and warnings go to a per-handle buffer, never to stderr.
// Internal to core/ (the reader and the writer).
#pragma once

#include <tiffio.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"

namespace stackproc::core {

class TiffHandle {
 public:
  // Opens `path` with libtiff `mode` ("r", "w", "w8"). Files read are not memory-mapped: read()
  // into the caller's buffer avoids a page fault per 4 KiB of file. NotFound when a file to read
  // does not exist, InvalidArgument when it is not a TIFF libtiff can open.
  static absl::StatusOr<TiffHandle> Open(const std::string& path, const char* mode);

  TiffHandle(TiffHandle&& other) noexcept
      : messages_(std::move(other.messages_)), tif_(std::exchange(other.tif_, nullptr)) {}
  TiffHandle& operator=(TiffHandle&& other) noexcept {
    if (this != &other) {
      Close();
      messages_ = std::move(other.messages_);
      tif_ = std::exchange(other.tif_, nullptr);
    }
    return *this;
  }
  ~TiffHandle();

  TIFF* get() const { return tif_; }

  // The error text libtiff reported since the last call, "" if none; clears it.
  std::string TakeError();
  // Closes the file (flushing a file being written); returns the errors it reported.
  std::string Close();

 private:
  struct Messages {
    std::string error;
  };
  TiffHandle() = default;
  static int OnError(TIFF*, void* user_data, const char* module, const char* fmt, va_list ap);
  static int OnWarning(TIFF*, void* user_data, const char* module, const char* fmt, va_list ap);

  std::unique_ptr<Messages> messages_;  // stable address handed to libtiff
  TIFF* tif_ = nullptr;
};

}  // namespace stackproc::core
