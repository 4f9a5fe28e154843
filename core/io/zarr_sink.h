// OME-Zarr as a slice sink: NGFF 0.5 on Zarr v3, its chunks packed in shards (the default), or
// NGFF 0.4 on Zarr v2, a file per chunk. An image of axes z, y, x with its physical scale and
// unit (t and c before them for a stack of time points or channels, whose planes must come in
// t, c, z order, with omero's channels), written as the slices come (memory: the window, and a
// z-chunk or z-shard of slices when a file holds several). Each chunk or shard is written whole,
// once, by one writer, under a temporary name renamed into place; the whole store in a
// temporary folder renamed into place by Close. Pyramid levels are made from the same slices in
// the same pass.
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
#include "absl/strings/str_cat.h"
#include "core/base/file.h"
#include "core/exec/engine.h"
#include "core/io/zarr_options.h"
#include "core/tiff/tiff_reader.h"
#include "core/tiff/tiff_writer.h"
#include "core/zarr/zarr_metadata.h"

namespace stackproc::core {
// A z-range of a stack, written by one of several processes into one store (the shards of a
// job spread over a cluster): CreateZarrStore makes the store (metadata, no chunks), then each
// process runs a ZarrSink with its range, and the store is whole when the last one ends, with
// no assembly step. A range must start and end on z-chunks of every level (and on pairs of
// slices where a pyramid level halves z), except that the last may end with the stack.
struct ZarrRegion {
  int64_t depth = 0;    // of the whole stack
  int64_t z_begin = 0;  // the stack's slice that is this sink's slice 0
};

class ZarrSink final : public SliceSink {
 public:
  // `store`: the store's folder (its parent open, its name), which must not exist yet (unless
  // options.overwrite: then it is replaced when complete). With `region`: the store that
  // CreateZarrStore made for the whole stack, whose chunks of the range this sink writes.
  ZarrSink(OutputTarget store, WriteOptions options, std::optional<ZarrRegion> region = {});
  ~ZarrSink() override;

  // What a sink written with `options` holds (for the plan, before there is a sink).
  static SinkTraits TraitsFor(const WriteOptions& options);
  // The slices a ZarrRegion of a store of `output` written with `options` starts on and, unless
  // it ends the stack, ends on (shards.h's ShardRange `align`): whole files (z-chunks, or
  // shards) of every level, in level 0's slices (twice as many for each level that halves z
  // down to it); whole volumes of a stack of channels or time points where a volume is not a
  // multiple of that.
  static absl::StatusOr<int64_t> RangeAlignment(const WriteOptions& options,
                                                const StackInfo& output);
  SinkTraits traits() const override { return TraitsFor(options_); }
  absl::Status Open(const StackInfo& output, int64_t window_slices,
                    std::function<void(int64_t)> release) override;
  // Halves slice z for the first pyramid level; with single-slice chunks, writes its chunks.
  absl::Status Encode(int64_t z, const uint8_t* data) override;
  // Gathers z-chunks of several slices, and the pyramid's levels, and writes their chunks.
  absl::Status Write(int64_t z, const uint8_t* data) override;
  absl::Status Close() override;

 private:
  struct Level;
  // The levels of a store of `output` (shapes, chunks, which halve z) and its NGFF image.
  absl::StatusOr<NgffImage> PlanLevels(const StackInfo& output);
  // A region's store: opened, checked against the plan, each level's first slice set.
  absl::Status OpenRegion(int64_t slices);
  // Slice `slice` of level k, in order: gathered, written when its z-chunk is whole; then
  // carried to level k + 1 (halved in y and x, paired in z where that level halves z).
  absl::Status Append(size_t k, const uint8_t* slice);
  absl::Status Descend(size_t k, const uint8_t* halved);
  // The folders of z-row `zc` of volume `v` of `level`: (c/)(t/c/)zc, and one per y index.
  struct RowFolders {
    std::vector<UniqueFd> y;
    std::string display;  // the store's, down to the row's folder
    int64_t file_height = 0, file_width = 0, rows = 0, columns = 0;
    std::string Display(int64_t i) const {
      return absl::StrCat(display, i / columns, "/", i % columns);
    }
  };
  absl::StatusOr<RowFolders> MakeRowFolders(const Level& level, int64_t v, int64_t zc) const;
  // Level 0's shards when their chunks are one slice deep (the default): Encode encodes each
  // slice's chunks, in parallel with other slices, into its slot; Write appends them to the row
  // of shards it opened at the row's first slice, and commits them at its last.
  absl::Status EncodeLayer(const uint8_t* data, std::vector<std::vector<uint8_t>>& out);
  absl::Status AppendLayer(int64_t v, int64_t z, const std::vector<std::vector<uint8_t>>& encoded);
  // Writes z-chunk (or z-shard) `zc` of volume `v` (a time point and channel) of `level`.
  absl::Status WriteChunkRow(Level& level, int64_t v, int64_t zc, const uint8_t* slab,
                             int64_t slices, bool parallel);
  // Writes the shard whose first pixel is (y0, x0) of `slab` (`slices` slices) as `name` in
  // folder `dir`, whole, under a temporary name then renamed.
  absl::Status WriteShard(Level& level, const uint8_t* slab, int64_t slices, int64_t y0, int64_t x0,
                          int dir, const std::string& name, const std::string& display,
                          bool parallel);
  // Copies the chunk at (y0, x0) of slices [s0, s1) of `slab` into `chunk` (padded with zeros);
  // whether it is all zeros.
  bool GatherChunk(const Level& level, const uint8_t* slab, int64_t s0, int64_t s1, int64_t y0,
                   int64_t x0, std::vector<uint8_t>& chunk) const;
  // The level's .zarray or zarr.json.
  std::string ArrayMetadata(const Level& level) const;

  const OutputTarget store_;
  const WriteOptions options_;
  const std::optional<ZarrRegion> region_;
  UniqueFd store_fd_;  // a region's store
  ZarrCodec codec_;
  std::vector<std::unique_ptr<Level>> levels_;
  // The stack's volumes: its time points x channels, each a z-stack of its own in every level.
  int64_t times_ = 1, channels_ = 1;
  std::vector<std::vector<uint8_t>> halves_;  // per slot: slice z halved for level 1
  bool stream_shards_ = false;                // level 0's shards written slice by slice
  std::vector<std::vector<std::vector<uint8_t>>> layers_;  // per slot: its chunks, encoded
  struct OpenRow;
  std::unique_ptr<OpenRow> open_row_;  // level 0's shards being written
  std::optional<TempFolder> temp_;     // the store, while it is written
};

// Makes the store of `output` (the whole stack) at `store`, with its metadata and no chunks,
// for ZarrSinks of regions to fill; written under a temporary name and renamed, like any store.
absl::Status CreateZarrStore(const OutputTarget& store, const StackInfo& output,
                             const WriteOptions& options);

}  // namespace stackproc::core
