#include "core/process/shards.h"

#include <tiffio.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/base/cancel.h"
#include "core/base/status_macros.h"
#include "core/tiff/tiff_handle.h"
#include "core/tiff/tiff_reader.h"

namespace stackproc::core {

absl::StatusOr<ZRange> ParseZRange(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  ZRange range;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &range.begin) ||
      !absl::SimpleAtoi(parts[1], &range.end) || range.begin < 0 || range.end <= range.begin) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\" is not a z-range A:B (slices A to B-1, A < B)"));
  }
  return range;
}

absl::StatusOr<ZRange> ShardRange(int64_t depth, int64_t shards, int64_t index, int64_t align) {
  align = std::max<int64_t>(align, 1);
  const int64_t pieces = (depth + align - 1) / align;
  if (shards < 1 || index < 0 || index >= shards) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard ", index, " of ", shards, ": the index must be 0 to shards - 1"));
  }
  if (shards > pieces) {
    return absl::InvalidArgumentError(absl::StrCat(shards, " shards of ", depth, " slices in ",
                                                   pieces, " pieces of ", align,
                                                   ": at most one shard per piece"));
  }
  // The first (pieces % shards) shards take one piece more.
  const int64_t base = pieces / shards;
  const int64_t extra = pieces % shards;
  const int64_t first = index * base + std::min(index, extra);
  const int64_t count = base + (index < extra ? 1 : 0);
  return ZRange{first * align, std::min((first + count) * align, depth)};
}

std::string FormatShardRecord(const ShardRecord& record) {
  return absl::StrCat("stackproc shard ", record.range.begin, ":", record.range.end, " of ",
                      record.depth, " job ", record.job);
}

absl::StatusOr<ShardRecord> ParseShardRecord(absl::string_view text, absl::string_view what) {
  const std::vector<absl::string_view> words = absl::StrSplit(text, ' ');
  ShardRecord record;
  absl::StatusOr<ZRange> range =
      words.size() == 7 ? ParseZRange(words[2]) : absl::InvalidArgumentError("");
  if (words.size() != 7 || words[0] != "stackproc" || words[1] != "shard" || !range.ok() ||
      words[3] != "of" || !absl::SimpleAtoi(words[4], &record.depth) || words[5] != "job" ||
      range->end > record.depth) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": its shard record \"", text, "\" is not stackproc's"));
  }
  record.range = *range;
  record.job = std::string(words[6]);
  return record;
}

std::string JobKey(absl::string_view input, absl::string_view pipeline, int64_t depth,
                   absl::string_view compression) {
  uint64_t hash = 14695981039346656037ull;
  const std::string depth_text = absl::StrCat(depth);  // lives through the loop
  for (absl::string_view part : {input, pipeline, absl::string_view(depth_text), compression}) {
    for (char c : part) hash = (hash ^ static_cast<uint8_t>(c)) * 1099511628211ull;
    hash = (hash ^ 0xff) * 1099511628211ull;  // parts apart: "ab","c" is not "a","bc"
  }
  return absl::StrFormat("%016x", hash);
}

absl::StatusOr<std::unique_ptr<ZRangeSource>> ZRangeSource::Create(
    std::shared_ptr<SliceSource> source, ZRange range, Pipeline* pipeline) {
  const StackInfo& whole = source->info();
  if (range.begin < 0 || range.end <= range.begin || range.end > whole.shape.depth) {
    return absl::InvalidArgumentError(absl::StrCat("slices ", range.begin, " to ", range.end - 1,
                                                   " are not in a stack of ", whole.shape.depth));
  }
  ZRange context;
  if (pipeline != nullptr) {
    STACKPROC_RETURN_IF_ERROR(pipeline->Bind(whole));
    const int64_t halo = pipeline->HaloOf(0, pipeline->size());
    context = {std::min(halo, range.begin), std::min(halo, whole.shape.depth - range.end)};
  }
  StackInfo info = whole;
  info.shape.depth = range.size();
  StackMetadata part = whole.metadata;  // the whole stack's planes, of which these are some
  part.dims = whole.metadata.dims.Range(range.begin, range.size(), whole.shape.depth);
  info.metadata = UpdateMetadata(part, info.shape, whole.type, whole.type, {});
  return std::unique_ptr<ZRangeSource>(
      new ZRangeSource(std::move(source), range, context, std::move(info)));
}

namespace {

struct Shard {
  std::string path;
  InputFile file;
  TiffInfo info;
  ShardRecord record;
};

// The shards in the order of their ranges, which must cover the job's slices once each, all of
// one job: InvalidArgument naming the shard otherwise.
absl::Status PutInPlace(std::vector<Shard>& shards) {
  std::stable_sort(shards.begin(), shards.end(), [](const Shard& a, const Shard& b) {
    return a.record.range.begin < b.record.range.begin;
  });
  const ShardRecord& first = shards.front().record;
  int64_t next = 0;  // the first slice no shard so far holds
  const Shard* previous = nullptr;
  for (const Shard& shard : shards) {
    const ShardRecord& r = shard.record;
    if (r.job != first.job || r.depth != first.depth) {
      return absl::InvalidArgumentError(absl::StrCat(
          shard.path, ": a shard of another job (", r.depth, " slices, job ", r.job, "; ",
          shards.front().path, " is of ", first.depth, " slices, job ", first.job, ")"));
    }
    if (r.range.size() != shard.info.shape.depth) {
      return absl::InvalidArgumentError(absl::StrCat(shard.path, ": records slices ", r.range.begin,
                                                     ":", r.range.end, " but holds ",
                                                     shard.info.shape.depth));
    }
    if (r.range.begin > next) {
      return absl::InvalidArgumentError(absl::StrCat("slices ", next, ":", r.range.begin,
                                                     " are in no shard (missing before ",
                                                     shard.path, ")"));
    }
    if (r.range.begin < next) {
      return absl::InvalidArgumentError(absl::StrCat(
          shard.path, " (slices ", r.range.begin, ":", r.range.end, ") ",
          r.range == previous->record.range ? "repeats" : "overlaps", " ", previous->path,
          " (slices ", previous->record.range.begin, ":", previous->record.range.end, ")"));
    }
    next = r.range.end;
    previous = &shard;
  }
  if (next != first.depth) {
    return absl::InvalidArgumentError(absl::StrCat("slices ", next, ":", first.depth,
                                                   " are in no shard (missing after ",
                                                   previous->path, ")"));
  }
  return absl::OkStatus();
}

absl::Status NotLaidOutAlike(const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(
      path, ": ", what, "; shards are assembled only as stackproc writes them (run them again)"));
}

// Copies page `page` of `shard` into `writer`: its strips, read raw. (Uncompressed pages are
// read as pages: libtiff cuts their strips into pieces of about 8 KiB as it reads them.)
absl::Status CopyPage(const Shard& shard, TiffHandle& handle, int64_t page, TiffPageWriter& writer,
                      TiffPageWriter::EncodedPage& encoded, std::vector<uint8_t>& buffer) {
  if (!writer.compressed()) {
    buffer.resize(writer.slice_bytes());
    STACKPROC_RETURN_IF_ERROR(ReadTiffPage(shard.file, shard.info, page, buffer.data()));
    return writer.WritePage(buffer.data());
  }
  TIFF* tif = handle.get();
  if (!TIFFSetSubDirectory(tif, shard.info.page_offsets[static_cast<size_t>(page)])) {
    return absl::DataLossError(absl::StrCat(shard.path, ": page ", page, ": ", handle.TakeError()));
  }
  uint32_t rows = 0;
  uint16_t predictor = PREDICTOR_NONE;
  TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &rows);
  TIFFGetFieldDefaulted(tif, TIFFTAG_PREDICTOR, &predictor);
  if (TIFFIsTiled(tif) || rows != writer.rows_per_strip() || predictor != writer.predictor()) {
    return NotLaidOutAlike(shard.path, absl::StrCat("page ", page, " has ", rows,
                                                    " rows a strip and predictor ", predictor));
  }
  const uint32_t strips = TIFFNumberOfStrips(tif);
  encoded.strips.resize(strips);
  for (uint32_t s = 0; s < strips; ++s) {
    const uint64_t size = TIFFRawStripSize64(tif, s);
    if (size == 0 || size > uint64_t{1} << 32) {
      return absl::DataLossError(
          absl::StrCat(shard.path, ": page ", page, " strip ", s, ": implausible size ", size));
    }
    std::vector<uint8_t>& bytes = encoded.strips[s];
    bytes.resize(size);
    if (TIFFReadRawStrip(tif, s, bytes.data(), static_cast<tmsize_t>(size)) !=
        static_cast<tmsize_t>(size)) {
      return absl::DataLossError(
          absl::StrCat(shard.path, ": page ", page, " strip ", s, ": ", handle.TakeError()));
    }
  }
  encoded.encoded = true;
  return writer.WriteEncoded(encoded);
}

}  // namespace

absl::Status AssembleTiff(const Files& files, const std::vector<std::string>& shards,
                          const OutputTarget& target, WriteOptions options) {
  if (shards.empty()) return absl::InvalidArgumentError("no shards to assemble");
  std::vector<Shard> parts;
  StackShape shape;
  for (const std::string& path : shards) {
    STACKPROC_ASSIGN_OR_RETURN(InputFile file, files.Input(path));
    STACKPROC_ASSIGN_OR_RETURN(TiffInfo info, ProbeTiff(file));
    if (!parts.empty()) {
      const TiffInfo& first = parts.front().info;
      if (info.shape.height != first.shape.height || info.shape.width != first.shape.width ||
          info.pixel_type != first.pixel_type || info.compression != first.compression) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": ", info.shape.width, "x", info.shape.height, " ",
            PixelTypeName(info.pixel_type), " compression ", info.compression, " differs from ",
            parts.front().path, " (", first.shape.width, "x", first.shape.height, " ",
            PixelTypeName(first.pixel_type), " compression ", first.compression, ")"));
      }
    }
    if (info.contiguous_planes_at || info.tiled || info.samples > 1) {
      return NotLaidOutAlike(path, "an ImageJ raw stack, a tiled file or one of RGB pages");
    }
    if (info.shard_record.empty()) {
      return NotLaidOutAlike(path,
                             "no shard record (stackproc-local run --shards N or --z-range "
                             "A:B writes one)");
    }
    STACKPROC_ASSIGN_OR_RETURN(ShardRecord record, ParseShardRecord(info.shard_record, path));
    shape = {shape.depth + info.shape.depth, info.shape.height, info.shape.width};
    parts.push_back({path, std::move(file), std::move(info), std::move(record)});
  }
  STACKPROC_RETURN_IF_ERROR(PutInPlace(parts));
  const TiffInfo& first = parts.front().info;
  const std::optional<Compression> compression = CompressionOfTag(first.compression);
  if (!compression) return NotLaidOutAlike(parts.front().path, "a compression it does not write");
  options.compression = *compression;
  options.shard_record.clear();  // the result is whole
  {
    STACKPROC_ASSIGN_OR_RETURN(TiffHandle handle, TiffHandle::OpenRead(parts.front().file));
    uint16_t predictor = PREDICTOR_NONE;
    TIFFGetFieldDefaulted(handle.get(), TIFFTAG_PREDICTOR, &predictor);
    options.predictor = predictor == PREDICTOR_NONE ? Predictor::kNone : Predictor::kDifferencing;
  }
  // The shards carry the whole stack's description: its counts are the assembled stack's.
  StackMetadata whole = first.metadata;
  absl::StatusOr<Dimensions> dims = DimensionsOf(whole.description, shape.depth);
  if (!dims.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(parts.front().path, ": ", dims.status().message()));
  }
  whole.dims = *std::move(dims);
  if (ClassifyDescription(whole.description) == DescriptionKind::kImageJ) {
    ApplyImageJChannels(first.imagej, whole.dims);  // colours and windows
  }
  // What made the shards made the whole: the first's record, of no z-range now.
  if (whole.provenance) whole.provenance->z_range.clear();
  const StackMetadata metadata =
      UpdateMetadata(whole, shape, first.pixel_type, first.pixel_type, {});
  STACKPROC_ASSIGN_OR_RETURN(
      std::unique_ptr<TiffPageWriter> writer,
      TiffPageWriter::Create(target, shape, first.pixel_type, metadata, options));
  TiffPageWriter::EncodedPage encoded;
  std::vector<uint8_t> buffer;
  for (const Shard& shard : parts) {
    STACKPROC_ASSIGN_OR_RETURN(TiffHandle handle, TiffHandle::OpenRead(shard.file));
    for (int64_t page = 0; page < shard.info.shape.depth; ++page) {
      if (IsCancelled(options.cancel)) {
        return absl::CancelledError("assembly cancelled");
      }
      STACKPROC_RETURN_IF_ERROR(CopyPage(shard, handle, page, *writer, encoded, buffer));
    }
  }
  return writer->Commit();
}

namespace {

constexpr absl::string_view kStatsMagic = "stackproc-stats 1 ";

}  // namespace

absl::Status WriteStatsFile(const std::string& path, const std::vector<uint64_t>& stats) {
  STACKPROC_ASSIGN_OR_RETURN(OutputTarget target, OutputTarget::ForPath(path));
  std::string bytes = absl::StrCat(kStatsMagic, stats.size(), "\n");
  for (uint64_t count : stats) {
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((count >> (8 * i)) & 0xff));
  }
  return WriteFileAt(target.dir(), target.name(), bytes.data(), bytes.size(), path);
}

absl::StatusOr<std::vector<uint64_t>> SumStatsFiles(const std::vector<std::string>& paths) {
  std::vector<uint64_t> sum;
  for (const std::string& path : paths) {
    STACKPROC_ASSIGN_OR_RETURN(InputFile file, InputFile::Open(path));
    STACKPROC_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes,
                               ReadWholeFile(file, kStatsMagic.size() + 20 + 8 * kMaxStatsValues));
    const absl::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    const size_t newline = text.find('\n');
    size_t count = 0;
    if (!absl::StartsWith(text, kStatsMagic) || newline == absl::string_view::npos ||
        !absl::SimpleAtoi(text.substr(kStatsMagic.size(), newline - kStatsMagic.size()), &count) ||
        count > kMaxStatsValues || bytes.size() != newline + 1 + 8 * count) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": not a stackproc statistics file"));
    }
    if (sum.empty()) sum.resize(count);
    if (count != sum.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": ", count, " counts, where ", paths.front(), " has ", sum.size()));
    }
    const uint8_t* p = bytes.data() + newline + 1;
    for (size_t i = 0; i < count; ++i, p += 8) {
      uint64_t value = 0;
      for (int b = 7; b >= 0; --b) value = (value << 8) | p[b];
      sum[i] += value;
    }
  }
  return sum;
}

}  // namespace stackproc::core
