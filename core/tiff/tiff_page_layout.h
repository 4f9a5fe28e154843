// One page of a TIFF as the reader validates it: its layout from its directory (size, type,
// codec, strips or tiles) and whether its strip or tile tables fit the file. Internal to core/
// (tiff_reader.cc).
#pragma once

#include <tiffio.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/stack/pixel_type.h"
#include "core/tiff/tiff_reader.h"

namespace stackproc::core {

// InvalidArgument "PATH: page N: REASON (libtiff's words)".
absl::Status PageError(const std::string& path, int64_t page, absl::string_view reason,
                       std::string libtiff = "");

// The layout of one page, as read from its directory.
struct PageLayout {
  uint32_t width = 0;
  uint32_t height = 0;
  PixelType type = PixelType::kUint8;  // of each sample
  uint16_t samples = 1;                // per pixel: RGB's 3, a multi-channel page's n
  bool separate = false;               // samples in planes of their own (PlanarConfiguration 2)
  uint16_t photometric = PHOTOMETRIC_MINISBLACK;
  uint16_t compression = COMPRESSION_NONE;
  bool tiled = false;
  uint32_t rows_per_strip = 0;  // striped pages
  uint32_t tile_width = 0;      // tiled pages
  uint32_t tile_height = 0;
};

// Page `page`'s layout, or why the reader does not take it (a codec, a type, a colour model, a
// size over `limits`). Grey pages of one or more samples and RGB(A) pages are taken, chunky or
// planar; palette, YCbCr (JPEG's) and CMYK ones are not.
absl::StatusOr<PageLayout> ReadLayout(TIFF* tif, const std::string& path, int64_t page,
                                      const StackLimits& limits);

// Strip/tile tables must describe every strile, inside the file; uncompressed striles must hold
// all their pixels. This is what catches truncated files before anything is allocated.
absl::Status CheckStriles(TIFF* tif, const std::string& path, int64_t page,
                          const PageLayout& layout, uint64_t file_size);

}  // namespace stackproc::core
