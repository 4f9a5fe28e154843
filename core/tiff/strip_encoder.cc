#include "core/tiff/strip_encoder.h"

#include <isa-l/igzip_lib.h>
#include <libdeflate.h>
#include <zstd.h>

#include <array>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"

namespace stackproc::core {
namespace {

// TIFF Predictor 2: each sample minus its left neighbour, row by row, wrapping.
template <typename T>
void HorizontalDifference(uint8_t* data, size_t rows, size_t row_bytes) {
  const size_t width = row_bytes / sizeof(T);
  for (size_t r = 0; r < rows; ++r) {
    auto* row = reinterpret_cast<T*>(data + r * row_bytes);
    for (size_t x = width - 1; x > 0; --x) row[x] = static_cast<T>(row[x] - row[x - 1]);
  }
}

struct DeflateFree {
  void operator()(libdeflate_compressor* c) const { libdeflate_free_compressor(c); }
};

// Levels 1-3 through ISA-L's igzip at its level 3, whatever the level asked. Its levels 1 and 2
// share a body in assembly (igzip_icf_body_h1_gr_bt.asm) that, for a stream's first bytes
// (.write_first_byte), hashes the register holding the isal_zstream's address where it means
// the input's third byte: that position goes into a hash bucket picked by where the stream
// lies, so now and then a strip comes out a byte or two otherwise in another process or thread
// (7 of 100 processes over 384 strips; tests/bench/deflate_processes.cc). Level 3's body has
// no such path (0 of 300), is as fast in the encoder alone and a little smaller. Byte-equal outputs
// rest on it (a cluster's shards against a whole run, a taken-up stream against an unbroken one)
// between machines of the same CPU features: igzip picks its code by them, and level 3's AVX-512
// code writes other bytes than its AVX2 code.
absl::Status Igzip(bool gzip, const uint8_t* data, size_t bytes, std::vector<uint8_t>& out) {
  thread_local std::vector<uint8_t> level_buffer(ISAL_DEF_LVL3_DEFAULT);
  // Stored blocks at worst: 5 bytes per 64 KiB block, the zlib header and trailer.
  out.resize(bytes + (bytes / 65535 + 1) * 5 + 64);  // gzip's header and trailer: 18 bytes
  isal_zstream stream;
  isal_deflate_stateless_init(&stream);
  // Not set by the init: whatever the stack held would size the window (1-15: a smaller one,
  // and other bytes for the same strip). 0 is the full 32 KiB.
  stream.hist_bits = 0;
  stream.level = 3;
  stream.level_buf = level_buffer.data();
  stream.level_buf_size = static_cast<uint32_t>(level_buffer.size());
  stream.gzip_flag = gzip ? IGZIP_GZIP : IGZIP_ZLIB;
  stream.end_of_stream = 1;
  stream.next_in = const_cast<uint8_t*>(data);
  stream.avail_in = static_cast<uint32_t>(bytes);
  stream.next_out = out.data();
  stream.avail_out = static_cast<uint32_t>(out.size());
  if (const int rc = isal_deflate_stateless(&stream); rc != COMP_OK) {
    return absl::InternalError(absl::StrCat("deflate failed (igzip ", rc, ")"));
  }
  out.resize(stream.total_out);
  return absl::OkStatus();
}

}  // namespace

absl::Status EncodeDeflate(int level, bool gzip, const uint8_t* data, size_t bytes,
                           std::vector<uint8_t>& out) {
  if (level <= 3) return Igzip(gzip, data, bytes, out);
  // One compressor per thread and level: creating one allocates several hundred KiB.
  thread_local std::array<std::unique_ptr<libdeflate_compressor, DeflateFree>, 13> compressors;
  auto& compressor = compressors.at(static_cast<size_t>(level));
  if (compressor == nullptr) compressor.reset(libdeflate_alloc_compressor(level));
  if (compressor == nullptr) return absl::ResourceExhaustedError("no deflate compressor");
  out.resize(gzip ? libdeflate_gzip_compress_bound(compressor.get(), bytes)
                  : libdeflate_zlib_compress_bound(compressor.get(), bytes));
  const size_t n =
      gzip ? libdeflate_gzip_compress(compressor.get(), data, bytes, out.data(), out.size())
           : libdeflate_zlib_compress(compressor.get(), data, bytes, out.data(), out.size());
  if (n == 0) return absl::InternalError("deflate failed: the output did not fit its bound");
  out.resize(n);
  return absl::OkStatus();
}

bool CanEncodeStrips(Compression compression, PixelType type) {
  return (compression == Compression::kDeflate || compression == Compression::kZstd) &&
         (type == PixelType::kUint8 || type == PixelType::kUint16);
}

absl::Status EncodeStrip(Compression compression, int level, PixelType type, bool differencing,
                         const uint8_t* src, size_t rows, size_t row_bytes,
                         std::vector<uint8_t>& scratch, std::vector<uint8_t>& out) {
  const size_t bytes = rows * row_bytes;
  const uint8_t* data = src;
  if (differencing) {
    scratch.assign(src, src + bytes);
    if (type == PixelType::kUint8) {
      HorizontalDifference<uint8_t>(scratch.data(), rows, row_bytes);
    } else {
      HorizontalDifference<uint16_t>(scratch.data(), rows, row_bytes);
    }
    data = scratch.data();
  }
  if (compression == Compression::kDeflate) {
    return EncodeDeflate(CompressionLevel(Compression::kDeflate, level), /*gzip=*/false, data,
                         bytes, out);
  }
  out.resize(ZSTD_compressBound(bytes));
  const size_t n = ZSTD_compress(out.data(), out.size(), data, bytes,
                                 CompressionLevel(Compression::kZstd, level));
  if (ZSTD_isError(n)) {
    return absl::InternalError(absl::StrCat("zstd of a strip failed: ", ZSTD_getErrorName(n)));
  }
  out.resize(n);
  return absl::OkStatus();
}

}  // namespace stackproc::core
