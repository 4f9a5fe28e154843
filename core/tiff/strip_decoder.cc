#include "core/tiff/strip_decoder.h"

#include <libdeflate.h>

#include <memory>

namespace stackproc::core {
namespace {

template <typename T>
void UndoHorizontalDifferencing(uint8_t* dst, size_t rows, size_t width) {
  for (size_t r = 0; r < rows; ++r) {
    T* row = reinterpret_cast<T*>(dst) + r * width;
    for (size_t x = 1; x < width; ++x) row[x] = static_cast<T>(row[x] + row[x - 1]);
  }
}

}  // namespace

Inflating CanInflateStrips(TIFF* tif, uint16_t compression, PixelType type) {
  if (TIFFIsByteSwapped(tif) ||
      (compression != COMPRESSION_ADOBE_DEFLATE && compression != COMPRESSION_DEFLATE)) {
    return Inflating::kNo;
  }
  uint16_t predictor = PREDICTOR_NONE;
  TIFFGetFieldDefaulted(tif, TIFFTAG_PREDICTOR, &predictor);
  if (predictor == PREDICTOR_NONE) return Inflating::kPlain;
  return predictor == PREDICTOR_HORIZONTAL && type != PixelType::kFloat32 ? Inflating::kDifferenced
                                                                          : Inflating::kNo;
}

bool InflateStrip(TIFF* tif, Inflating how, uint32_t strip, PixelType type, uint32_t width,
                  size_t rows, uint8_t* dst, size_t want, std::vector<uint8_t>& raw) {
  struct Free {
    void operator()(libdeflate_decompressor* d) const { libdeflate_free_decompressor(d); }
  };
  thread_local std::unique_ptr<libdeflate_decompressor, Free> inflater(
      libdeflate_alloc_decompressor());
  // Deflate never grows data by more than a few bytes per 16 KiB block: a larger strip is not
  // read into memory here (libtiff reads what it needs of it).
  const tmsize_t size = TIFFRawStripSize(tif, strip);
  if (inflater == nullptr || size <= 0 || static_cast<size_t>(size) > want + want / 64 + 1024) {
    return false;
  }
  raw.resize(static_cast<size_t>(size));
  if (TIFFReadRawStrip(tif, strip, raw.data(), size) != size) return false;
  size_t made = 0;
  if (libdeflate_zlib_decompress(inflater.get(), raw.data(), raw.size(), dst, want, &made) !=
          LIBDEFLATE_SUCCESS ||
      made != want) {
    return false;
  }
  if (how == Inflating::kDifferenced) {
    if (type == PixelType::kUint8) UndoHorizontalDifferencing<uint8_t>(dst, rows, width);
    if (type == PixelType::kUint16) UndoHorizontalDifferencing<uint16_t>(dst, rows, width);
  }
  return true;
}

}  // namespace stackproc::core
