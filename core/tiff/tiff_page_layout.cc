#include "core/tiff/tiff_page_layout.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"

namespace stackproc::core {
namespace {

constexpr uint16_t kSupportedCompressions[] = {COMPRESSION_NONE,          COMPRESSION_LZW,
                                               COMPRESSION_ADOBE_DEFLATE, COMPRESSION_DEFLATE,
                                               COMPRESSION_PACKBITS,      COMPRESSION_ZSTD};

// Samples per pixel above this are not plausible (OpenCV's most channels in one matrix).
constexpr uint16_t kMaxSamples = 512;

// Sides of one tile above this are not plausible for any writer we know of.
constexpr uint32_t kMaxTileSide = 1 << 14;

absl::StatusOr<PixelType> PagePixelType(TIFF* tif, const std::string& path, int64_t page) {
  uint16_t bps = 1, format = SAMPLEFORMAT_UINT;
  TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bps);
  TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &format);
  if (format == SAMPLEFORMAT_UINT && bps == 8) return PixelType::kUint8;
  if (format == SAMPLEFORMAT_UINT && bps == 16) return PixelType::kUint16;
  if (format == SAMPLEFORMAT_IEEEFP && bps == 32) return PixelType::kFloat32;
  const char* kind = format == SAMPLEFORMAT_UINT     ? "unsigned"
                     : format == SAMPLEFORMAT_INT    ? "signed"
                     : format == SAMPLEFORMAT_IEEEFP ? "float"
                                                     : "other";
  return PageError(path, page,
                   absl::StrCat(bps, "-bit ", kind,
                                " samples are not supported (use uint8, uint16 or float32)"));
}

}  // namespace

absl::Status PageError(const std::string& path, int64_t page, absl::string_view reason,
                       std::string libtiff) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": page ", page, ": ", reason,
                                                 libtiff.empty() ? "" : " (", libtiff,
                                                 libtiff.empty() ? "" : ")"));
}

absl::StatusOr<PageLayout> ReadLayout(TIFF* tif, const std::string& path, int64_t page,
                                      const StackLimits& limits) {
  PageLayout layout;
  if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &layout.width) ||
      !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &layout.height)) {
    return PageError(path, page, "no image width or length");
  }
  if (layout.width == 0 || layout.height == 0) return PageError(path, page, "empty image");
  if (layout.width > limits.max_side || layout.height > limits.max_side) {
    return limits.SideRefused(absl::StrCat(path, ": page ", page), layout.width, layout.height);
  }
  STACKPROC_ASSIGN_OR_RETURN(layout.type, PagePixelType(tif, path, page));
  TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &layout.samples);
  uint16_t planar = PLANARCONFIG_CONTIG;
  TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &planar);
  layout.separate = planar == PLANARCONFIG_SEPARATE && layout.samples > 1;
  if (layout.samples == 0 || layout.samples > kMaxSamples) {
    return PageError(
        path, page,
        absl::StrCat(layout.samples, " samples per pixel (at most ", kMaxSamples, " are read)"));
  }
  TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &layout.photometric);
  const bool grey =
      layout.photometric == PHOTOMETRIC_MINISBLACK || layout.photometric == PHOTOMETRIC_MINISWHITE;
  if (!grey && !(layout.photometric == PHOTOMETRIC_RGB && layout.samples >= 3)) {
    return PageError(path, page,
                     absl::StrCat("photometric interpretation ", layout.photometric,
                                  " is not supported (grey of any samples per pixel, or RGB: "
                                  "palette, YCbCr and CMYK pages are not)"));
  }
  TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &layout.compression);
  if (std::find(std::begin(kSupportedCompressions), std::end(kSupportedCompressions),
                layout.compression) == std::end(kSupportedCompressions) ||
      !TIFFIsCODECConfigured(layout.compression)) {
    const TIFFCodec* codec = TIFFFindCODEC(layout.compression);
    return PageError(path, page,
                     absl::StrCat("compression ", codec ? codec->name : "", codec ? " " : "", "(",
                                  layout.compression,
                                  ") is not supported (supported: none, LZW, Deflate, "
                                  "PackBits, ZSTD)"));
  }
  layout.tiled = TIFFIsTiled(tif);
  if (layout.tiled) {
    if (!TIFFGetField(tif, TIFFTAG_TILEWIDTH, &layout.tile_width) ||
        !TIFFGetField(tif, TIFFTAG_TILELENGTH, &layout.tile_height) || layout.tile_width == 0 ||
        layout.tile_height == 0 || layout.tile_width % 16 != 0 || layout.tile_height % 16 != 0 ||
        layout.tile_width > kMaxTileSide || layout.tile_height > kMaxTileSide) {
      return PageError(
          path, page,
          absl::StrCat("implausible tile size ", layout.tile_width, "x", layout.tile_height));
    }
  } else {
    TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &layout.rows_per_strip);
    if (layout.rows_per_strip == 0) return PageError(path, page, "RowsPerStrip is 0");
    layout.rows_per_strip = std::min(layout.rows_per_strip, layout.height);
  }
  return layout;
}

absl::Status CheckStriles(TIFF* tif, const std::string& path, int64_t page,
                          const PageLayout& layout, uint64_t file_size) {
  // Bytes of one pixel in a strile: every sample, unless each has striles of its own.
  const uint64_t bpp = BytesPerPixel(layout.type) * (layout.separate ? 1 : layout.samples);
  // Striles covering the page once (once for each sample when each has striles of its own).
  uint64_t per_plane;
  if (layout.tiled) {
    per_plane = uint64_t{(layout.width + layout.tile_width - 1) / layout.tile_width} *
                ((layout.height + layout.tile_height - 1) / layout.tile_height);
  } else {
    per_plane = (layout.height + layout.rows_per_strip - 1) / layout.rows_per_strip;
  }
  const uint64_t expected_count = per_plane * (layout.separate ? layout.samples : 1);
  uint64_t count = layout.tiled ? TIFFNumberOfTiles(tif) : TIFFNumberOfStrips(tif);
  if (count != expected_count) {
    return PageError(path, page,
                     absl::StrCat("has ", count, layout.tiled ? " tiles" : " strips",
                                  ", its size needs ", expected_count));
  }
  for (uint32_t i = 0; i < count; ++i) {
    int err = 0;
    uint64_t offset = TIFFGetStrileOffsetWithErr(tif, i, &err);
    uint64_t bytes = err ? 0 : TIFFGetStrileByteCountWithErr(tif, i, &err);
    const char* what = layout.tiled ? "tile " : "strip ";
    if (err || bytes == 0) {
      return PageError(path, page, absl::StrCat(what, i, " has no data"));
    }
    if (offset > file_size || bytes > file_size - offset) {
      return PageError(
          path, page,
          absl::StrCat(what, i, " ends at byte ", offset + bytes, " past the end of the file (",
                       file_size, " bytes): truncated or corrupt"));
    }
    if (layout.compression == COMPRESSION_NONE) {
      uint64_t need;
      if (layout.tiled) {
        need = uint64_t{layout.tile_width} * layout.tile_height * bpp;
      } else {
        const uint64_t row0 = (i % per_plane) * uint64_t{layout.rows_per_strip};
        const uint64_t rows = std::min<uint64_t>(layout.rows_per_strip, layout.height - row0);
        need = rows * layout.width * bpp;
      }
      if (bytes < need) {
        return PageError(path, page,
                         absl::StrCat(what, i, " holds ", bytes, " bytes but needs ", need));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace stackproc::core
