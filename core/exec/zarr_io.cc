#include "core/exec/zarr_io.h"

#include <fcntl.h>
#include <oneapi/tbb/collaborative_call_once.h>
#include <sys/stat.h>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "core/base/first_error.h"
#include "core/base/status_macros.h"
#include "core/exec/formats.h"
#include "core/zarr/pyramid.h"

namespace stackproc::core {
namespace {

// .zarray and .zattrs are small; a larger one is not what it claims to be.
constexpr uint64_t kMaxMetadataBytes = uint64_t{16} << 20;

absl::StatusOr<std::vector<uint8_t>> ReadAll(const InputFile& file, uint64_t most) {
  if (file.size() > most) {
    return absl::DataLossError(
        absl::StrCat(file.name(), ": ", file.size(), " bytes, more than it can hold (", most, ")"));
  }
  std::vector<uint8_t> bytes(file.size());
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n =
        ::pread(file.fd(), bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::DataLossError(absl::StrCat(
          file.name(), ": cannot read it: ", n == 0 ? "it ended early" : std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  return bytes;
}

absl::StatusOr<std::string> ReadText(const Files& files, const std::string& path) {
  STACKPROC_ASSIGN_OR_RETURN(InputFile file, files.Input(path));
  STACKPROC_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadAll(file, kMaxMetadataBytes));
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

absl::Status IoError(const std::string& what, int error) {
  const std::string message = absl::StrCat(what, ": ", std::strerror(error));
  return error == ENOSPC || error == EDQUOT || error == EFBIG
             ? absl::ResourceExhaustedError(message)
             : absl::InternalError(message);
}

// Folder `name` in `dir`, made when it is not there yet (by this writer: no links).
absl::StatusOr<UniqueFd> MakeFolder(int dir, const std::string& name, const std::string& display) {
  if (::mkdirat(dir, name.c_str(), 0777) != 0 && errno != EEXIST) {
    return IoError(absl::StrCat(display, ": cannot make folder ", name), errno);
  }
  UniqueFd fd(::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return IoError(absl::StrCat(display, ": cannot open folder ", name), errno);
  return fd;
}

absl::StatusOr<UniqueFd> OpenAt(int dir, const std::string& name, const std::string& display) {
  UniqueFd fd(::openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    return absl::FailedPreconditionError(
        absl::StrCat(display, "/", name, ": cannot open it: ", std::strerror(errno)));
  }
  return fd;
}

// Writes `bytes` to `name` in `dir` under a temporary name (".NAME.part"), then renames it:
// a reader of the store sees a chunk whole or not at all.
absl::Status WriteFileAt(int dir, const std::string& name, const void* bytes, size_t size,
                         const std::string& display) {
  const std::string temp = absl::StrCat(".", name, ".part");
  UniqueFd fd(
      ::openat(dir, temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0666));
  if (!fd) return IoError(absl::StrCat(display, ": cannot create it"), errno);
  const auto* p = static_cast<const uint8_t*>(bytes);
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::write(fd.get(), p + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return IoError(absl::StrCat(display, ": cannot write it"), n < 0 ? errno : EIO);
    done += static_cast<size_t>(n);
  }
  if (::close(fd.release()) != 0) return IoError(absl::StrCat(display, ": cannot write it"), errno);
  if (::renameat(dir, temp.c_str(), dir, name.c_str()) != 0) {
    return IoError(absl::StrCat(display, ": cannot rename it into place"), errno);
  }
  return absl::OkStatus();
}

absl::Status WriteText(int dir, const std::string& name, const std::string& text,
                       const std::string& display) {
  return WriteFileAt(dir, name, text.data(), text.size(), display);
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

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

bool IsZarrPath(const Files& files, const std::string& path) {
  const absl::string_view name = absl::StripSuffix(path, "/");
  if (absl::EndsWithIgnoreCase(name, ".zarr")) return true;
  const std::string root(name);
  return files.IsDirectory(root) &&
         (files.Input(root + "/.zarray").ok() || files.Input(root + "/.zattrs").ok());
}

// ---------------------------------------------------------------------------------- source

struct ZarrSource::Slab {
  tbb::collaborative_once_flag decoded;
  absl::Status status;
  std::vector<uint8_t> data;
  int64_t unread = 0;
};

absl::StatusOr<std::unique_ptr<ZarrSource>> ZarrSource::Open(const Files& files,
                                                             const std::string& path,
                                                             const TiffLimits& limits) {
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
  const StackShape& s = info.shape;
  if (s.depth < 1 || s.height < 1 || s.width < 1 || s.height > kMaxSliceSide ||
      s.width > kMaxSliceSide) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": a stack of ", s.depth, "x", s.height,
                                                   "x", s.width, " (each side 1-", kMaxSliceSide,
                                                   ")"));
  }
  if (s.depth > limits.max_pages) {
    return absl::ResourceExhaustedError(absl::StrCat(name, ": ", s.depth, " slices, more than ",
                                                     limits.max_pages, " (the limit per stack)"));
  }
  STACKPROC_ASSIGN_OR_RETURN(size_t bytes, StackBytes(s, info.type));
  if (bytes > limits.max_stack_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        name, ": ", bytes, " bytes exceeds the limit of ", limits.max_stack_bytes, " bytes"));
  }
  // Checked one factor at a time: the product of lying lengths must not overflow.
  double chunk_bytes = static_cast<double>(BytesPerPixel(info.type));
  for (int64_t c : array.chunks) chunk_bytes *= static_cast<double>(c);
  if (chunk_bytes > static_cast<double>(kMaxChunkBytes)) {
    return absl::ResourceExhaustedError(
        absl::StrCat(name, ": chunks [", absl::StrJoin(array.chunks, ", "), "] of more than ",
                     kMaxChunkBytes, " bytes each"));
  }
  if (n < 3) size.z.reset();
  info.metadata = MetadataOfVoxelSize(size, s);
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
  const int64_t rows = CeilDiv(info_.shape.height, array_.chunks[n - 2]);
  const int64_t columns = CeilDiv(info_.shape.width, array_.chunks[n - 1]);
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
                             ReadAll(*file, 2 * chunk_bytes + (uint64_t{1} << 20)));
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

// ------------------------------------------------------------------------------------ sink

std::array<int64_t, 3> DefaultZarrChunks(const StackShape& shape) {
  return {1, std::clamp<int64_t>(shape.height, 1, 1024), std::clamp<int64_t>(shape.width, 1, 1024)};
}

absl::StatusOr<ZarrCodec> ZarrCodecFor(Compression compression) {
  switch (compression) {
    case Compression::kNone:
      return ZarrCodec{};
    case Compression::kDeflate:
      return ZarrCodec{.id = ZarrCodecId::kZlib, .level = 6, .blosc_name = "", .shuffle = 0};
    case Compression::kZstd:
      return ZarrCodec{.id = ZarrCodecId::kBlosc, .level = 3, .blosc_name = "zstd", .shuffle = 1};
    case Compression::kDefault:  // lz4: as fast as none, about half the size
                                 // (tests/bench/formats.py)
    case Compression::kLz4:
      return ZarrCodec{.id = ZarrCodecId::kBlosc, .level = 5, .blosc_name = "lz4", .shuffle = 1};
    case Compression::kLzw:
      break;
  }
  return absl::InvalidArgumentError(
      "lzw is not an OME-Zarr compression (OME-Zarr: none, deflate, zstd, lz4)");
}

struct ZarrSink::Level {
  std::string path;    // "0" for full resolution, "1" half of it, ...
  ZarrArrayMeta meta;  // shape and chunks: z, y, x
  StackShape shape;
  size_t slice_bytes = 0;
  UniqueFd dir;               // its folder in the temporary store
  bool halves_z = false;      // pairs the slices of the level above
  std::vector<uint8_t> slab;  // a z-chunk's slices while they are gathered (chunks of several)
  int64_t gathered = 0;
  int64_t appended = 0;          // slices of this level so far
  int64_t received = 0;          // slices of the level above so far
  std::vector<uint8_t> pending;  // the first slice of a pair (halves_z)
  bool has_pending = false;
  std::vector<uint8_t> halved;  // a slice of this level halved, for the next
  tbb::enumerable_thread_specific<std::vector<uint8_t>> scratch;  // a chunk, gathered

  int64_t chunk_depth() const { return meta.chunks[0]; }
};

ZarrSink::ZarrSink(OutputTarget store, WriteOptions options, std::optional<ZarrRegion> region)
    : store_(std::move(store)), options_(std::move(options)), region_(region) {}

ZarrSink::~ZarrSink() = default;

SinkTraits ZarrSink::TraitsFor(const WriteOptions& options) {
  const int64_t depth = options.chunks ? std::max<int64_t>((*options.chunks)[0], 1) : 1;
  int64_t held = depth > 1 ? depth : 0;  // level 0's z-chunk, gathered
  if (options.pyramid_levels > 0) {
    // Every level's z-chunk and pair (a third of level 0's, summed over the levels), and each
    // slot's slice halved for level 1 (a quarter slice).
    const int64_t slots =
        int64_t{kSlicesPerThread} * std::max<int64_t>(std::thread::hardware_concurrency(), 1);
    held += depth + 2 + CeilDiv(slots, 4);
  }
  return {.held_slices = held};
}

absl::StatusOr<NgffImage> ZarrSink::PlanLevels(const StackInfo& output) {
  const int pyramid = options_.pyramid_levels;
  if (pyramid < 0 || pyramid > kMaxPyramidLevels) {
    return absl::InvalidArgumentError(
        absl::StrCat("pyramid levels ", pyramid, ": 0-", kMaxPyramidLevels));
  }
  const std::array<int64_t, 3> chunks = options_.chunks.value_or(DefaultZarrChunks(output.shape));
  const size_t pixel = BytesPerPixel(output.type);
  if (*std::min_element(chunks.begin(), chunks.end()) < 1 ||
      static_cast<double>(chunks[0]) * static_cast<double>(chunks[1]) *
              static_cast<double>(chunks[2]) * static_cast<double>(pixel) >
          static_cast<double>(kMaxChunkBytes)) {
    return absl::InvalidArgumentError(absl::StrCat("chunks ", absl::StrJoin(chunks, "x"),
                                                   ": each side at least 1, at most ",
                                                   kMaxChunkBytes >> 20, " MiB a chunk"));
  }
  // The levels: each half the one before in y and x, and in z while that keeps its voxels no
  // coarser in z than in y and x (an anisotropic light-sheet stack keeps its slices longer).
  const VoxelSize voxel = VoxelSizeOf(output.metadata);
  std::array<double, 3> scale = {voxel.z.value_or(1), voxel.y.value_or(1), voxel.x.value_or(1)};
  NgffImage image;
  image.unit = voxel.unit;
  image.name = std::string(absl::StripSuffix(absl::StripSuffix(store_.name(), ".zarr"), ".ome"));
  StackShape shape = output.shape;
  for (int k = 0; k <= pyramid; ++k) {
    auto level = std::make_unique<Level>();
    if (k > 0) {
      if (shape.height == 1 && shape.width == 1) {
        return absl::InvalidArgumentError(absl::StrCat("a pyramid of ", pyramid, " levels: level ",
                                                       k, " would be smaller than one pixel"));
      }
      scale[1] *= 2;
      scale[2] *= 2;
      level->halves_z = shape.depth > 1 && scale[0] * 2 <= std::max(scale[1], scale[2]) * 1.000001;
      if (level->halves_z) scale[0] *= 2;
      shape = {level->halves_z ? Halved(shape.depth) : shape.depth, Halved(shape.height),
               Halved(shape.width)};
    }
    level->path = absl::StrCat(k);
    level->shape = shape;
    level->slice_bytes = static_cast<size_t>(shape.height * shape.width) * pixel;
    level->meta.shape = {shape.depth, shape.height, shape.width};
    level->meta.chunks = {std::min(chunks[0], shape.depth), std::min(chunks[1], shape.height),
                          std::min(chunks[2], shape.width)};
    level->meta.type = output.type;
    level->meta.codec = codec_;
    level->meta.nested = true;  // NGFF 0.4: "/" separates a chunk's indices
    if (level->chunk_depth() > 1) {
      level->slab.resize(static_cast<size_t>(level->chunk_depth()) * level->slice_bytes);
    }
    if (level->halves_z) level->pending.resize(level->slice_bytes);
    if (k > 0 && k < pyramid) {
      level->halved.resize(static_cast<size_t>(Halved(shape.height) * Halved(shape.width)) * pixel);
    }
    image.levels.push_back({level->path, scale});
    levels_.push_back(std::move(level));
  }
  return image;
}

absl::Status ZarrSink::Open(const StackInfo& output, int64_t window_slices,
                            std::function<void(int64_t)> release) {
  (void)release;
  STACKPROC_ASSIGN_OR_RETURN(codec_, ZarrCodecFor(options_.compression));
  StackInfo whole = output;
  if (region_) {
    if (region_->z_begin < 0 || region_->z_begin + output.shape.depth > region_->depth) {
      return absl::InvalidArgumentError(absl::StrCat("slices ", region_->z_begin, "-",
                                                     region_->z_begin + output.shape.depth - 1,
                                                     " are not in a stack of ", region_->depth));
    }
    whole.shape.depth = region_->depth;
  }
  STACKPROC_ASSIGN_OR_RETURN(NgffImage image, PlanLevels(whole));
  if (levels_.size() > 1) {
    const size_t pixel = BytesPerPixel(output.type);
    halves_.assign(
        static_cast<size_t>(std::max<int64_t>(window_slices, 1)),
        std::vector<uint8_t>(
            static_cast<size_t>(Halved(output.shape.height) * Halved(output.shape.width)) * pixel));
  }
  if (region_) return OpenRegion(output.shape.depth);
  const bool replace = options_.overwrite && store_.Exists();
  if (replace) {
    STACKPROC_RETURN_IF_ERROR(CheckReplaceable(Format::kOmeZarr, store_));
  }
  STACKPROC_ASSIGN_OR_RETURN(temp_,
                             TempFolder::Make(store_, options_.temp_tag, "OME-Zarr", replace));
  const std::string& display = store_.display();
  STACKPROC_RETURN_IF_ERROR(WriteText(temp_->fd(), ".zgroup", FormatZgroup(), display));
  STACKPROC_RETURN_IF_ERROR(
      WriteText(temp_->fd(), ".zattrs", FormatNgffAttributes(image), display));
  for (size_t k = 0; k < levels_.size(); ++k) {
    STACKPROC_ASSIGN_OR_RETURN(levels_[k]->dir,
                               MakeFolder(temp_->fd(), image.levels[k].path, display));
    STACKPROC_RETURN_IF_ERROR(
        WriteText(levels_[k]->dir.get(), ".zarray", FormatZarray(levels_[k]->meta), display));
  }
  return absl::OkStatus();
}

absl::Status ZarrSink::OpenRegion(int64_t slices) {
  const std::string& display = store_.display();
  store_fd_ = UniqueFd(::openat(store_.dir(), store_.name().c_str(),
                                O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!store_fd_) {
    return absl::FailedPreconditionError(absl::StrCat(
        display,
        ": cannot open the store to fill (made by CreateZarrStore?): ", std::strerror(errno)));
  }
  // Each level's share: its slices from the first of this range, which must start a z-chunk
  // (and a pair of slices, where a level halves z), and end one unless it ends the level.
  int64_t begin = region_->z_begin;
  int64_t end = region_->z_begin + slices;
  for (size_t k = 0; k < levels_.size(); ++k) {
    Level& level = *levels_[k];
    if (level.halves_z) {
      if (begin % 2 != 0 || (end % 2 != 0 && end != levels_[k - 1]->shape.depth)) {
        return absl::InvalidArgumentError(
            absl::StrCat("slices ", region_->z_begin, "-", region_->z_begin + slices - 1,
                         ": level ", k, " pairs slices, and the range splits a pair"));
      }
      level.received = begin;
      begin /= 2;
      end = Halved(end);
    }
    const int64_t depth = level.chunk_depth();
    if (begin % depth != 0 || (end % depth != 0 && end != level.shape.depth)) {
      return absl::InvalidArgumentError(
          absl::StrCat("slices ", region_->z_begin, "-", region_->z_begin + slices - 1,
                       " do not fill whole z-chunks of level ", k, " (", depth, " slices each)"));
    }
    if (!level.halves_z && k > 0) level.received = begin;
    level.appended = begin;
    // The store must be the one this sink would make: the same stack, chunks and codec.
    STACKPROC_ASSIGN_OR_RETURN(level.dir, MakeFolder(store_fd_.get(), level.path, display));
    STACKPROC_ASSIGN_OR_RETURN(UniqueFd zarray,
                               OpenAt(level.dir.get(), ".zarray", display + "/" + level.path));
    STACKPROC_ASSIGN_OR_RETURN(InputFile file, InputFile::Adopt(std::move(zarray), display));
    STACKPROC_ASSIGN_OR_RETURN(std::vector<uint8_t> text, ReadAll(file, kMaxMetadataBytes));
    if (std::string(text.begin(), text.end()) != FormatZarray(level.meta)) {
      return absl::FailedPreconditionError(
          absl::StrCat(display, "/", level.path,
                       "/.zarray: made for another stack, chunks or codec than "
                       "this range's"));
    }
  }
  return absl::OkStatus();
}

absl::Status ZarrSink::Encode(int64_t z, const uint8_t* data) {
  const Level& finest = *levels_.front();
  if (finest.chunk_depth() == 1) {
    const int64_t first = region_ ? region_->z_begin : 0;
    STACKPROC_RETURN_IF_ERROR(
        WriteChunkRow(*levels_.front(), first + z, data, /*slices=*/1, /*parallel=*/false));
  }
  if (levels_.size() > 1) {
    HalveSlice(finest.meta.type, data, finest.shape.height, finest.shape.width,
               halves_[static_cast<size_t>(z) % halves_.size()].data());
  }
  return absl::OkStatus();
}

absl::Status ZarrSink::Write(int64_t z, const uint8_t* data) {
  STACKPROC_RETURN_IF_ERROR(Append(0, data));
  if (levels_.size() == 1) return absl::OkStatus();
  return Descend(1, halves_[static_cast<size_t>(z) % halves_.size()].data());
}

absl::Status ZarrSink::Append(size_t k, const uint8_t* slice) {
  Level& level = *levels_[k];
  const int64_t z = level.appended++;
  const int64_t depth = level.chunk_depth();
  if (depth == 1) {
    // Level 0's single-slice chunks were written by Encode, in parallel.
    if (k > 0) STACKPROC_RETURN_IF_ERROR(WriteChunkRow(level, z, slice, 1, /*parallel=*/false));
  } else {
    std::memcpy(level.slab.data() + static_cast<size_t>(level.gathered) * level.slice_bytes, slice,
                level.slice_bytes);
    if (++level.gathered == depth || z + 1 == level.shape.depth) {
      STACKPROC_RETURN_IF_ERROR(
          WriteChunkRow(level, z / depth, level.slab.data(), level.gathered, /*parallel=*/true));
      level.gathered = 0;
    }
  }
  if (k == 0 || k + 1 == levels_.size()) return absl::OkStatus();
  HalveSlice(level.meta.type, slice, level.shape.height, level.shape.width, level.halved.data());
  return Descend(k + 1, level.halved.data());
}

absl::Status ZarrSink::Descend(size_t k, const uint8_t* halved) {
  Level& level = *levels_[k];
  const bool last = ++level.received == levels_[k - 1]->shape.depth;
  if (!level.halves_z) return Append(k, halved);
  if (!level.has_pending) {
    if (last) return Append(k, halved);  // an odd last slice stands alone
    std::memcpy(level.pending.data(), halved, level.slice_bytes);
    level.has_pending = true;
    return absl::OkStatus();
  }
  MeanOfSlices(level.meta.type, level.pending.data(), halved,
               level.shape.height * level.shape.width, level.pending.data());
  level.has_pending = false;
  return Append(k, level.pending.data());
}

absl::Status ZarrSink::WriteChunkRow(Level& level, int64_t zc, const uint8_t* slab, int64_t slices,
                                     bool parallel) {
  const int64_t chunk_height = level.meta.chunks[1];
  const int64_t chunk_width = level.meta.chunks[2];
  const int64_t rows = CeilDiv(level.shape.height, chunk_height);
  const int64_t columns = CeilDiv(level.shape.width, chunk_width);
  const size_t pixel = BytesPerPixel(level.meta.type);
  const size_t chunk_bytes = static_cast<size_t>(level.meta.chunk_elements()) * pixel;
  STACKPROC_ASSIGN_OR_RETURN(UniqueFd z_dir,
                             MakeFolder(level.dir.get(), absl::StrCat(zc), store_.display()));
  std::vector<UniqueFd> y_dirs;
  for (int64_t yc = 0; yc < rows; ++yc) {
    STACKPROC_ASSIGN_OR_RETURN(y_dirs.emplace_back(),
                               MakeFolder(z_dir.get(), absl::StrCat(yc), store_.display()));
  }
  const auto write_chunk = [&](int64_t i) -> absl::Status {
    const int64_t y0 = (i / columns) * chunk_height;
    const int64_t x0 = (i % columns) * chunk_width;
    const int64_t height = std::min(chunk_height, level.shape.height - y0);
    const int64_t width = std::min(chunk_width, level.shape.width - x0);
    std::vector<uint8_t>& chunk = level.scratch.local();
    // An edge chunk is stored whole: what lies beyond the image is zeros.
    chunk.assign(chunk_bytes, 0);
    for (int64_t s = 0; s < slices; ++s) {
      for (int64_t r = 0; r < height; ++r) {
        std::memcpy(
            chunk.data() + static_cast<size_t>((s * chunk_height + r) * chunk_width) * pixel,
            slab + static_cast<size_t>((s * level.shape.height + y0 + r) * level.shape.width + x0) *
                       pixel,
            static_cast<size_t>(width) * pixel);
      }
    }
    STACKPROC_ASSIGN_OR_RETURN(std::vector<uint8_t> encoded,
                               EncodeChunk(codec_, chunk.data(), chunk_bytes, pixel));
    return WriteFileAt(y_dirs[static_cast<size_t>(i / columns)].get(), absl::StrCat(i % columns),
                       encoded.data(), encoded.size(),
                       absl::StrCat(store_.display(), "/", level.path, "/", zc, "/", i / columns,
                                    "/", i % columns));
  };
  if (!parallel) {
    for (int64_t i = 0; i < rows * columns; ++i) STACKPROC_RETURN_IF_ERROR(write_chunk(i));
    return absl::OkStatus();
  }
  tbb::task_group_context context;
  FirstError first(&context);
  tbb::parallel_for(
      int64_t{0}, rows * columns,
      [&](int64_t i) {
        absl::Status status = write_chunk(i);
        if (!status.ok()) first.Set(i, std::move(status));
      },
      context);
  return first.Take();
}

absl::Status ZarrSink::Close() {
  if (!region_) return temp_->Commit(options_.sync);
  // A range's chunks are in place, each renamed as it was written: sync them.
  if (options_.sync && ::syncfs(store_fd_.get()) != 0) {
    return absl::InternalError(
        absl::StrCat(store_.display(), ": cannot sync its chunks: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status CreateZarrStore(const OutputTarget& store, const StackInfo& output,
                             const WriteOptions& options) {
  ZarrSink sink(store, options);
  STACKPROC_RETURN_IF_ERROR(sink.Open(output, /*window_slices=*/1, nullptr));
  return sink.Close();
}

}  // namespace stackproc::core
