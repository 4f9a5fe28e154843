// What a Zarr array's files hold: a chunk's bytes through its array's codecs (v2's compressor;
// v3's transpose, bytes, a compressor and crc32c), and Zarr v3's shards (the sharding_indexed
// codec): a shard file is its inner chunks' encoded bytes, then an index of one (offset, nbytes)
// pair per inner chunk in C order of the shard's chunk grid, little-endian uint64s, then the
// index's crc32c (4 bytes, little endian). A chunk never written has both set to 2^64 - 1.
// See https://zarr-specs.readthedocs.io/en/latest/v3/codecs/sharding-indexed/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/file.h"
#include "core/zarr/zarr_metadata.h"

namespace stackproc::core {

// CRC-32C (Castagnoli), as the crc32c codec computes it.
uint32_t Crc32c(const uint8_t* data, size_t size);

// Decodes one stored chunk of `meta`'s array into `out` (chunk_elements() pixels, C order,
// native byte order). `encoded` is consumed; `scratch` is the caller's, reused. DataLoss naming
// `name` for bytes that do not decode to a chunk (a bad crc32c, a corrupt stream).
absl::Status DecodeArrayChunk(const ZarrArrayMeta& meta, std::vector<uint8_t>& encoded,
                              uint8_t* out, std::vector<uint8_t>& scratch, const std::string& name);

// The inner chunks a shard of `meta` holds (its grid's size).
int64_t ChunksPerShard(const ZarrArrayMeta& meta);

// A shard's index: where each inner chunk's bytes are.
struct ShardIndex {
  std::vector<uint64_t> entries;  // offset, nbytes: 2 per inner chunk

  bool missing(int64_t i) const { return entries[size_t(2 * i)] == ~uint64_t{0}; }
  uint64_t offset(int64_t i) const { return entries[size_t(2 * i)]; }
  uint64_t nbytes(int64_t i) const { return entries[size_t(2 * i + 1)]; }
};

// Reads and checks the index of shard `file` of `meta`'s array: DataLoss naming the file when
// it is shorter than its index, the index's crc32c is wrong, or a chunk lies past the file's
// end or over the index.
absl::StatusOr<ShardIndex> ReadShardIndex(const InputFile& file, const ZarrArrayMeta& meta);

// A shard written once, whole: opened under a temporary name in `dir`, its inner chunks
// appended in the index's order (or left out: never written), then Commit writes the index,
// and renames it into place. Destroyed uncommitted, it leaves nothing.
class ShardWriter {
 public:
  ShardWriter(int dir, std::string name, std::string display, int64_t chunks);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  absl::Status Open();
  // Inner chunk `i` (at or after the last appended), its encoded bytes.
  absl::Status Append(int64_t i, const std::vector<uint8_t>& bytes);
  absl::Status Commit();

 private:
  const int dir_;
  const std::string name_, temp_, display_;
  UniqueFd fd_;
  uint64_t size_ = 0;
  std::vector<uint64_t> entries_;
};

}  // namespace stackproc::core
