#include "core/io/zarr_sink.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <numeric>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "core/base/status_macros.h"
#include "core/io/formats.h"
#include "core/io/zarr_sink_level.h"
#include "core/zarr/pyramid.h"
#include "core/zarr/zarr_chunks.h"

namespace stackproc::core {
namespace {

absl::StatusOr<UniqueFd> OpenAt(int dir, const std::string& name, const std::string& display) {
  UniqueFd fd(::openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    return absl::FailedPreconditionError(
        absl::StrCat(display, "/", name, ": cannot open it: ", std::strerror(errno)));
  }
  return fd;
}

absl::Status WriteText(int dir, const std::string& name, const std::string& text,
                       const std::string& display) {
  return WriteFileAt(dir, name, text.data(), text.size(), display);
}

}  // namespace

ZarrSink::ZarrSink(OutputTarget store, WriteOptions options, std::optional<ZarrRegion> region)
    : store_(std::move(store)), options_(std::move(options)), region_(region) {}

// The shards being written (their temporary files closed and removed) before the store's
// temporary folder goes.
ZarrSink::~ZarrSink() { open_row_.reset(); }

SinkTraits ZarrSink::TraitsFor(const WriteOptions& options) {
  const int64_t chunk = options.chunks ? std::max<int64_t>((*options.chunks)[0], 1) : 1;
  // What a file holds in z: a v2 chunk, a v3 shard (at most).
  const int64_t depth =
      options.zarr_format == 2
          ? chunk
          : std::max(options.zarr_shards ? (*options.zarr_shards)[0]
                                         : ChunksAlong(kDefaultShardSlices, chunk) * chunk,
                     chunk);
  const int64_t slots =
      int64_t{kSlicesPerThread} * std::max<int64_t>(std::thread::hardware_concurrency(), 1);
  // Shards of one-slice chunks are written slice by slice: each slice in flight holds its
  // chunks, encoded (at most its size), as a TIFF's compressed strips do. Else a file's slices
  // are gathered, and a shard's layer of chunks encoded (at most their slices' size).
  const bool streams = depth > 1 && chunk == 1 && options.zarr_format != 2;
  int64_t held = 0;
  if (!streams) {
    held = depth > 1 ? depth : 0;
    if (depth > chunk) held += chunk;
  }
  if (options.pyramid_levels > 0) {
    // Every level's z-chunk and pair (a third of level 0's, summed over the levels), and each
    // slot's slice halved for level 1 (a quarter slice).
    held += depth + 2 + ChunksAlong(slots, 4);
  }
  return {.compressed = streams, .held_slices = held};
}

absl::StatusOr<int64_t> ZarrSink::RangeAlignment(const WriteOptions& options,
                                                 const StackInfo& output) {
  ZarrSink plan(OutputTarget::In(UniqueFd(), "plan.zarr", "plan.zarr"), options);
  STACKPROC_RETURN_IF_ERROR(plan.PlanLevels(output).status());
  int64_t align = 1;
  int64_t factor = 1;  // level 0's slices in one of this level's
  for (const std::unique_ptr<Level>& level : plan.levels_) {
    if (level->halves_z) factor *= 2;
    align = std::lcm(align, level->chunk_depth() * factor);
  }
  const int64_t volume = plan.levels_.front()->shape.depth;
  return volume % align != 0 && volume != output.shape.depth ? volume : align;
}

absl::StatusOr<NgffImage> ZarrSink::PlanLevels(const StackInfo& output) {
  STACKPROC_RETURN_IF_ERROR(ValidateZarrWrite(options_));
  const int pyramid = options_.pyramid_levels;
  const int format = options_.zarr_format;
  const std::array<int64_t, 3> chunks =
      options_.chunks.value_or(DefaultZarrChunks(output.shape, format));
  const std::array<int64_t, 3> shards =
      options_.zarr_shards.value_or(DefaultZarrShards(output.shape, chunks));
  const size_t pixel = BytesPerPixel(output.type);
  if (static_cast<double>(chunks[0]) * static_cast<double>(chunks[1]) *
          static_cast<double>(chunks[2]) * static_cast<double>(pixel) >
      static_cast<double>(kMaxChunkBytes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunks ", absl::StrJoin(chunks, "x"), ": at most ", kMaxChunkBytes >> 20, " MiB a chunk"));
  }
  // The levels: each half the one before in y and x, and in z while that keeps its voxels no
  // coarser in z than in y and x (an anisotropic light-sheet stack keeps its slices longer).
  const VoxelSize voxel = VoxelSizeOf(output.metadata);
  std::array<double, 3> scale = {voxel.z.value_or(1), voxel.y.value_or(1), voxel.x.value_or(1)};
  NgffImage image;
  image.unit = voxel.unit;
  image.name = std::string(absl::StripSuffix(absl::StripSuffix(store_.name(), ".zarr"), ".ome"));
  // NGFF stores t, c, z: planes in another order (an ImageJ hyperstack's CZT) are put in it
  // before they come here (ProcessFile reads them so), or refused.
  const Dimensions& dims = output.metadata.dims;
  if (!dims.single() && dims.order != "ZCT") {
    return absl::InvalidArgumentError(absl::StrCat(
        "an OME-Zarr store holds planes in t, c, z order; these come in ", dims.order,
        " order (fastest first), which a stream cannot reorder: write a TIFF, or give a file"));
  }
  // A store holds whole volumes: some planes of a stack of channels or time points (a z-range
  // written alone) would be put where planes of other channels belong.
  if (!dims.single() && (output.shape.depth % (dims.times * dims.channels) != 0 ||
                         (!region_ && dims.Whole(output.shape.depth) != output.shape.depth))) {
    return absl::InvalidArgumentError(absl::StrCat(
        output.shape.depth, " planes of a stack of ", dims.Describe(dims.Whole(output.shape.depth)),
        ": an OME-Zarr image holds whole time points and channels (write a z-range as TIFF)"));
  }
  times_ = dims.times;
  channels_ = dims.channels;
  if (output.type != PixelType::kFloat32) {
    image.pixel_range = {0, output.type == PixelType::kUint8 ? 255.0 : 65535.0};
  }
  std::vector<int64_t> lead_shape;
  if (times_ > 1) image.axes.push_back("t"), lead_shape.push_back(times_);
  if (channels_ > 1) image.axes.push_back("c"), lead_shape.push_back(channels_);
  if (channels_ > 1 || !dims.channel_info.empty()) {  // names and colours, one channel's too
    for (int64_t c = 0; c < channels_; ++c) {
      image.channels.push_back(c < std::ssize(dims.channel_info)
                                   ? dims.channel_info[static_cast<size_t>(c)]
                                   : ChannelInfo{});
      if (image.channels.back().name.empty()) image.channels.back().name = absl::StrCat(c);
    }
  }
  if (output.metadata.provenance) image.provenance = ProvenanceJson(*output.metadata.provenance);
  StackShape shape = output.shape;
  shape.depth /= times_ * channels_;  // one volume's
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
    level->lead = lead_shape.size();
    level->meta.shape = lead_shape;
    level->meta.shape.insert(level->meta.shape.end(), {shape.depth, shape.height, shape.width});
    const std::array<int64_t, 3> extent = {shape.depth, shape.height, shape.width};
    level->meta.zarr_format = format;
    level->meta.chunks.assign(level->lead, 1);
    for (size_t i = 0; i < 3; ++i) level->meta.chunks.push_back(std::min(chunks[i], extent[i]));
    if (format == 3) {
      // Shards of whole chunks, no larger than the level needs; a shard of one chunk is a chunk.
      level->meta.shards.assign(level->lead, 1);
      for (size_t i = 0; i < 3; ++i) {
        const int64_t chunk = level->meta.chunks[level->lead + i];
        level->meta.shards.push_back(ChunksAlong(std::min(shards[i], extent[i]), chunk) * chunk);
      }
      if (level->meta.shards == level->meta.chunks) level->meta.shards.clear();
      if (ChunksPerShard(level->meta) > kMaxChunksPerShard) {
        return absl::InvalidArgumentError(absl::StrCat(
            "shards ", absl::StrJoin(level->meta.shards, "x"), " of chunks ",
            absl::StrJoin(level->meta.chunks, "x"), ": ", ChunksPerShard(level->meta),
            " chunks each, at most ", kMaxChunksPerShard, " (readers hold a shard's index whole)"));
      }
      level->meta.key_prefix = true;  // v3's default keys: "c/0/1/2"
    }
    level->meta.type = output.type;
    level->meta.codec = codec_;
    level->meta.nested = true;  // NGFF: "/" separates a chunk's indices
    if (level->chunk_depth() > 1) {
      level->slab_bytes = static_cast<size_t>(level->chunk_depth()) * level->slice_bytes;
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
  STACKPROC_ASSIGN_OR_RETURN(
      codec_, ZarrCodecFor(options_.compression, options_.compression_level, options_.zarr_format));
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
  const Level& finest = *levels_.front();
  stream_shards_ = !finest.meta.shards.empty() && finest.meta.chunks[finest.lead] == 1 &&
                   finest.chunk_depth() > 1;
  if (stream_shards_) layers_.assign(static_cast<size_t>(std::max<int64_t>(window_slices, 1)), {});
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
  if (options_.zarr_format == 2) {
    STACKPROC_RETURN_IF_ERROR(WriteText(temp_->fd(), ".zgroup", FormatZgroup(), display));
    STACKPROC_RETURN_IF_ERROR(
        WriteText(temp_->fd(), ".zattrs", FormatNgffAttributes(image), display));
  } else {
    STACKPROC_RETURN_IF_ERROR(WriteText(temp_->fd(), "zarr.json", FormatNgffGroup(image), display));
  }
  for (size_t k = 0; k < levels_.size(); ++k) {
    Level& level = *levels_[k];
    STACKPROC_ASSIGN_OR_RETURN(level.dir, MakeFolderAt(temp_->fd(), image.levels[k].path, display));
    STACKPROC_RETURN_IF_ERROR(
        WriteText(level.dir.get(), level.meta.metadata_file(), ArrayMetadata(level), display));
  }
  return absl::OkStatus();
}

std::string ZarrSink::ArrayMetadata(const Level& level) const {
  if (level.meta.zarr_format == 2) return FormatZarray(level.meta);
  std::vector<std::string> axes;
  if (times_ > 1) axes.push_back("t");
  if (channels_ > 1) axes.push_back("c");
  axes.insert(axes.end(), {"z", "y", "x"});
  return FormatZarrJson(level.meta, axes);
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
  // Each level's share: from the first slice of this range, which must start a z-chunk of its
  // volume (and a pair of slices, where a level halves z), to its last, which must end one
  // unless it ends the volume.
  const auto refuse = [&](const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat("slices ", region_->z_begin, "-", region_->z_begin + slices - 1, ": ", why));
  };
  const int64_t depth0 = levels_.front()->shape.depth;
  const int64_t v_begin = region_->z_begin / depth0;
  const int64_t last = region_->z_begin + slices - 1;
  int64_t begin = region_->z_begin % depth0;  // in its volume, of the level above
  int64_t end = last % depth0 + 1;
  for (size_t k = 0; k < levels_.size(); ++k) {
    Level& level = *levels_[k];
    if (level.halves_z) {
      const int64_t above = levels_[k - 1]->shape.depth;
      if (begin % 2 != 0 || (end % 2 != 0 && end != above)) {
        return refuse(absl::StrCat("level ", k, " pairs slices, and the range splits a pair"));
      }
      level.received = v_begin * above + begin;
      begin /= 2;
      end = Halved(end);
    }
    const int64_t depth = level.chunk_depth();
    if (begin % depth != 0 || (end % depth != 0 && end != level.shape.depth)) {
      return refuse(
          absl::StrCat("do not fill whole z-chunks of level ", k, " (", depth, " slices each)"));
    }
    if (!level.halves_z && k > 0) level.received = v_begin * levels_[k - 1]->shape.depth + begin;
    level.appended = v_begin * level.shape.depth + begin;
    // The store must be the one this sink would make: the same stack, chunks and codec.
    STACKPROC_ASSIGN_OR_RETURN(level.dir, MakeFolderAt(store_fd_.get(), level.path, display));
    const char* name = level.meta.metadata_file();
    STACKPROC_ASSIGN_OR_RETURN(UniqueFd metadata,
                               OpenAt(level.dir.get(), name, display + "/" + level.path));
    STACKPROC_ASSIGN_OR_RETURN(InputFile file, InputFile::Adopt(std::move(metadata), display));
    STACKPROC_ASSIGN_OR_RETURN(std::vector<uint8_t> text,
                               ReadWholeFile(file, kMaxZarrMetadataBytes));
    if (std::string(text.begin(), text.end()) != ArrayMetadata(level)) {
      return absl::FailedPreconditionError(
          absl::StrCat(display, "/", level.path, "/", name,
                       ": made for another stack, chunks, shards or codec than this range's"));
    }
  }
  return absl::OkStatus();
}

absl::Status ZarrSink::Encode(int64_t z, const uint8_t* data) {
  const Level& finest = *levels_.front();
  if (stream_shards_) {
    STACKPROC_RETURN_IF_ERROR(EncodeLayer(data, layers_[static_cast<size_t>(z) % layers_.size()]));
  } else if (finest.chunk_depth() == 1) {
    const int64_t plane = (region_ ? region_->z_begin : 0) + z;
    STACKPROC_RETURN_IF_ERROR(WriteChunkRow(*levels_.front(), plane / finest.shape.depth,
                                            plane % finest.shape.depth, data, /*slices=*/1,
                                            /*parallel=*/false));
  }
  if (levels_.size() > 1) {
    HalveSlice(finest.meta.type, data, finest.shape.height, finest.shape.width,
               halves_[static_cast<size_t>(z) % halves_.size()].data());
  }
  return absl::OkStatus();
}

absl::Status ZarrSink::Write(int64_t z, const uint8_t* data) {
  if (stream_shards_) {
    Level& level = *levels_.front();
    const int64_t v = level.appended / level.shape.depth;
    const int64_t at = level.appended++ % level.shape.depth;
    STACKPROC_RETURN_IF_ERROR(AppendLayer(v, at, layers_[static_cast<size_t>(z) % layers_.size()]));
  } else {
    STACKPROC_RETURN_IF_ERROR(Append(0, data));
  }
  if (levels_.size() == 1) return absl::OkStatus();
  return Descend(1, halves_[static_cast<size_t>(z) % halves_.size()].data());
}

absl::Status ZarrSink::Append(size_t k, const uint8_t* slice) {
  Level& level = *levels_[k];
  // The level's slices follow each other volume by volume.
  const int64_t v = level.appended / level.shape.depth;
  const int64_t z = level.appended++ % level.shape.depth;
  const int64_t depth = level.chunk_depth();
  if (depth == 1) {
    // Level 0's single-slice chunks were written by Encode, in parallel.
    if (k > 0) STACKPROC_RETURN_IF_ERROR(WriteChunkRow(level, v, z, slice, 1, /*parallel=*/false));
  } else {
    if (level.slab.empty()) level.slab.resize(level.slab_bytes);  // when first needed
    std::memcpy(level.slab.data() + static_cast<size_t>(level.gathered) * level.slice_bytes, slice,
                level.slice_bytes);
    if (++level.gathered == depth || z + 1 == level.shape.depth) {
      STACKPROC_RETURN_IF_ERROR(
          WriteChunkRow(level, v, z / depth, level.slab.data(), level.gathered, /*parallel=*/true));
      level.gathered = 0;
    }
  }
  if (k == 0 || k + 1 == levels_.size()) return absl::OkStatus();
  HalveSlice(level.meta.type, slice, level.shape.height, level.shape.width, level.halved.data());
  return Descend(k + 1, level.halved.data());
}

absl::Status ZarrSink::Descend(size_t k, const uint8_t* halved) {
  Level& level = *levels_[k];
  const int64_t above = levels_[k - 1]->shape.depth;
  const bool last = ++level.received % above == 0;  // the last slice of its volume above
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
