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
#include "core/io/zarr_source.h"

namespace stackproc::core {
namespace {

absl::StatusOr<std::string> ReadText(const Files& files, const std::string& path) {
  STACKPROC_ASSIGN_OR_RETURN(InputFile file, files.Input(path));
  STACKPROC_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes,
                             ReadWholeFile(file, kMaxZarrMetadataBytes));
  return std::string(bytes.begin(), bytes.end());
}

void SwapBytes(PixelType type, uint8_t* data, size_t bytes) {
  const size_t n = BytesPerPixel(type);
  if (n == 1) return;
  for (size_t i = 0; i + n <= bytes; i += n) std::reverse(data + i, data + i + n);
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
         (files.Input(root + "/.zarray").ok() || files.Input(root + "/.zattrs").ok());
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
  absl::StatusOr<std::string> zarray = ReadText(files, root + "/.zarray");
  if (absl::IsNotFound(zarray.status())) {
    absl::StatusOr<std::string> zattrs = ReadText(files, root + "/.zattrs");
    if (absl::IsNotFound(zattrs.status()) && !files.Input(root + "/.zgroup").ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          root, ": holds neither a .zarray nor a .zattrs (not a Zarr array or an OME-Zarr image)"));
    }
    std::optional<NgffImage> image;
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

  // z, y, x are the last three axes; any before them (time, channel) must have one element.
  const size_t n = array.shape.size();
  if (n < 2) return absl::InvalidArgumentError(absl::StrCat(name, ": a 1-D array, not an image"));
  for (size_t i = 0; i + 3 < n; ++i) {
    if (array.shape[i] != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": a ", n, "-D array of shape [", absl::StrJoin(array.shape, ", "),
          "]; stackproc reads one z, y, x volume (the axes before z must have length 1)"));
    }
  }
  StackInfo info;
  info.type = array.type;
  info.shape = {n >= 3 ? array.shape[n - 3] : 1, array.shape[n - 2], array.shape[n - 1]};
  STACKPROC_RETURN_IF_ERROR(limits.Check(name, info.shape, info.type));
  // Checked one factor at a time: the product of lying lengths must not overflow.
  double chunk_bytes = static_cast<double>(BytesPerPixel(info.type));
  for (int64_t c : array.chunks) chunk_bytes *= static_cast<double>(c);
  if (chunk_bytes > static_cast<double>(kMaxChunkBytes)) {
    return absl::ResourceExhaustedError(
        absl::StrCat(name, ": chunks [", absl::StrJoin(array.chunks, ", "), "] of more than ",
                     kMaxChunkBytes, " bytes each"));
  }
  if (n < 3) size.z.reset();
  info.metadata = MetadataOfVoxelSize(size, info.shape);
  return std::unique_ptr<ZarrSource>(
      new ZarrSource(files, std::move(array_path), std::move(array), std::move(info)));
}

int64_t ZarrSource::chunk_depth() const {
  const size_t n = array_.chunks.size();
  return n >= 3 ? std::min(array_.chunks[n - 3], info_.shape.depth) : 1;
}

absl::Status ZarrSource::Read(int64_t z, uint8_t* buffer) {
  if (z < 0 || z >= info_.shape.depth) return absl::OutOfRangeError(absl::StrCat("no slice ", z));
  const int64_t depth = chunk_depth();
  if (depth == 1) return DecodeRow(z, buffer, /*parallel=*/false);
  const int64_t zc = z / depth;
  const int64_t slices = std::min(depth, info_.shape.depth - zc * depth);
  const size_t slice_bytes = SliceBytes(info_.shape, info_.type).value();
  std::shared_ptr<Slab> slab;
  {
    std::lock_guard lock(mutex_);
    std::shared_ptr<Slab>& entry = slabs_[zc];
    if (!entry) {
      entry = std::make_shared<Slab>();
      entry->unread = slices;
    }
    slab = entry;
  }
  // The first reader decodes the z-chunk's chunks in parallel; readers of its other slices
  // that come meanwhile join that work instead of waiting idle.
  tbb::collaborative_call_once(slab->decoded, [&] {
    slab->data.resize(static_cast<size_t>(slices) * slice_bytes);
    slab->status = DecodeRow(zc, slab->data.data(), /*parallel=*/true);
  });
  if (slab->status.ok()) {
    std::memcpy(buffer, slab->data.data() + static_cast<size_t>(z - zc * depth) * slice_bytes,
                slice_bytes);
  }
  std::lock_guard lock(mutex_);
  if (--slab->unread == 0) slabs_.erase(zc);
  return slab->status;
}

absl::Status ZarrSource::DecodeRow(int64_t zc, uint8_t* slab, bool parallel) const {
  const size_t n = array_.chunks.size();
  const int64_t rows = ChunksAlong(info_.shape.height, array_.chunks[n - 2]);
  const int64_t columns = ChunksAlong(info_.shape.width, array_.chunks[n - 1]);
  const int64_t slices = std::min(chunk_depth(), info_.shape.depth - zc * chunk_depth());
  const auto index_of = [&](int64_t i) {
    std::vector<int64_t> index(n, 0);
    if (n >= 3) index[n - 3] = zc;
    index[n - 2] = i / columns;
    index[n - 1] = i % columns;
    return index;
  };
  if (!parallel) {
    std::vector<uint8_t> scratch;
    for (int64_t i = 0; i < rows * columns; ++i) {
      STACKPROC_RETURN_IF_ERROR(DecodeChunk(index_of(i), slab, slices, scratch));
    }
    return absl::OkStatus();
  }
  tbb::task_group_context context;
  FirstError first(&context);
  tbb::enumerable_thread_specific<std::vector<uint8_t>> scratch;
  tbb::parallel_for(
      int64_t{0}, rows * columns,
      [&](int64_t i) {
        absl::Status status = DecodeChunk(index_of(i), slab, slices, scratch.local());
        if (!status.ok()) first.Set(i, std::move(status));
      },
      context);
  return first.Take();
}

absl::Status ZarrSource::DecodeChunk(const std::vector<int64_t>& index, uint8_t* slab,
                                     int64_t slices, std::vector<uint8_t>& scratch) const {
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
  const std::string path = absl::StrCat(array_path_, "/", ChunkKey(array_, index));
  absl::StatusOr<InputFile> file = files_.Input(path);
  if (absl::IsNotFound(file.status())) {  // never written: the fill value
    for (int64_t s = 0; s < slices; ++s) {
      for (int64_t r = 0; r < rows; ++r) {
        FillPixels(info_.type, array_.fill_value, slab_row(s, r), static_cast<size_t>(columns));
      }
    }
    return absl::OkStatus();
  }
  STACKPROC_RETURN_IF_ERROR(file.status());
  const size_t chunk_bytes = static_cast<size_t>(array_.chunk_elements()) * pixel;
  // No codec stores a chunk in more than about twice its size.
  STACKPROC_ASSIGN_OR_RETURN(std::vector<uint8_t> encoded,
                             ReadWholeFile(*file, 2 * chunk_bytes + (uint64_t{1} << 20)));
  scratch.resize(chunk_bytes);
  STACKPROC_RETURN_IF_ERROR(
      core::DecodeChunk(array_.codec, encoded, scratch.data(), chunk_bytes, path));
  if (array_.big_endian) SwapBytes(info_.type, scratch.data(), chunk_bytes);
  const int64_t chunk_depth = n >= 3 ? array_.chunks[n - 3] : 1;
  for (int64_t s = 0; s < std::min(slices, chunk_depth); ++s) {
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(slab_row(s, r), scratch.data() + ((s * chunk_height + r) * chunk_width) * pixel,
                  static_cast<size_t>(columns) * pixel);
    }
  }
  return absl::OkStatus();
}

}  // namespace stackproc::core
