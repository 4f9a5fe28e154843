#include "core/zarr/zarr_chunks.h"

#include <fcntl.h>
#include <isa-l/crc.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace stackproc::core {
namespace {

absl::Status Corrupt(const std::string& name, absl::string_view why) {
  return absl::DataLossError(absl::StrCat(name, ": ", why));
}

// The little-endian unsigned integer of `bytes` bytes at `p`.
uint64_t LoadLittle(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void StoreLittle(uint64_t v, int bytes, std::vector<uint8_t>& out) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// Checks and strips the crc32c at the end of `bytes`.
absl::Status TakeCrc32c(std::vector<uint8_t>& bytes, const std::string& name) {
  if (bytes.size() < 4) return Corrupt(name, "too short to end with its crc32c");
  const size_t n = bytes.size() - 4;
  const uint64_t stored = LoadLittle(bytes.data() + n, 4);
  if (Crc32c(bytes.data(), n) != stored) return Corrupt(name, "its crc32c does not match");
  bytes.resize(n);
  return absl::OkStatus();
}

// Puts a chunk stored with its axes in `order` (stored axis i is axis order[i]) back in C order.
void Untranspose(const std::vector<int64_t>& chunk, const std::vector<int>& order, size_t pixel,
                 const uint8_t* in, uint8_t* out) {
  const size_t n = chunk.size();
  std::vector<int64_t> stride(n, 1);  // of the chunk in C order
  for (size_t i = n - 1; i > 0; --i) stride[i - 1] = stride[i] * chunk[i];
  std::vector<int64_t> stored(n), at(n, 0);
  for (size_t i = 0; i < n; ++i) stored[i] = chunk[size_t(order[i])];
  int64_t count = 1;
  for (int64_t s : chunk) count *= s;
  for (int64_t k = 0; k < count; ++k) {
    int64_t to = 0;
    for (size_t i = 0; i < n; ++i) to += at[i] * stride[size_t(order[i])];
    std::memcpy(out + static_cast<size_t>(to) * pixel, in + static_cast<size_t>(k) * pixel, pixel);
    for (size_t i = n; i-- > 0;) {  // the stored index, C order
      if (++at[i] < stored[i]) break;
      at[i] = 0;
    }
  }
}

}  // namespace

uint32_t Crc32c(const uint8_t* data, size_t size) {
  uint32_t crc = 0xffffffffu;
  while (size > 0) {  // crc32_iscsi takes an int length
    const int n = static_cast<int>(std::min<size_t>(size, INT_MAX));
    crc = crc32_iscsi(const_cast<uint8_t*>(data), n, crc);
    data += n;
    size -= static_cast<size_t>(n);
  }
  return crc ^ 0xffffffffu;
}

absl::Status DecodeArrayChunk(const ZarrArrayMeta& meta, std::vector<uint8_t>& encoded,
                              uint8_t* out, std::vector<uint8_t>& scratch,
                              const std::string& name) {
  if (meta.chunk_crc32c) STACKPROC_RETURN_IF_ERROR(TakeCrc32c(encoded, name));
  const size_t pixel = BytesPerPixel(meta.type);
  const size_t bytes = static_cast<size_t>(meta.chunk_elements()) * pixel;
  uint8_t* decoded = out;
  if (!meta.transpose.empty()) {
    scratch.resize(bytes);
    decoded = scratch.data();
  }
  STACKPROC_RETURN_IF_ERROR(DecodeChunk(meta.codec, encoded, decoded, bytes, name));
  if (meta.big_endian && pixel > 1) {
    for (size_t i = 0; i < bytes; i += pixel) std::reverse(decoded + i, decoded + i + pixel);
  }
  if (!meta.transpose.empty()) Untranspose(meta.chunks, meta.transpose, pixel, decoded, out);
  return absl::OkStatus();
}

int64_t ChunksPerShard(const ZarrArrayMeta& meta) {
  int64_t n = 1;
  for (size_t i = 0; i < meta.shards.size(); ++i) n *= meta.shards[i] / meta.chunks[i];
  return n;
}

absl::StatusOr<ShardIndex> ReadShardIndex(const InputFile& file, const ZarrArrayMeta& meta) {
  const int64_t chunks = ChunksPerShard(meta);
  const uint64_t size = static_cast<uint64_t>(chunks) * 16 + (meta.index_crc32c ? 4 : 0);
  if (file.size() < size) {
    return Corrupt(file.name(), absl::StrCat(file.size(), " bytes, shorter than its index of ",
                                             chunks, " chunks (", size, " bytes): truncated?"));
  }
  const uint64_t at = meta.index_at_start ? 0 : file.size() - size;
  std::vector<uint8_t> bytes(size);
  STACKPROC_RETURN_IF_ERROR(ReadFileRange(file, at, size, bytes.data()));
  if (meta.index_crc32c) {
    STACKPROC_RETURN_IF_ERROR(TakeCrc32c(bytes, absl::StrCat(file.name(), ": its index")));
  }
  ShardIndex index;
  index.entries.resize(static_cast<size_t>(2 * chunks));
  for (size_t i = 0; i < index.entries.size(); ++i) {
    index.entries[i] = LoadLittle(bytes.data() + 8 * i, 8);
  }
  // Every chunk's bytes in the file, and not over the index.
  const uint64_t data_begin = meta.index_at_start ? size : 0;
  const uint64_t data_end = meta.index_at_start ? file.size() : file.size() - size;
  for (int64_t i = 0; i < chunks; ++i) {
    if (index.missing(i) && index.nbytes(i) == ~uint64_t{0}) continue;
    if (index.offset(i) < data_begin || index.offset(i) > data_end ||
        index.nbytes(i) > data_end - index.offset(i)) {
      return Corrupt(
          file.name(),
          absl::StrCat("its index puts chunk ", i, " at bytes ", index.offset(i), "+",
                       index.nbytes(i), ", outside its data (", data_begin, "-", data_end, ")"));
    }
  }
  return index;
}

ShardWriter::ShardWriter(int dir, std::string name, std::string display, int64_t chunks)
    : dir_(dir),
      name_(std::move(name)),
      temp_(absl::StrCat(".", name_, ".part")),
      display_(std::move(display)),
      entries_(static_cast<size_t>(2 * chunks), ~uint64_t{0}) {}

ShardWriter::~ShardWriter() {
  if (fd_) ::unlinkat(dir_, temp_.c_str(), 0);
}

absl::Status ShardWriter::Open() {
  fd_ = UniqueFd(
      ::openat(dir_, temp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0666));
  if (!fd_) {
    return absl::Status(absl::ErrnoToStatusCode(errno),
                        absl::StrCat(display_, ": cannot create it: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status ShardWriter::Append(int64_t i, const std::vector<uint8_t>& bytes) {
  if (const int error = PwriteFull(fd_.get(), bytes.data(), bytes.size(), size_); error != 0) {
    return absl::Status(absl::ErrnoToStatusCode(error),
                        absl::StrCat(display_, ": cannot write it: ", std::strerror(error)));
  }
  entries_[size_t(2 * i)] = size_;
  entries_[size_t(2 * i + 1)] = bytes.size();
  size_ += bytes.size();
  return absl::OkStatus();
}

absl::Status ShardWriter::Commit() {
  std::vector<uint8_t> index;
  index.reserve(entries_.size() * 8 + 4);
  for (uint64_t v : entries_) StoreLittle(v, 8, index);
  StoreLittle(Crc32c(index.data(), index.size()), 4, index);
  if (const int error = PwriteFull(fd_.get(), index.data(), index.size(), size_); error != 0) {
    return absl::Status(absl::ErrnoToStatusCode(error),
                        absl::StrCat(display_, ": cannot write its index: ", std::strerror(error)));
  }
  if (::close(fd_.release()) != 0 || ::renameat(dir_, temp_.c_str(), dir_, name_.c_str()) != 0) {
    const int error = errno;
    ::unlinkat(dir_, temp_.c_str(), 0);
    return absl::Status(absl::ErrnoToStatusCode(error),
                        absl::StrCat(display_, ": cannot put it in place: ", std::strerror(error)));
  }
  return absl::OkStatus();
}

}  // namespace stackproc::core
