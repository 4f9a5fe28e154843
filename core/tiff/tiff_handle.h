// RAII libtiff handle whose errors and warnings go to a per-handle buffer, never to stderr.
// Internal to core/ (the reader and the writer).
#pragma once

#include <tiffio.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "core/base/file.h"

namespace stackproc::core {

// A private ASCII tag (in TIFF's reusable range) on page 0 of a shard of a job cut in z-ranges:
// where its slices belong (shards.h: ShardRecord). Other readers pass over it.
inline constexpr uint16_t kShardRecordTag = 65421;

class TiffHandle {
 public:
  // Reads `file` through its shared descriptor, with pread at this handle's own offset: many
  // handles (one per thread) read one file at once. Not memory-mapped: a read into the caller's
  // buffer avoids a page fault per 4 KiB of file. InvalidArgument when it is not a TIFF libtiff
  // can open.
  static absl::StatusOr<TiffHandle> OpenRead(const InputFile& file);
  // Writes a TIFF with libtiff `mode` through `fd` (open for reading and writing; it stays the
  // caller's): "w" or "w8" a new one (`fd` empty), "a" pages after those of the TIFF `fd` holds.
  // `name` is what messages call it.
  static absl::StatusOr<TiffHandle> OpenWrite(int fd, const std::string& name, const char* mode);

  TiffHandle(TiffHandle&& other) noexcept;
  TiffHandle& operator=(TiffHandle&& other) noexcept;
  ~TiffHandle();

  TIFF* get() const { return tif_; }

  // The error text libtiff reported since the last call, "" if none; clears it.
  std::string TakeError();
  // The errno of the last write that failed (ENOSPC, EDQUOT, EFBIG, ...), 0 if none; clears it.
  int TakeWriteErrno();
  // Closes the file (flushing a file being written); returns the errors it reported.
  std::string Close();
  // A handle being written writes nothing more: closing it leaves the file as it is now (a
  // page begun is not flushed as a directory).
  void Abandon();

 private:
  struct Messages {
    std::string error;
  };
  struct Source;  // the descriptor and this handle's offset in it
  TiffHandle();
  static TIFFOpenOptions* Options(Messages* messages);
  static int OnError(TIFF*, void* user_data, const char* module, const char* fmt, va_list ap);
  static int OnWarning(TIFF*, void* user_data, const char* module, const char* fmt, va_list ap);

  std::unique_ptr<Messages> messages_;  // stable address handed to libtiff
  std::unique_ptr<Source> source_;      // likewise
  TIFF* tif_ = nullptr;
};

}  // namespace stackproc::core
