// ZarrSink's inside, shared by its two halves: zarr_sink.cc (the levels, the slices gathered
// and carried down the pyramid) and zarr_sink_files.cc (what becomes of them: chunk and shard
// files). Not for other users.
#pragma once

#include <tbb/enumerable_thread_specific.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/base/file.h"
#include "core/io/zarr_sink.h"
#include "core/zarr/zarr_chunks.h"

namespace stackproc::core {

struct ZarrSink::Level {
  std::string path;    // "0" for full resolution, "1" half of it, ...
  ZarrArrayMeta meta;  // shape and chunks: (t, c,) z, y, x
  StackShape shape;    // of one volume (a time point and channel)
  size_t lead = 0;     // axes before z (t, c)
  size_t slice_bytes = 0;
  UniqueFd dir;               // its folder in the temporary store
  bool halves_z = false;      // pairs the slices of the level above
  std::vector<uint8_t> slab;  // a z-chunk's slices while they are gathered (chunks of several)
  size_t slab_bytes = 0;      // its size, allocated when a slice is first gathered
  int64_t gathered = 0;
  int64_t appended = 0;          // slices of this level so far
  int64_t received = 0;          // slices of the level above so far
  std::vector<uint8_t> pending;  // the first slice of a pair (halves_z)
  bool has_pending = false;
  std::vector<uint8_t> halved;  // a slice of this level halved, for the next
  tbb::enumerable_thread_specific<std::vector<uint8_t>> scratch;  // a chunk, gathered
  tbb::enumerable_thread_specific<std::vector<uint8_t>> encoded;  // and encoded (a file each)

  // Slices of one file: a chunk's, or a shard's; gathered before they are written.
  int64_t chunk_depth() const { return meta.grid()[lead]; }
};

struct ZarrSink::OpenRow {
  RowFolders folders;
  std::vector<std::unique_ptr<ShardWriter>> writers;  // one per shard of the row
};

}  // namespace stackproc::core
