// How outputs are compressed, and the one --compression grammar every program and the API
// check take it in.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stackproc::core {

// How an output is compressed. kDefault is the output format's own: none for TIFF and plane
// sequences, blosc-lz4 for OME-Zarr (zarr_io.h: ZarrCodecFor). lzw is TIFF's only, lz4
// (blosc-lz4) OME-Zarr's only.
enum class Compression { kDefault, kNone, kDeflate, kZstd, kLzw, kLz4 };
inline constexpr Compression kAllCompressions[] = {Compression::kDefault, Compression::kNone,
                                                   Compression::kDeflate, Compression::kZstd,
                                                   Compression::kLzw,     Compression::kLz4};

// "default", "none", "deflate", "zstd", "lzw", "lz4".
absl::string_view CompressionName(Compression compression);
absl::StatusOr<Compression> ParseCompression(absl::string_view name);

// What a compressed TIFF's strips hold before the codec: the pixels, or each pixel's difference
// to its left neighbour (TIFF Predictor 2 for integers, 3, floating-point, for float32), which
// compresses smooth 16-bit images smaller but which not every reader undoes: ImageJ/Fiji
// (1.53) undo it only for 8/16-bit LZW. kDefault is what every common reader, ImageJ included,
// reads right: differencing for 8/16-bit LZW and for zstd (which ImageJ does not open at all),
// none for deflate and for float32 LZW.
enum class Predictor { kDefault, kNone, kDifferencing };
// "default", "none", "differencing".
absl::string_view PredictorName(Predictor predictor);

struct WriteOptions;  // tiff_writer.h
// The --compression grammar: NAME, or NAME:KEY=VALUE[,KEY=VALUE] with the keys level (deflate 1-9
// on zlib's scale: a TIFF's 8/16-bit strips at 1-3 by ISA-L's igzip, at 4-9 by libdeflate; zstd
// 1-19; lz4 1-9, blosc's clevel; default, none and lzw take none) and, for TIFF's deflate, zstd
// and lzw, predictor (none or differencing). Level 0 is the codec's default (CompressionLevel).
// Sets `write`'s compression, compression_level and predictor; InvalidArgument naming what is
// wrong, `write` untouched.
absl::Status ParseCompressionText(absl::string_view text, WriteOptions& write);
// The text back: "deflate:level=9,predictor=differencing", or the name alone for level 0 and
// the default predictor.
std::string CompressionText(Compression compression, int level,
                            Predictor predictor = Predictor::kDefault);
// InvalidArgument unless `predictor` is the default or `compression` is one that takes one
// (deflate, zstd, lzw).
absl::Status CheckPredictor(Compression compression, Predictor predictor);
// InvalidArgument unless `level` is 0 or in `compression`'s range (above).
absl::Status CheckCompressionLevel(Compression compression, int level);
// The level a codec runs at for `level` (0: deflate 1, zstd 1, lz4 5: chosen from
// docs/benchmarks.md#compression-levels).
int CompressionLevel(Compression compression, int level);

}  // namespace stackproc::core
