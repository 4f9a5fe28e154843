#include "core/tiff/strip_encoder.h"

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

}  // namespace

bool CanEncodeStrips(Compression compression, PixelType type) {
  return (compression == Compression::kDeflate || compression == Compression::kZstd) &&
         (type == PixelType::kUint8 || type == PixelType::kUint16);
}

absl::Status EncodeStrip(Compression compression, int level, PixelType type, const uint8_t* src,
                         size_t rows, size_t row_bytes, std::vector<uint8_t>& scratch,
                         std::vector<uint8_t>& out) {
  const size_t bytes = rows * row_bytes;
  scratch.assign(src, src + bytes);
  if (type == PixelType::kUint8) {
    HorizontalDifference<uint8_t>(scratch.data(), rows, row_bytes);
  } else {
    HorizontalDifference<uint16_t>(scratch.data(), rows, row_bytes);
  }
  if (compression == Compression::kDeflate) {
    // One compressor per thread and level: creating one allocates several hundred KiB.
    const int deflate_level = CompressionLevel(Compression::kDeflate, level);
    thread_local std::array<std::unique_ptr<libdeflate_compressor, DeflateFree>, 13> compressors;
    auto& compressor = compressors.at(static_cast<size_t>(deflate_level));
    if (compressor == nullptr) compressor.reset(libdeflate_alloc_compressor(deflate_level));
    if (compressor == nullptr) return absl::ResourceExhaustedError("no deflate compressor");
    out.resize(libdeflate_zlib_compress_bound(compressor.get(), bytes));
    const size_t n =
        libdeflate_zlib_compress(compressor.get(), scratch.data(), bytes, out.data(), out.size());
    if (n == 0) return absl::InternalError("deflate of a strip failed");
    out.resize(n);
    return absl::OkStatus();
  }
  out.resize(ZSTD_compressBound(bytes));
  const size_t n = ZSTD_compress(out.data(), out.size(), scratch.data(), bytes,
                                 CompressionLevel(Compression::kZstd, level));
  if (ZSTD_isError(n)) {
    return absl::InternalError(absl::StrCat("zstd of a strip failed: ", ZSTD_getErrorName(n)));
  }
  out.resize(n);
  return absl::OkStatus();
}

}  // namespace stackproc::core
