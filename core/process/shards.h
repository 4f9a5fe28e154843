// A job's slices cut into z-ranges ("shards") that run apart (the tasks of a cluster's job
// array), and their pieces put back together:
//
//   ShardRange       which slices shard i of n runs
//   ZRangeSource     those slices of any source, as a stack of their own
//   AssembleTiff     TIFF shards into one TIFF, their compressed strips copied as they are
//
// (OME-Zarr shards need no assembly: ranges aligned to chunks fill one store, zarr_sink.h.)
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/file.h"
#include "core/exec/engine.h"
#include "core/tiff/tiff_writer.h"

namespace stackproc::core {

// Slices [begin, end) of a stack.
struct ZRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
  friend bool operator==(const ZRange&, const ZRange&) = default;
};

// "A:B" (slices A to B-1) as a ZRange; InvalidArgument otherwise.
absl::StatusOr<ZRange> ParseZRange(absl::string_view text);

// The slices of shard `index` (0-based) of `shards` over `depth` slices: consecutive ranges, as
// equal as whole multiples of `align` slices allow (the last takes the rest), in order.
// InvalidArgument for an index outside [0, shards) or more shards than aligned pieces.
absl::StatusOr<ZRange> ShardRange(int64_t depth, int64_t shards, int64_t index, int64_t align = 1);

// Where a TIFF shard's slices belong, recorded in the shard (WriteOptions::shard_record) so that
// assembly can prove every slice is there once: its range, the whole stack's depth, and its job
// (JobKey: the same input, pipeline and output settings give the same key).
struct ShardRecord {
  ZRange range;
  int64_t depth = 0;
  std::string job;
};
// "stackproc shard 4:8 of 12 job 9f3a0c1d2e4b5a60".
std::string FormatShardRecord(const ShardRecord& record);
// InvalidArgument naming `what` unless `text` is FormatShardRecord's.
absl::StatusOr<ShardRecord> ParseShardRecord(absl::string_view text, absl::string_view what);
// A job's key from what decides its output: the input as named, the pipeline, the input's depth
// and the output's compression (16 hex digits of FNV-1a).
std::string JobKey(absl::string_view input, absl::string_view pipeline, int64_t depth,
                   absl::string_view compression);

// Slices `range` of `source`, as slices 0.. of a stack of their own (its metadata's depth made
// the range's). A run of a pipeline with z-neighbourhoods reads the planes they need past the
// range from the source around it (SourceTraits::context_before/after), so that the range's
// output is the whole run's.
class ZRangeSource final : public SliceSource {
 public:
  // InvalidArgument unless `range` is a non-empty range of the source's slices. With
  // `pipeline` (bound here to the source's planes), the planes its z-neighbourhoods need on
  // each side of the range (Pipeline::HaloOf), as far as the source has them, are read too.
  static absl::StatusOr<std::unique_ptr<ZRangeSource>> Create(std::shared_ptr<SliceSource> source,
                                                              ZRange range,
                                                              Pipeline* pipeline = nullptr);

  const StackInfo& info() const override { return info_; }
  SourceTraits traits() const override {
    SourceTraits traits = source_->traits();
    traits.context_before = context_.begin;
    traits.context_after = context_.end;
    return traits;
  }
  uint8_t* Lend(int64_t z) override { return source_->Lend(range_.begin + z); }
  bool lends_writable() const override { return source_->lends_writable(); }
  absl::Status Start(std::shared_ptr<Waker> waker, int64_t window_slices) override {
    return source_->Start(std::move(waker), window_slices);
  }
  absl::StatusOr<bool> Ready(int64_t z) override { return source_->Ready(range_.begin + z); }
  absl::Status Read(int64_t z, uint8_t* buffer) override {
    return source_->Read(range_.begin + z, buffer);
  }
  void Done(int64_t z) override { source_->Done(range_.begin + z); }

 private:
  ZRangeSource(std::shared_ptr<SliceSource> source, ZRange range, ZRange context, StackInfo info)
      : source_(std::move(source)), range_(range), context_(context), info_(std::move(info)) {}

  const std::shared_ptr<SliceSource> source_;
  const ZRange range_;
  const ZRange context_;  // planes read before the range (begin) and after it (end)
  const StackInfo info_;
};

// Puts TIFF shards (each the pages of one range, written by stackproc with one compression and
// its ShardRecord) together into one TIFF at `target`, in the order of their ranges: each page's
// strips are copied as they are, neither decoded nor encoded again, with the first shard's
// metadata, its depth made the total. The result is the file one run would have written.
// Written like any TIFF (a temporary file beside the target, synced, renamed; `options`'
// overwrite and temp_tag; its compression is the shards'). InvalidArgument, naming the shard,
// when the shards differ in size, type or compression, were laid out by another writer, carry no
// record, come from another job, or leave slices out or hold some twice.
absl::Status AssembleTiff(const Files& files, const std::vector<std::string>& shards,
                          const OutputTarget& target, WriteOptions options);

// A range's statistics (GatherStats: a cut job's first phase) in a file, for the shards of its
// second phase: "stackproc-stats 1 N\n", then N little-endian 64-bit counts. Written under a
// temporary name and renamed.
absl::Status WriteStatsFile(const std::string& path, const std::vector<uint64_t>& stats);
// The statistics of `paths` summed, count by count: the whole stack's when the files cover its
// ranges. InvalidArgument naming a file that is no statistics file or differs in size.
absl::StatusOr<std::vector<uint64_t>> SumStatsFiles(const std::vector<std::string>& paths);

}  // namespace stackproc::core
