// OME-Zarr as a slice source: level 0 of an image's first multiscale (NGFF 0.4 on Zarr v2, or
// 0.5 on v3: its t and c axes as time points and channels, planes in t, c, z order), or a plain
// array of either; chunked any way, v3's shards any way, with the codecs of zarr_codec.h (and
// v3's transpose and crc32c), either byte order, both of v3's chunk key encodings, fill values
// for chunks never written. A z-chunk of several slices is decoded once, its chunks in parallel,
// and kept until its slices are read.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/file.h"
#include "core/exec/engine.h"
#include "core/tiff/tiff_reader.h"
#include "core/tiff/tiff_writer.h"
#include "core/zarr/zarr_metadata.h"

namespace stackproc::core {

// Whether `path` names an OME-Zarr image or a Zarr array: a name ending in ".zarr" (or
// ".zarr/"), or a folder holding a zarr.json, a .zarray or a .zattrs.
bool IsZarrPath(const Files& files, const std::string& path);

class ZarrSource final : public SliceSource {
 public:
  // Reads the store's metadata (every file beneath `path` is opened through `files`) and
  // validates it: InvalidArgument for what stackproc does not read (naming the file: a 4-D
  // array, an unknown codec, a dtype...), ResourceExhausted beyond `limits`.
  static absl::StatusOr<std::unique_ptr<ZarrSource>> Open(const Files& files,
                                                          const std::string& path,
                                                          const StackLimits& limits = {});

  const StackInfo& info() const override { return info_; }
  SourceTraits traits() const override { return {.chunk_slices = chunk_depth()}; }
  // Plane z, from its z-chunk's chunks (decoded then, or already). DataLoss for a chunk that is
  // corrupt or truncated, naming its file.
  absl::Status Read(int64_t z, uint8_t* buffer) override;

  const ZarrArrayMeta& array() const { return array_; }

 private:
  struct Slab;  // the slices of one z-chunk, decoded
  // Which of the array's axes are t, c and z (-1: it has none); y and x are the last two.
  struct Axes {
    int t = -1, c = -1, z = -1;
  };
  // One z-chunk of one time point and channel.
  struct Row {
    int64_t t = 0, c = 0, zc = 0;
  };
  static absl::StatusOr<Axes> AxesOf(const ZarrArrayMeta& array,
                                     const std::optional<NgffImage>& image,
                                     const std::string& name);
  ZarrSource(const Files& files, std::string array_path, ZarrArrayMeta array, Axes axes,
             StackInfo info)
      : files_(files),
        array_path_(std::move(array_path)),
        array_(std::move(array)),
        axes_(axes),
        info_(std::move(info)) {}

  int64_t chunk_depth() const;
  int64_t slices() const;  // z-slices of one time point and channel
  struct Shard;            // a v3 shard's file and index
  static absl::StatusOr<std::unique_ptr<ZarrSource>> Make(const Files& files,
                                                          std::string array_path,
                                                          ZarrArrayMeta array,
                                                          const std::optional<NgffImage>& image,
                                                          VoxelSize size, const StackLimits& limits,
                                                          const std::string& name);
  // Decodes the chunks of `row` into `slab` (its slices, whole), in parallel when asked.
  absl::Status DecodeRow(const Row& row, uint8_t* slab, bool parallel) const;
  absl::Status DecodeChunk(const Row& row, const std::vector<int64_t>& index, const Shard* shard,
                           uint8_t* slab, int64_t slices_in_row,
                           std::vector<uint8_t>& scratch) const;
  // The stored bytes of the chunk at `index` (in `shard`, when sharded) and what to call it;
  // false when it was never written.
  absl::StatusOr<bool> ReadChunk(const std::vector<int64_t>& index, const Shard* shard,
                                 std::vector<uint8_t>& encoded, std::string& name) const;
  // The index of the shard that holds the chunk at `chunk`.
  std::vector<int64_t> ShardOf(std::vector<int64_t> chunk) const;

  const Files& files_;
  const std::string array_path_;
  const ZarrArrayMeta array_;
  const Axes axes_;
  const StackInfo info_;
  std::mutex mutex_;
  std::map<int64_t, std::shared_ptr<Slab>> slabs_;  // by z-chunk, while slices are unread
};

}  // namespace stackproc::core
