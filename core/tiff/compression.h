// How outputs are compressed, and the one --compression grammar every program and the API
// check take it in.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stackproc::core {

// How an output is compressed. kDefault is the output format's own: none for TIFF and plane
// sequences, blosc-lz4 for OME-Zarr (zarr_sink.h: ZarrCodecFor).
enum class Compression { kDefault, kNone, kDeflate, kZstd, kLzw, kLz4 };

// One row per codec: its name, its levels, and who writes it. Every check, help text, sink and
// the API's conversion reads this table.
struct CodecInfo {
  Compression compression;
  absl::string_view name;
  int most_level = 0;      // levels 1..most_level; 0: it takes none
  int default_level = 0;   // what level 0 runs at (docs/benchmarks.md#compression-levels)
  bool predictor = false;  // a TIFF's predictor applies (Predictor)
  bool tiff = false;       // TIFF files and plane sequences write it
  bool zarr = false;       // OME-Zarr writes it
  bool imagej = false;     // ImageJ/Fiji (1.53) open a TIFF written with it
};
// On 12-bit camera-like data (tests/bench/levels.py, docs/benchmarks.md) deflate and zstd at
// level 1 are 3.9x and 3.5x faster than at 6 and 3, for the same size or smaller; lz4 at 5 is as
// fast as at 1 and smaller.
inline constexpr CodecInfo kCodecs[] = {
    // compression         name       levels     predictor tiff  zarr   imagej
    {Compression::kDefault, "default", 0, 0, false, true, true, true},
    {Compression::kNone, "none", 0, 0, false, true, true, true},
    {Compression::kDeflate, "deflate", 9, 1, true, true, true, true},
    {Compression::kZstd, "zstd", 19, 1, true, true, true, false},
    {Compression::kLzw, "lzw", 0, 0, true, true, false, true},
    {Compression::kLz4, "lz4", 9, 5, false, false, true, false},
};
const CodecInfo& CodecOf(Compression compression);
// The names of the codecs with `column` set (&CodecInfo::tiff, ::zarr, ::imagej; nullptr: all),
// `separator` between them, "default" left out unless `with_default`.
std::string CodecNames(bool CodecInfo::*column, bool with_default = false,
                       absl::string_view separator = ", ");
// "deflate 1-9, zstd 1-19, lz4 1-9": the codecs that take a level and their ranges.
std::string CodecLevels();

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
// The --compression grammar: NAME, or NAME:KEY=VALUE[,KEY=VALUE] with the keys level (kCodecs:
// deflate on zlib's scale, a TIFF's 8/16-bit strips at 1-3 by ISA-L's igzip (one level), at 4-9 by
// libdeflate; lz4's is blosc's clevel) and, for the codecs a predictor applies to, predictor
// (none or differencing). Level 0 is the codec's default (CompressionLevel).
// Sets `write`'s compression, compression_level and predictor; InvalidArgument naming what is
// wrong, `write` untouched.
absl::Status ParseCompressionText(absl::string_view text, WriteOptions& write);
// The text back: "deflate:level=9,predictor=differencing", or the name alone for level 0 and
// the default predictor.
std::string CompressionText(Compression compression, int level,
                            Predictor predictor = Predictor::kDefault);
// InvalidArgument unless `predictor` is the default or `compression` is one that takes one.
absl::Status CheckPredictor(Compression compression, Predictor predictor);
// InvalidArgument unless `level` is 0 or in `compression`'s range (kCodecs).
absl::Status CheckCompressionLevel(Compression compression, int level);
// The level a codec runs at for `level` (0: its default_level).
int CompressionLevel(Compression compression, int level);

}  // namespace stackproc::core
