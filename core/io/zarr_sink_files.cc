// ZarrSink's files: the chunks (v2, unsharded v3) or shards (v3) of a z-chunk of gathered
// slices, each written whole under a temporary name and renamed (zarr_sink.h).
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cstring>
#include <functional>

#include "absl/strings/str_cat.h"
#include "core/base/first_error.h"
#include "core/base/status_macros.h"
#include "core/io/zarr_sink_level.h"
#include "core/zarr/zarr_chunks.h"

namespace stackproc::core {
namespace {

// Runs `work(i)` for i in [0, n): on this thread, or in parallel; the first error (by index).
absl::Status ForEach(int64_t n, bool parallel, const std::function<absl::Status(int64_t)>& work) {
  if (!parallel) {
    for (int64_t i = 0; i < n; ++i) STACKPROC_RETURN_IF_ERROR(work(i));
    return absl::OkStatus();
  }
  tbb::task_group_context context;
  FirstError first(&context);
  tbb::parallel_for(
      int64_t{0}, n,
      [&](int64_t i) {
        absl::Status status = work(i);
        if (!status.ok()) first.Set(i, std::move(status));
      },
      context);
  return first.Take();
}

}  // namespace

bool ZarrSink::GatherChunk(const Level& level, const uint8_t* slab, int64_t s0, int64_t s1,
                           int64_t y0, int64_t x0, std::vector<uint8_t>& chunk) const {
  const int64_t chunk_height = level.meta.chunks[level.lead + 1];
  const int64_t chunk_width = level.meta.chunks[level.lead + 2];
  const int64_t height = std::min(chunk_height, level.shape.height - y0);
  const int64_t width = std::min(chunk_width, level.shape.width - x0);
  const size_t pixel = BytesPerPixel(level.meta.type);
  chunk.resize(static_cast<size_t>(level.meta.chunk_elements()) * pixel);
  // An edge chunk is stored whole: what lies beyond the image is zeros (an inner chunk is
  // all image, copied over whatever the buffer held).
  if (height < chunk_height || width < chunk_width || s1 - s0 < level.meta.chunks[level.lead]) {
    std::fill(chunk.begin(), chunk.end(), uint8_t{0});
  }
  for (int64_t s = s0; s < s1; ++s) {
    for (int64_t r = 0; r < height; ++r) {
      std::memcpy(
          chunk.data() + static_cast<size_t>(((s - s0) * chunk_height + r) * chunk_width) * pixel,
          slab + static_cast<size_t>((s * level.shape.height + y0 + r) * level.shape.width + x0) *
                     pixel,
          static_cast<size_t>(width) * pixel);
    }
  }
  // All zeros: the first byte is, and each byte equals the next (memcmp is vectorised).
  return chunk.empty() ||
         (chunk[0] == 0 && std::memcmp(chunk.data(), chunk.data() + 1, chunk.size() - 1) == 0);
}

absl::StatusOr<ZarrSink::RowFolders> ZarrSink::MakeRowFolders(const Level& level, int64_t v,
                                                              int64_t zc) const {
  const std::vector<int64_t>& grid = level.meta.grid();
  RowFolders row;
  row.file_height = grid[level.lead + 1];
  row.file_width = grid[level.lead + 2];
  row.rows = ChunksAlong(level.shape.height, row.file_height);
  row.columns = ChunksAlong(level.shape.width, row.file_width);
  // The file's key: (c/)(t/c/)zc/yc/xc, one folder per index (NGFF's "/" separator).
  std::vector<std::string> key;
  if (level.meta.key_prefix) key.push_back("c");
  if (times_ > 1) key.push_back(absl::StrCat(v / channels_));
  if (channels_ > 1) key.push_back(absl::StrCat(v % channels_));
  key.push_back(absl::StrCat(zc));
  std::string prefix;
  UniqueFd z_dir;
  for (const std::string& part : key) {
    STACKPROC_ASSIGN_OR_RETURN(
        z_dir, MakeFolderAt(z_dir ? z_dir.get() : level.dir.get(), part, store_.display()));
    absl::StrAppend(&prefix, part, "/");
  }
  for (int64_t yc = 0; yc < row.rows; ++yc) {
    STACKPROC_ASSIGN_OR_RETURN(row.y.emplace_back(),
                               MakeFolderAt(z_dir.get(), absl::StrCat(yc), store_.display()));
  }
  row.display = absl::StrCat(store_.display(), "/", level.path, "/", prefix);
  return row;
}

absl::Status ZarrSink::WriteChunkRow(Level& level, int64_t v, int64_t zc, const uint8_t* slab,
                                     int64_t slices, bool parallel) {
  STACKPROC_ASSIGN_OR_RETURN(RowFolders row, MakeRowFolders(level, v, zc));
  const int64_t file_height = row.file_height, file_width = row.file_width;
  const int64_t rows = row.rows, columns = row.columns;
  const std::vector<UniqueFd>& y_dirs = row.y;
  const size_t pixel = BytesPerPixel(level.meta.type);
  const auto display = [&](int64_t i) { return row.Display(i); };
  if (!level.meta.shards.empty()) {
    for (int64_t i = 0; i < rows * columns; ++i) {
      STACKPROC_RETURN_IF_ERROR(WriteShard(level, slab, slices, (i / columns) * file_height,
                                           (i % columns) * file_width,
                                           y_dirs[static_cast<size_t>(i / columns)].get(),
                                           absl::StrCat(i % columns), display(i), parallel));
    }
    return absl::OkStatus();
  }
  const auto write_chunk = [&](int64_t i) -> absl::Status {
    std::vector<uint8_t>& chunk = level.scratch.local();
    const bool empty = GatherChunk(level, slab, 0, slices, (i / columns) * file_height,
                                   (i % columns) * file_width, chunk);
    if (empty && level.meta.zarr_format == 3) return absl::OkStatus();  // v3: the fill value
    std::vector<uint8_t>& encoded = level.encoded.local();
    STACKPROC_RETURN_IF_ERROR(EncodeChunk(codec_, chunk.data(), chunk.size(), pixel, encoded));
    return WriteFileAt(y_dirs[static_cast<size_t>(i / columns)].get(), absl::StrCat(i % columns),
                       encoded.data(), encoded.size(), display(i));
  };
  return ForEach(rows * columns, parallel, write_chunk);
}

absl::Status ZarrSink::EncodeLayer(const uint8_t* data, std::vector<std::vector<uint8_t>>& out) {
  Level& level = *levels_.front();
  const std::vector<int64_t>& chunks = level.meta.chunks;
  const std::vector<int64_t>& shards = level.meta.shards;
  const size_t lead = level.lead;
  const int64_t across = shards[lead + 2] / chunks[lead + 2];
  const int64_t layer = (shards[lead + 1] / chunks[lead + 1]) * across;
  const int64_t columns = ChunksAlong(level.shape.width, shards[lead + 2]);
  const int64_t files = ChunksAlong(level.shape.height, shards[lead + 1]) * columns;
  const size_t pixel = BytesPerPixel(level.meta.type);
  out.resize(static_cast<size_t>(files * layer));
  for (int64_t i = 0; i < files * layer; ++i) {
    std::vector<uint8_t>& encoded = out[static_cast<size_t>(i)];
    encoded.clear();
    const int64_t file = i / layer, j = i % layer;
    const int64_t y = (file / columns) * shards[lead + 1] + (j / across) * chunks[lead + 1];
    const int64_t x = (file % columns) * shards[lead + 2] + (j % across) * chunks[lead + 2];
    if (y >= level.shape.height || x >= level.shape.width) continue;
    std::vector<uint8_t>& chunk = level.scratch.local();
    if (GatherChunk(level, data, 0, 1, y, x, chunk)) continue;  // the fill value: left out
    STACKPROC_RETURN_IF_ERROR(EncodeChunk(codec_, chunk.data(), chunk.size(), pixel, encoded));
  }
  return absl::OkStatus();
}

absl::Status ZarrSink::AppendLayer(int64_t v, int64_t z,
                                   const std::vector<std::vector<uint8_t>>& encoded) {
  Level& level = *levels_.front();
  const int64_t depth = level.chunk_depth();
  const int64_t layer = static_cast<int64_t>(encoded.size()) /
                        (ChunksAlong(level.shape.height, level.meta.shards[level.lead + 1]) *
                         ChunksAlong(level.shape.width, level.meta.shards[level.lead + 2]));
  if (z % depth == 0) {  // a new row of shards: its folders, each shard opened
    open_row_ = std::make_unique<OpenRow>();
    STACKPROC_ASSIGN_OR_RETURN(open_row_->folders, MakeRowFolders(level, v, z / depth));
    const RowFolders& row = open_row_->folders;
    for (int64_t i = 0; i < row.rows * row.columns; ++i) {
      open_row_->writers.push_back(std::make_unique<ShardWriter>(
          row.y[static_cast<size_t>(i / row.columns)].get(), absl::StrCat(i % row.columns),
          row.Display(i), ChunksPerShard(level.meta)));
      STACKPROC_RETURN_IF_ERROR(open_row_->writers.back()->Open());
    }
  }
  const int64_t l = z % depth;  // the layer of the shard: its chunks are one slice deep
  for (size_t i = 0; i < open_row_->writers.size(); ++i) {
    for (int64_t j = 0; j < layer; ++j) {
      const std::vector<uint8_t>& bytes = encoded[i * static_cast<size_t>(layer) + size_t(j)];
      if (!bytes.empty())
        STACKPROC_RETURN_IF_ERROR(open_row_->writers[i]->Append(l * layer + j, bytes));
    }
  }
  if (l + 1 == depth || z + 1 == level.shape.depth) {
    for (const auto& writer : open_row_->writers) STACKPROC_RETURN_IF_ERROR(writer->Commit());
    open_row_.reset();
  }
  return absl::OkStatus();
}

absl::Status ZarrSink::WriteShard(Level& level, const uint8_t* slab, int64_t slices, int64_t y0,
                                  int64_t x0, int dir, const std::string& name,
                                  const std::string& display, bool parallel) {
  const std::vector<int64_t>& chunks = level.meta.chunks;
  const std::vector<int64_t>& shards = level.meta.shards;
  const size_t lead = level.lead;
  const int64_t across = shards[lead + 2] / chunks[lead + 2];
  const int64_t layer = (shards[lead + 1] / chunks[lead + 1]) * across;  // chunks of one z
  ShardWriter writer(dir, name, display, ChunksPerShard(level.meta));
  STACKPROC_RETURN_IF_ERROR(writer.Open());
  // Layer by layer of inner chunks: each encoded in parallel (into buffers kept from layer to
  // layer), then appended in the index's order (so every run writes the same bytes). Chunks
  // beyond the image, or all zeros (the fill value), are left out.
  std::vector<std::vector<uint8_t>> encoded(static_cast<size_t>(layer));
  const size_t pixel = BytesPerPixel(level.meta.type);
  for (int64_t l = 0; l * chunks[lead] < slices; ++l) {
    STACKPROC_RETURN_IF_ERROR(ForEach(layer, parallel, [&](int64_t j) -> absl::Status {
      std::vector<uint8_t>& out = encoded[static_cast<size_t>(j)];
      out.clear();
      const int64_t y = y0 + (j / across) * chunks[lead + 1];
      const int64_t x = x0 + (j % across) * chunks[lead + 2];
      if (y >= level.shape.height || x >= level.shape.width) return absl::OkStatus();
      std::vector<uint8_t>& chunk = level.scratch.local();
      const int64_t s0 = l * chunks[lead];
      if (GatherChunk(level, slab, s0, std::min(slices, s0 + chunks[lead]), y, x, chunk)) {
        return absl::OkStatus();
      }
      return EncodeChunk(codec_, chunk.data(), chunk.size(), pixel, out);
    }));
    for (int64_t j = 0; j < layer; ++j) {
      if (encoded[static_cast<size_t>(j)].empty()) continue;
      STACKPROC_RETURN_IF_ERROR(writer.Append(l * layer + j, encoded[static_cast<size_t>(j)]));
    }
  }
  return writer.Commit();
}

}  // namespace stackproc::core
