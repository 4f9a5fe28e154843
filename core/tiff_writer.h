// Writes a Stack as a multi-page TIFF (BigTIFF when it would not fit a classic TIFF), atomically:
// the pages go to a temporary file beside the target, renamed over the target only when every
// page is written and synced. A failed or cancelled write leaves no file under the final name
// (and any earlier file there untouched).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/cancel.h"
#include "core/stack.h"

namespace stackproc::core {

enum class Compression { kNone, kDeflate, kZstd, kLzw };

// "none", "deflate", "zstd", "lzw".
absl::string_view CompressionName(Compression compression);
absl::StatusOr<Compression> ParseCompression(absl::string_view name);

struct WriteOptions {
  Compression compression = Compression::kNone;
  // Pixel data above this many bytes is written as BigTIFF (classic TIFF offsets end at 4 GiB;
  // the margin leaves room for directories and for codecs that expand incompressible data).
  uint64_t bigtiff_threshold = (uint64_t{4} << 30) - (uint64_t{256} << 20);
  // Replace an existing file at the target path.
  bool overwrite = true;
  // fsync the file before the rename, so a completed write survives a crash.
  bool sync = true;
  const CancelToken* cancel = nullptr;  // polled between pages
};

// Writes `stack` and its metadata to `path`. The description is written to page 0 (an ImageJ
// description naming the stack depth when the stack has none). Errors: InvalidArgument for a
// bad path, AlreadyExists when the target exists and !overwrite, Cancelled, and Internal /
// ResourceExhausted (disk full) for I/O failures, with libtiff's reason.
absl::Status WriteTiff(const std::string& path, const Stack& stack,
                       const WriteOptions& options = {});

}  // namespace stackproc::core
