#include "core/io/zarr_source.h"

#include <oneapi/tbb/collaborative_call_once.h>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "core/base/first_error.h"
#include "core/base/status_macros.h"
#include "core/zarr/zarr_chunks.h"
#include "core/zarr/zarr_json.h"

namespace stackproc::core {
namespace {

absl::StatusOr<std::string> ReadText(const Files& files, const std::string& path) {
  STACKPROC_ASSIGN_OR_RETURN(InputFile file, files.Input(path));
  STACKPROC_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes,
                             ReadWholeFile(file, kMaxZarrMetadataBytes));
  return std::string(bytes.begin(), bytes.end());
}

// `count` pixels of `value` (rounded and clamped to an integer type's range).
void FillPixels(PixelType type, double value, uint8_t* out, size_t count) {
  const auto fill = [&](auto zero) {
    using T = decltype(zero);
    T v{};
    if constexpr (std::is_floating_point_v<T>) {
      v = static_cast<T>(value);
    } else if (!std::isnan(value)) {
      v = static_cast<T>(
          std::clamp(std::round(value), 0.0, static_cast<double>(std::numeric_limits<T>::max())));
    }
    std::fill_n(reinterpret_cast<T*>(out), count, v);
  };
  switch (type) {
    case PixelType::kUint8:
      return fill(uint8_t{});
    case PixelType::kUint16:
      return fill(uint16_t{});
    case PixelType::kFloat32:
      return fill(float{});
  }
}

// ": a, b" for the arrays (folders with a .zarray) in group `root`, or "".
std::string ArraysIn(const Files& files, const std::string& root) {
  absl::StatusOr<std::vector<std::string>> names = files.List(root);
  if (!names.ok()) return "";
  std::vector<std::string> arrays;
  for (const std::string& name : *names) {
    if (files.Input(absl::StrCat(root, "/", name, "/.zarray")).ok()) arrays.push_back(name);
  }
  std::sort(arrays.begin(), arrays.end());
  return arrays.empty() ? "" : absl::StrCat(": ", absl::StrJoin(arrays, ", "));
}

}  // namespace

bool IsZarrPath(const Files& files, const std::string& path) {
  const absl::string_view name = absl::StripSuffix(path, "/");
  if (absl::EndsWithIgnoreCase(name, ".zarr")) return true;
  const std::string root(name);
  return files.IsDirectory(root) &&
         (files.Input(root + "/zarr.json").ok() || files.Input(root + "/.zarray").ok() ||
          files.Input(root + "/.zattrs").ok());
}

struct ZarrSource::Slab {
  tbb::collaborative_once_flag decoded;
  absl::Status status;
  std::vector<uint8_t> data;
  int64_t unread = 0;
};

absl::StatusOr<std::unique_ptr<ZarrSource>> ZarrSource::Open(const Files& files,
                                                             const std::string& path,
                                                             const StackLimits& limits) {
  const std::string root(absl::StripSuffix(path, "/"));
  if (!files.IsDirectory(root)) {
    return absl::NotFoundError(absl::StrCat(root, ": no such folder (an OME-Zarr store is one)"));
  }
  std::string array_path = root;
  VoxelSize size;
  std::optional<NgffImage> image;
  // Zarr v3: a zarr.json, of the array or of a group (an NGFF 0.5 image's).
  absl::StatusOr<std::string> zarr_json = ReadText(files, root + "/zarr.json");
  if (!absl::IsNotFound(zarr_json.status())) {
    STACKPROC_RETURN_IF_ERROR(zarr_json.status());
    const std::string name = root + "/zarr.json";
    STACKPROC_ASSIGN_OR_RETURN(zarr_json::Json node, zarr_json::ParseJson(*zarr_json, name));
    if (zarr_json::StringAt(node, "node_type") == "group") {
      STACKPROC_ASSIGN_OR_RETURN(image, ParseNgffAttributes(*zarr_json, name));
      if (!image) {
        return absl::InvalidArgumentError(
            absl::StrCat(root,
                         ": a Zarr group with no OME \"multiscales\" (not an OME-Zarr "
                         "image); name one of its arrays instead"));
      }
      const NgffImage::Level& finest = image->levels.front();
      array_path = absl::StrCat(root, "/", finest.path);
      size = {finest.scale[0], finest.scale[1], finest.scale[2], image->unit};
      STACKPROC_ASSIGN_OR_RETURN(zarr_json, ReadText(files, array_path + "/zarr.json"));
    }
    STACKPROC_ASSIGN_OR_RETURN(ZarrArrayMeta array,
                               ParseZarrJson(*zarr_json, array_path + "/zarr.json"));
    return Make(files, std::move(array_path), std::move(array), image, size, limits,
                array_path + "/zarr.json");
  }
  absl::StatusOr<std::string> zarray = ReadText(files, root + "/.zarray");
  if (absl::IsNotFound(zarray.status())) {
    absl::StatusOr<std::string> zattrs = ReadText(files, root + "/.zattrs");
    if (absl::IsNotFound(zattrs.status()) && !files.Input(root + "/.zgroup").ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          root, ": holds neither a .zarray nor a .zattrs (not a Zarr array or an OME-Zarr image)"));
    }
    if (!absl::IsNotFound(zattrs.status())) {
      STACKPROC_RETURN_IF_ERROR(zattrs.status());
      STACKPROC_ASSIGN_OR_RETURN(image, ParseNgffAttributes(*zattrs, root + "/.zattrs"));
    }
    if (!image) {
      return absl::InvalidArgumentError(absl::StrCat(
          root,
          ": a Zarr group with no \"multiscales\" (not an OME-Zarr image); name one of its "
          "arrays instead",
          ArraysIn(files, root)));
    }
    const NgffImage::Level& finest = image->levels.front();
    array_path = absl::StrCat(root, "/", finest.path);
    size = {finest.scale[0], finest.scale[1], finest.scale[2], image->unit};
    zarray = ReadText(files, array_path + "/.zarray");
  }
  STACKPROC_RETURN_IF_ERROR(zarray.status());
  const std::string name = array_path + "/.zarray";
  STACKPROC_ASSIGN_OR_RETURN(ZarrArrayMeta array, ParseZarray(*zarray, name));
  return Make(files, std::move(array_path), std::move(array), image, size, limits, name);
}

absl::StatusOr<std::unique_ptr<ZarrSource>> ZarrSource::Make(
    const Files& files, std::string array_path, ZarrArrayMeta array,
    const std::optional<NgffImage>& image, VoxelSize size, const StackLimits& limits,
    const std::string& name) {
  STACKPROC_ASSIGN_OR_RETURN(Axes axes, AxesOf(array, image, name));

  StackInfo info;
  info.type = array.type;
  const auto length = [&](int axis) { return axis < 0 ? 1 : array.shape[size_t(axis)]; };
  info.metadata.dims.times = length(axes.t);
  info.metadata.dims.channels = length(axes.c);
  if (image && std::ssize(image->channels) == info.metadata.dims.channels) {
    info.metadata.dims.channel_info = image->channels;
  }
  if (image && !image->provenance.empty()) {
    if (absl::StatusOr<Provenance> record = ParseProvenanceJson(image->provenance); record.ok()) {
      info.metadata.provenance = *std::move(record);
    }
  }
  const size_t n = array.shape.size();
  // Counted in double first: lengths that lie must not overflow the product (a product within
  // range is checked against the limits below).
  if (static_cast<double>(length(axes.t)) * static_cast<double>(length(axes.c)) *
          static_cast<double>(length(axes.z)) >
      static_cast<double>(int64_t{1} << 62)) {
    return limits.DepthRefused(absl::StrCat(name, ": ", length(axes.t), " x ", length(axes.c),
                                            " x ", length(axes.z), " planes"));
  }
  info.shape = {length(axes.t) * length(axes.c) * length(axes.z), array.shape[n - 2],
                array.shape[n - 1]};
  STACKPROC_RETURN_IF_ERROR(limits.Check(name, info.shape, info.type));
  // Checked one factor at a time: the product of lying lengths must not overflow.
  double chunk_bytes = static_cast<double>(BytesPerPixel(info.type));
  for (int64_t c : array.chunks) chunk_bytes *= static_cast<double>(c);
  if (chunk_bytes > static_cast<double>(kMaxChunkBytes)) {
    return absl::ResourceExhaustedError(
        absl::StrCat(name, ": chunks [", absl::StrJoin(array.chunks, ", "), "] of more than ",
                     kMaxChunkBytes, " bytes each"));
  }
  double per_shard = 1;  // a shard's index is read whole
  for (size_t i = 0; i < array.shards.size(); ++i) {
    per_shard *= static_cast<double>(array.shards[i] / array.chunks[i]);
  }
  if (per_shard > static_cast<double>(kMaxChunksPerShard)) {
    return absl::ResourceExhaustedError(
        absl::StrCat(name, ": shards [", absl::StrJoin(array.shards, ", "), "] of more than ",
                     kMaxChunksPerShard, " chunks each"));
  }
  if (!array.shards.empty()) {
    const double across = static_cast<double>(ChunksAlong(array.shape[n - 2], array.shards[n - 2])) *
                          static_cast<double>(ChunksAlong(array.shape[n - 1], array.shards[n - 1]));
    if (across * per_shard * 16 > static_cast<double>(kMaxIndexBytesPerRow)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          name, ": a row of chunks spans shards whose indexes hold more than ",
          kMaxIndexBytesPerRow >> 20, " MiB (", across, " shards of ", per_shard, " chunks)"));
    }
  }
  if (axes.z < 0) size.z.reset();
  std::optional<Provenance> provenance = std::move(info.metadata.provenance);
  info.metadata = MetadataOfVoxelSize(size, info.shape, info.type, info.metadata.dims);
  info.metadata.provenance = std::move(provenance);
  return std::unique_ptr<ZarrSource>(
      new ZarrSource(files, std::move(array_path), std::move(array), axes, std::move(info)));
}

int64_t ZarrSource::chunk_depth() const {
  return axes_.z < 0 ? 1 : std::min(array_.chunks[size_t(axes_.z)], slices());
}

int64_t ZarrSource::slices() const { return axes_.z < 0 ? 1 : array_.shape[size_t(axes_.z)]; }

absl::Status ZarrSource::Read(int64_t plane, uint8_t* buffer) {
  if (plane < 0 || plane >= info_.shape.depth) {
    return absl::OutOfRangeError(absl::StrCat("no plane ", plane));
  }
  const PlaneIndex at = info_.metadata.dims.Of(plane, info_.shape.depth);
  const int64_t depth = chunk_depth();
  const Row row{at.t, at.c, at.z / depth};
  if (depth == 1) return DecodeRow(row, buffer, /*parallel=*/false);
  const int64_t slices_in_row = std::min(depth, slices() - row.zc * depth);
  const size_t slice_bytes = SliceBytes(info_.shape, info_.type).value();
  // The z-chunks of one (t, c) follow each other: a key per z-chunk of the whole stack.
  const int64_t key =
      (at.t * info_.metadata.dims.channels + at.c) * ChunksAlong(slices(), depth) + row.zc;
  std::shared_ptr<Slab> slab;
  {
    std::lock_guard lock(mutex_);
    std::shared_ptr<Slab>& entry = slabs_[key];
    if (!entry) {
      entry = std::make_shared<Slab>();
      entry->unread = slices_in_row;
    }
    slab = entry;
  }
  // The first reader decodes the z-chunk's chunks in parallel; readers of its other slices
  // that come meanwhile join that work instead of waiting idle.
  tbb::collaborative_call_once(slab->decoded, [&] {
    slab->data.resize(static_cast<size_t>(slices_in_row) * slice_bytes);
    slab->status = DecodeRow(row, slab->data.data(), /*parallel=*/true);
  });
  if (slab->status.ok()) {
    std::memcpy(buffer,
                slab->data.data() + static_cast<size_t>(at.z - row.zc * depth) * slice_bytes,
                slice_bytes);
  }
  std::lock_guard lock(mutex_);
  if (--slab->unread == 0) slabs_.erase(key);
  return slab->status;
}

struct ZarrSource::Shard {
  std::string path;
  std::optional<InputFile> file;  // unset: never written (its chunks are the fill value)
  ShardIndex index;
};

absl::Status ZarrSource::DecodeRow(const Row& row, uint8_t* slab, bool parallel) const {
  const size_t n = array_.chunks.size();
  const int64_t rows = ChunksAlong(info_.shape.height, array_.chunks[n - 2]);
  const int64_t columns = ChunksAlong(info_.shape.width, array_.chunks[n - 1]);
  const int64_t slices_in_row = std::min(chunk_depth(), slices() - row.zc * chunk_depth());
  const auto index_of = [&](int64_t i) {
    std::vector<int64_t> index(n, 0);
    if (axes_.t >= 0) index[size_t(axes_.t)] = row.t / array_.chunks[size_t(axes_.t)];
    if (axes_.c >= 0) index[size_t(axes_.c)] = row.c / array_.chunks[size_t(axes_.c)];
    if (axes_.z >= 0) index[size_t(axes_.z)] = row.zc;
    index[n - 2] = i / columns;
    index[n - 1] = i % columns;
    return index;
  };
  // A sharded array: the indexes of the shards this row's chunks are in, read first.
  std::map<std::string, Shard> shards;
  for (int64_t i = 0; !array_.shards.empty() && i < rows * columns; ++i) {
    const std::string key = ChunkKey(array_, ShardOf(index_of(i)));
    if (shards.contains(key)) continue;
    Shard& shard = shards[key];
    shard.path = absl::StrCat(array_path_, "/", key);
    absl::StatusOr<InputFile> file = files_.Input(shard.path);
    if (absl::IsNotFound(file.status())) continue;
    STACKPROC_RETURN_IF_ERROR(file.status());
    STACKPROC_ASSIGN_OR_RETURN(shard.index, ReadShardIndex(*file, array_));
    shard.file = *std::move(file);
  }
  const auto decode = [&](int64_t i, std::vector<uint8_t>& scratch) {
    const std::vector<int64_t> index = index_of(i);
    const Shard* shard = shards.empty() ? nullptr : &shards.at(ChunkKey(array_, ShardOf(index)));
    return DecodeChunk(row, index, shard, slab, slices_in_row, scratch);
  };
  if (!parallel) {
    std::vector<uint8_t> scratch;
    for (int64_t i = 0; i < rows * columns; ++i) STACKPROC_RETURN_IF_ERROR(decode(i, scratch));
    return absl::OkStatus();
  }
  tbb::task_group_context context;
  FirstError first(&context);
  tbb::enumerable_thread_specific<std::vector<uint8_t>> scratch;
  tbb::parallel_for(
      int64_t{0}, rows * columns,
      [&](int64_t i) {
        absl::Status status = decode(i, scratch.local());
        if (!status.ok()) first.Set(i, std::move(status));
      },
      context);
  return first.Take();
}

std::vector<int64_t> ZarrSource::ShardOf(std::vector<int64_t> chunk) const {
  for (size_t i = 0; i < chunk.size(); ++i) chunk[i] /= array_.shards[i] / array_.chunks[i];
  return chunk;
}

absl::StatusOr<bool> ZarrSource::ReadChunk(const std::vector<int64_t>& index, const Shard* shard,
                                           std::vector<uint8_t>& encoded, std::string& name) const {
  // No codec stores a chunk in more than about twice its size.
  const uint64_t most =
      2 * static_cast<uint64_t>(array_.chunk_elements()) * BytesPerPixel(info_.type) +
      (uint64_t{1} << 20);
  if (shard == nullptr) {
    name = absl::StrCat(array_path_, "/", ChunkKey(array_, index));
    absl::StatusOr<InputFile> file = files_.Input(name);
    if (absl::IsNotFound(file.status())) return false;  // never written: the fill value
    STACKPROC_RETURN_IF_ERROR(file.status());
    STACKPROC_ASSIGN_OR_RETURN(encoded, ReadWholeFile(*file, most));
    return true;
  }
  // The chunk's place in its shard, C order.
  int64_t at = 0;
  for (size_t i = 0; i < index.size(); ++i) {
    const int64_t per = array_.shards[i] / array_.chunks[i];
    at = at * per + index[i] % per;
  }
  name = absl::StrCat(shard->path, " (chunk ", at, ")");
  if (!shard->file || shard->index.missing(at)) return false;
  if (shard->index.nbytes(at) > most) {
    return absl::DataLossError(
        absl::StrCat(name, ": ", shard->index.nbytes(at), " bytes, more than a chunk can hold"));
  }
  encoded.resize(static_cast<size_t>(shard->index.nbytes(at)));
  STACKPROC_RETURN_IF_ERROR(
      ReadFileRange(*shard->file, shard->index.offset(at), encoded.size(), encoded.data()));
  return true;
}

absl::Status ZarrSource::DecodeChunk(const Row& row, const std::vector<int64_t>& index,
                                     const Shard* shard, uint8_t* slab, int64_t slices_in_row,
                                     std::vector<uint8_t>& scratch) const {
  const size_t n = array_.chunks.size();
  const int64_t chunk_height = array_.chunks[n - 2];
  const int64_t chunk_width = array_.chunks[n - 1];
  const int64_t y0 = index[n - 2] * chunk_height;
  const int64_t x0 = index[n - 1] * chunk_width;
  const int64_t rows = std::min(chunk_height, info_.shape.height - y0);
  const int64_t columns = std::min(chunk_width, info_.shape.width - x0);
  const size_t pixel = BytesPerPixel(info_.type);
  const auto slab_row = [&](int64_t s, int64_t r) {
    return slab + ((s * info_.shape.height + y0 + r) * info_.shape.width + x0) * pixel;
  };
  std::vector<uint8_t> encoded;
  std::string name;
  STACKPROC_ASSIGN_OR_RETURN(const bool stored, ReadChunk(index, shard, encoded, name));
  if (!stored) {
    for (int64_t s = 0; s < slices_in_row; ++s) {
      for (int64_t r = 0; r < rows; ++r) {
        FillPixels(info_.type, array_.fill_value, slab_row(s, r), static_cast<size_t>(columns));
      }
    }
    return absl::OkStatus();
  }
  scratch.resize(static_cast<size_t>(array_.chunk_elements()) * pixel);
  std::vector<uint8_t> transposed;  // only for the transpose codec
  STACKPROC_RETURN_IF_ERROR(DecodeArrayChunk(array_, encoded, scratch.data(), transposed, name));
  // Where this (t, c)'s z-slices start in the chunk (C order: t, c, z, y, x).
  std::vector<int64_t> stride(n, 1);
  for (size_t i = n - 1; i > 0; --i) stride[i - 1] = stride[i] * array_.chunks[i];
  int64_t start = 0;
  if (axes_.t >= 0) start += row.t % array_.chunks[size_t(axes_.t)] * stride[size_t(axes_.t)];
  if (axes_.c >= 0) start += row.c % array_.chunks[size_t(axes_.c)] * stride[size_t(axes_.c)];
  const int64_t chunk_depth = axes_.z >= 0 ? array_.chunks[size_t(axes_.z)] : 1;
  for (int64_t s = 0; s < std::min(slices_in_row, chunk_depth); ++s) {
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(slab_row(s, r),
                  scratch.data() + (start + (s * chunk_height + r) * chunk_width) * pixel,
                  static_cast<size_t>(columns) * pixel);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ZarrSource::Axes> ZarrSource::AxesOf(const ZarrArrayMeta& array,
                                                    const std::optional<NgffImage>& image,
                                                    const std::string& name) {
  const int n = static_cast<int>(array.shape.size());
  if (n < 2) return absl::InvalidArgumentError(absl::StrCat(name, ": a 1-D array, not an image"));
  Axes axes;
  if (image && !image->axes.empty()) {
    if (std::ssize(image->axes) != n) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": a ", n,
                                                     "-D array, where the image's .zattrs names ",
                                                     image->axes.size(), " axes"));
    }
    for (int i = 0; i < n; ++i) {
      const std::string& role = image->axes[size_t(i)];
      if (role == "t") axes.t = i;
      if (role == "c") axes.c = i;
      if (role != "t" && role != "c" && role != "space" && array.shape[size_t(i)] != 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            name, ": axis ", i, " of type '", role, "' has ", array.shape[size_t(i)],
            " elements; stackproc reads time, channel and space axes (others of length 1)"));
      }
    }
    axes.z = image->spatial() == 3 ? n - 3 : -1;
    return axes;
  }
  // A plain array (or an image that names no axes): z, y, x last, and what comes before them
  // of length 1, since nothing says whether it is time or channel.
  for (int i = 0; i + 3 < n; ++i) {
    if (array.shape[size_t(i)] != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": a ", n, "-D array of shape [", absl::StrJoin(array.shape, ", "),
          "] whose axes no OME-Zarr image names; stackproc reads its axes before z only with "
          "length 1 (an OME-Zarr image's axes say which are time and channel)"));
    }
  }
  axes.z = n >= 3 ? n - 3 : -1;
  return axes;
}

}  // namespace stackproc::core
