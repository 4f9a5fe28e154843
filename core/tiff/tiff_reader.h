// Validates and decodes multi-page TIFF / BigTIFF stacks (ReadTiff, in core/tiff_io.h, reads
// one into a Stack).
//
// Supported: striped and tiled; uncompressed, LZW, Deflate (both tag values), PackBits and ZSTD;
// horizontal and floating-point predictors; little and big endian; 8/16-bit unsigned or 32-bit
// IEEE float samples, one or more per pixel (grey, RGB, RGBA, n-sample; chunky or planar): each
// sample is a plane, the samples of a page its channels (DimensionsOf). Every page is validated
// before anything is allocated. Errors name the file, the page and the reason; libtiff's own
// messages never reach stderr.
#pragma once

#include <tbb/task_arena.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/cancel.h"
#include "core/base/file.h"
#include "core/stack/stack.h"
#include "core/stack/stack_limits.h"
#include "core/tiff/imagej_metadata.h"

namespace stackproc::core {

class TiffHandle;

// What validation learned about a file: enough to allocate and to plan.
struct TiffInfo {
  StackShape shape;       // depth: its planes, pages x samples
  uint16_t samples = 1;   // per pixel: sample s of page p is plane p x samples + s
  bool separate = false;  // the samples in striles of their own (planar)
  PixelType pixel_type = PixelType::kUint8;
  bool bigtiff = false;
  bool big_endian = false;
  bool tiled = false;
  uint16_t compression = 1;            // TIFF Compression tag of the first page
  std::vector<uint64_t> page_offsets;  // IFD offset of every page, to seek in O(1)
  // An ImageJ raw stack (more planes than pages, stored one after another): where the first
  // plane starts. The planes are then read with pread, not through their directories.
  std::optional<uint64_t> contiguous_planes_at;
  StackMetadata metadata;
  std::string shard_record;  // page 0's kShardRecordTag: a shard's place in its job (shards.h)
  ImageJChannels imagej;     // what page 0's IJMetadata says of channels (imagej_metadata.h)
};

// Walks every page and checks it: same size and type as page 0, supported layout and codec,
// strip/tile tables that fit inside the file (a truncated file or a lying byte count fails here,
// before any allocation). An ImageJ raw stack (ImageJ's stacks over 4 GiB, tifffile's
// truncate=True: fewer directories than the description's images=N, the planes uncompressed one
// after another from the first page's pixels on) is N planes, and the file must hold them all.
// InvalidArgument for a corrupt or unsupported file, NotFound when it does not exist,
// ResourceExhausted when it exceeds `limits`.
absl::StatusOr<TiffInfo> ProbeTiff(const std::string& path, const StackLimits& limits = {});
absl::StatusOr<TiffInfo> ProbeTiff(const InputFile& file, const StackLimits& limits = {});
// Whether `status` is ProbeTiff refusing a file (corrupt, unsupported, over a limit), as
// opposed to, say, a pipeline that cannot take it.
bool IsTiffValidationError(const absl::Status& status);

// Decodes plane `plane` of a file ProbeTiff validated into `info`, with a libtiff handle of its
// own (for files read a plane or two each: the planes of a sequence).
absl::Status ReadTiffPage(const InputFile& file, const TiffInfo& info, int64_t plane, uint8_t* dst);

struct ReadOptions {
  StackLimits limits;
  tbb::task_arena* arena = nullptr;     // where to decode; nullptr: the calling thread's arena
  const CancelToken* cancel = nullptr;  // polled between pages
};

// Reads a validated file one page at a time, for streaming a stack without holding it.
class TiffPageReader {
 public:
  // Probes the whole file first (as ReadTiff does).
  static absl::StatusOr<std::unique_ptr<TiffPageReader>> Open(const std::string& path,
                                                              const StackLimits& limits = {});
  static absl::StatusOr<std::unique_ptr<TiffPageReader>> Open(const InputFile& file,
                                                              const StackLimits& limits = {});
  // Over a file that ProbeTiff has already validated into `info`: its pages are not walked
  // again (each page is still checked as it is decoded).
  static absl::StatusOr<std::unique_ptr<TiffPageReader>> Open(const InputFile& file, TiffInfo info);
  ~TiffPageReader();

  const TiffInfo& info() const { return info_; }
  size_t slice_bytes() const { return slice_bytes_; }
  // Decodes plane `z` into `dst` (slice_bytes() bytes). Thread-safe: each calling thread decodes
  // with a libtiff handle of its own, so pages can be decoded in parallel. A chunky page of
  // several samples is decoded whole once per thread for as long as that thread reads its
  // samples (planes read in order, as the engine does, decode each page about once per thread
  // that reads from it).
  absl::Status ReadPage(int64_t z, uint8_t* dst);

 private:
  struct Workers;
  TiffPageReader(InputFile file, TiffInfo info, size_t slice_bytes);

  InputFile file_;
  TiffInfo info_;
  size_t slice_bytes_;
  std::unique_ptr<Workers> workers_;
};

}  // namespace stackproc::core
