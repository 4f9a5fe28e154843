#include "core/tiff/strip_decoder.h"

#include <isa-l/igzip_lib.h>

#include <cstdint>

namespace stackproc::core {
namespace {

// Each sample was differenced from the same sample of the pixel before it.
template <typename T>
void UndoHorizontalDifferencing(uint8_t* dst, size_t rows, size_t width, size_t samples) {
  const size_t values = width * samples;
  for (size_t r = 0; r < rows; ++r) {
    T* row = reinterpret_cast<T*>(dst) + r * values;
    for (size_t x = samples; x < values; ++x) row[x] = static_cast<T>(row[x] + row[x - samples]);
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
                  uint16_t samples, size_t rows, uint8_t* dst, size_t want,
                  std::vector<uint8_t>& raw) {
  // Deflate never grows data by more than a few bytes per 16 KiB block: a larger strip is not
  // read into memory here (libtiff reads what it needs of it). ISA-L counts in 32 bits: a strip
  // near 4 GiB is libtiff's too.
  const size_t most = want + want / 64 + 1024;
  const tmsize_t size = TIFFRawStripSize(tif, strip);
  if (size <= 0 || static_cast<size_t>(size) > most || most > UINT32_MAX) return false;
  raw.resize(static_cast<size_t>(size));
  if (TIFFReadRawStrip(tif, strip, raw.data(), size) != size) return false;
  // The whole zlib stream, its Adler-32 checked, filling exactly the strip's rows.
  inflate_state state;
  isal_inflate_init(&state);
  state.hist_bits = 0;  // the full window, whatever the stack held (as for the encoder)
  state.crc_flag = ISAL_ZLIB;
  state.next_in = raw.data();
  state.avail_in = static_cast<uint32_t>(raw.size());
  state.next_out = dst;
  state.avail_out = static_cast<uint32_t>(want);
  if (isal_inflate_stateless(&state) != ISAL_DECOMP_OK || state.total_out != want) return false;
  if (how == Inflating::kDifferenced) {
    if (type == PixelType::kUint8) UndoHorizontalDifferencing<uint8_t>(dst, rows, width, samples);
    if (type == PixelType::kUint16) UndoHorizontalDifferencing<uint16_t>(dst, rows, width, samples);
  }
  return true;
}

}  // namespace stackproc::core
