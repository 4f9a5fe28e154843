// Writes a Stack as a multi-page TIFF (BigTIFF when it would not fit a classic TIFF), atomically:
// the pages go to a temporary file beside the target, renamed over the target only when every
// page is written and synced. A failed or cancelled write leaves no file under the final name
// (and any earlier file there untouched).
//
// Laid out as ImageJ and tifffile lay out a stack, so that every reader reads what the ImageJ
// description promises: an uncompressed stack's planes one after another from byte 8 (16 in a
// BigTIFF) on, its directories after them (tiff_directory.h); a compressed one page by page
// through libtiff (ImageJ reads every directory of a compressed stack).
#pragma once

#include <sys/types.h>
#include <tbb/task_arena.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/base/cancel.h"
#include "core/base/file.h"
#include "core/stack/stack.h"
#include "core/tiff/compression.h"

namespace stackproc::core {

class TiffHandle;

// What `compression` is for a TIFF (and each plane of a sequence): kDefault is none;
// InvalidArgument for lz4, which is OME-Zarr's.
absl::StatusOr<Compression> ResolveTiffCompression(Compression compression);
// Whether a TIFF written with `compression` has compressed strips (kDefault: none).
inline bool CompressesTiff(Compression compression) {
  return ResolveTiffCompression(compression).value_or(Compression::kNone) != Compression::kNone;
}

// The compression a TIFF Compression tag names, among those the writer writes; nullopt else.
std::optional<Compression> CompressionOfTag(uint16_t tag);

struct WriteOptions {
  Compression compression = Compression::kDefault;
  int compression_level = 0;                  // 0: the codec's default (CompressionLevel)
  Predictor predictor = Predictor::kDefault;  // TIFF outputs
  // Pixel data above this many bytes is written as BigTIFF (classic TIFF offsets end at 4 GiB;
  // the margin leaves room for directories and for codecs that expand incompressible data).
  uint64_t bigtiff_threshold = (uint64_t{4} << 30) - (uint64_t{256} << 20);
  // Replace an existing file at the target path.
  bool overwrite = true;
  // fsync the file before the rename, so a completed write survives a crash.
  bool sync = true;
  const CancelToken* cancel = nullptr;  // polled between pages
  // Deflate and zstd strips of 8/16-bit pages are compressed many at once, in `arena` (nullptr:
  // the calling thread's arena, all cores); false: by libtiff's codecs on the writing thread.
  bool parallel_compression = true;
  tbb::task_arena* arena = nullptr;
  // Names the temporary file ".NAME.tmp-TAG-RANDOM" (empty: the process id), so that whoever
  // tagged a write can remove what a crash left of it (RemoveTempFiles).
  std::string temp_tag;
  // OME-Zarr outputs: the chunk shape, z x y x x (unset: ZarrSink's default, one slice by up to
  // 1024 x 1024), and how many levels, each half the size of the one before, are written below
  // full resolution.
  std::optional<std::array<int64_t, 3>> chunks;
  int pyramid_levels = 0;
  // OME-Zarr outputs: 3 (NGFF 0.5 on Zarr v3, chunks packed into shards) or 2 (NGFF 0.4 on Zarr
  // v2, a file per chunk); and v3's shard shape, z x y x x (unset: zarr_options.h's default).
  int zarr_format = 3;
  std::optional<std::array<int64_t, 3>> zarr_shards;
  // A TIFF shard of a job cut in z-ranges: its ShardRecord's text (shards.h), on page 0 as
  // kShardRecordTag. Empty: the file is whole.
  std::string shard_record;
};

// Writes a stack one page at a time, in order, to a temporary file beside `path`; Commit
// renames it into place. A writer destroyed before Commit removes its temporary file, so a
// stream that breaks off leaves nothing under the final name.
class TiffPageWriter {
 public:
  // Same errors as WriteTiff, before any page is written. `metadata` describes the whole stack.
  static absl::StatusOr<std::unique_ptr<TiffPageWriter>> Create(const std::string& path,
                                                                const StackShape& shape,
                                                                PixelType type,
                                                                StackMetadata metadata,
                                                                const WriteOptions& options = {});
  // The same in a directory already open (core/file.h): nothing is resolved by path.
  static absl::StatusOr<std::unique_ptr<TiffPageWriter>> Create(const OutputTarget& target,
                                                                const StackShape& shape,
                                                                PixelType type,
                                                                StackMetadata metadata,
                                                                const WriteOptions& options = {});
  // Where a writer stands, for another to take its temporary file up from there (Resume): the
  // file's name in the target's directory, the pages written and the byte they end at.
  struct Progress {
    std::string temp;
    int64_t pages = 0;
    uint64_t end = 0;
  };
  // Takes up the temporary file that a writer of the same stack (the same target, shape, type,
  // metadata and options) left at `at`, its progress() when its process ended before Commit:
  // the file is cut back to those pages and the next page written is page `at.pages`; Commit
  // then makes what one writer would have, byte for byte. NotFound when the file is gone;
  // DataLoss when it is shorter than `at` says or its pages are not `at.pages` pages laid out
  // as these options lay them out.
  static absl::StatusOr<std::unique_ptr<TiffPageWriter>> Resume(
      const OutputTarget& target, const Progress& at, const StackShape& shape, PixelType type,
      StackMetadata metadata, const WriteOptions& options = {});
  ~TiffPageWriter();
  TiffPageWriter(const TiffPageWriter&) = delete;
  TiffPageWriter& operator=(const TiffPageWriter&) = delete;

  // Appends the next page (one slice of the shape and type, slice_bytes() bytes).
  absl::Status WritePage(const uint8_t* data);

  // WritePage in two steps, so that pages can be compressed on many threads and written in
  // order by one: Encode prepares a page (thread-safe; deflate and zstd strips of 8/16-bit
  // pages are compressed here, in the calling thread's arena), WriteEncoded appends it.
  struct EncodedPage {
    const uint8_t* page = nullptr;             // the page, until it is written
    std::vector<std::vector<uint8_t>> strips;  // its compressed strips, when Encode made them
    bool encoded = false;
  };
  absl::Status Encode(const uint8_t* page, EncodedPage& out) const;
  // Appends the next page; `page.page` must still point at the slice's data.
  absl::Status WriteEncoded(const EncodedPage& page);
  size_t slice_bytes() const { return slice_bytes_; }
  bool compressed() const { return options_.compression != Compression::kNone; }
  int64_t pages_written() const { return next_page_; }
  Progress progress() const;
  // The temporary file stays when the writer goes without Commit (for a Resume), instead of
  // being removed.
  void Keep() { keep_ = true; }
  // The rows of each strip, and the Predictor tag of compressed pages: how this writer lays a
  // page out (AssembleTiff copies strips only between files laid out alike).
  uint32_t rows_per_strip() const { return rows_per_strip_; }
  uint16_t predictor() const { return predictor_; }
  // Flushes, syncs and renames into place; FailedPrecondition unless every page was written.
  absl::Status Commit();

 private:
  TiffPageWriter(OutputTarget target, std::string temp, UniqueFd temp_fd,
                 std::unique_ptr<TiffHandle> handle, const StackShape& shape, PixelType type,
                 StackMetadata metadata, const WriteOptions& options, size_t slice_bytes,
                 bool bigtiff);

  // An uncompressed page at its place among the planes; the directories of every page and the
  // header that points at them (Commit).
  absl::Status WritePlane(const uint8_t* page);
  absl::Status WriteDirectories();
  absl::Status PwriteAll(const void* data, size_t size, uint64_t at, absl::string_view what);

  // With sync: starts the disk writing what the pages so far put in the page cache. Left to the
  // kernel, an output under its dirty thresholds (a 1 GiB stack on a 24 GiB machine) is not
  // written until Commit's fsync, and the job then waits for all of it at the end.
  void StartWriteback();

  const OutputTarget target_;
  const std::string path_;  // the target's display name
  const std::string temp_;  // its temporary file's name in the target's directory
  UniqueFd temp_fd_;
  std::unique_ptr<TiffHandle> handle_;  // compressed pages; null for uncompressed ones
  const StackShape shape_;
  const PixelType type_;
  const StackMetadata metadata_;
  const WriteOptions options_;
  const size_t slice_bytes_;
  const uint32_t rows_per_strip_;
  const uint16_t predictor_;  // the Predictor tag of compressed pages
  const bool bigtiff_;
  const bool encode_here_;        // deflate/zstd strips compressed by Encode
  std::vector<uint8_t> scratch_;  // libtiff's codecs modify the buffer they are given
  EncodedPage encoded_;           // WritePage's
  int64_t next_page_ = 0;
  off_t written_back_ = 0;  // the file's bytes StartWriteback has handed to the disk
  bool closed_ = false;     // Commit began: no more pages
  bool committed_ = false;
  bool keep_ = false;
};

}  // namespace stackproc::core
