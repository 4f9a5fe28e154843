#include "core/tiff/compression.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/base/status_macros.h"
#include "core/tiff/tiff_writer.h"

namespace stackproc::core {

absl::string_view CompressionName(Compression compression) {
  switch (compression) {
    case Compression::kDefault:
      return "default";
    case Compression::kNone:
      return "none";
    case Compression::kDeflate:
      return "deflate";
    case Compression::kZstd:
      return "zstd";
    case Compression::kLzw:
      return "lzw";
    case Compression::kLz4:
      return "lz4";
  }
  return "none";
}

absl::StatusOr<Compression> ParseCompression(absl::string_view name) {
  for (Compression c : kAllCompressions) {
    if (name == CompressionName(c)) return c;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown compression '", name, "' (use default, none, deflate, zstd, lzw or lz4)"));
}

absl::string_view PredictorName(Predictor predictor) {
  switch (predictor) {
    case Predictor::kDefault:
      return "default";
    case Predictor::kNone:
      return "none";
    case Predictor::kDifferencing:
      return "differencing";
  }
  return "default";
}

namespace {

// The levels a codec takes: [1, most]; 0 when it takes none.
int MostLevel(Compression compression) {
  switch (compression) {
    case Compression::kDeflate:
    case Compression::kLz4:
      return 9;
    case Compression::kZstd:
      return 19;
    default:
      return 0;
  }
}

}  // namespace

absl::Status CheckCompressionLevel(Compression compression, int level) {
  if (level == 0) return absl::OkStatus();
  const int most = MostLevel(compression);
  if (most == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("compression ", CompressionName(compression),
                     " takes no level (levels: deflate 1-9, zstd 1-19, lz4 1-9)"));
  }
  if (level < 1 || level > most) {
    return absl::InvalidArgumentError(absl::StrCat("compression ", CompressionName(compression),
                                                   ": level ", level, " is outside 1-", most));
  }
  return absl::OkStatus();
}

absl::Status CheckPredictor(Compression compression, Predictor predictor) {
  if (predictor == Predictor::kDefault || compression == Compression::kDeflate ||
      compression == Compression::kZstd || compression == Compression::kLzw) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("compression ", CompressionName(compression),
                   " takes no predictor (a TIFF's deflate, zstd and lzw do)"));
}

absl::Status ParseCompressionText(absl::string_view text, WriteOptions& write) {
  const size_t colon = text.find(':');
  STACKPROC_ASSIGN_OR_RETURN(Compression compression, ParseCompression(text.substr(0, colon)));
  int level = 0;
  Predictor predictor = Predictor::kDefault;
  const auto malformed = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("compression '", text,
                     "': write NAME or NAME:level=N,predictor=none|differencing, e.g. "
                     "deflate:level=9"));
  };
  if (colon != absl::string_view::npos) {
    for (absl::string_view pair : absl::StrSplit(text.substr(colon + 1), ',')) {
      const std::vector<absl::string_view> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
      if (kv.size() != 2) return malformed();
      if (kv[0] == "level") {
        if (!absl::SimpleAtoi(kv[1], &level) || level < 1) return malformed();
      } else if (kv[0] == "predictor" && kv[1] == PredictorName(Predictor::kNone)) {
        predictor = Predictor::kNone;
      } else if (kv[0] == "predictor" && kv[1] == PredictorName(Predictor::kDifferencing)) {
        predictor = Predictor::kDifferencing;
      } else {
        return malformed();
      }
    }
  }
  STACKPROC_RETURN_IF_ERROR(CheckCompressionLevel(compression, level));
  STACKPROC_RETURN_IF_ERROR(CheckPredictor(compression, predictor));
  write.compression = compression;
  write.compression_level = level;
  write.predictor = predictor;
  return absl::OkStatus();
}

std::string CompressionText(Compression compression, int level, Predictor predictor) {
  std::vector<std::string> keys;
  if (level != 0) keys.push_back(absl::StrCat("level=", level));
  if (predictor != Predictor::kDefault) {
    keys.push_back(absl::StrCat("predictor=", PredictorName(predictor)));
  }
  return keys.empty() ? std::string(CompressionName(compression))
                      : absl::StrCat(CompressionName(compression), ":", absl::StrJoin(keys, ","));
}

int CompressionLevel(Compression compression, int level) {
  if (level != 0) return level;
  // On 12-bit camera-like data (tests/bench/levels.py, docs/benchmarks.md) deflate and zstd at
  // level 1 are 3.9x and 3.5x faster than at 6 and 3, for the same size or smaller; lz4 at 5 is
  // as fast as at 1 and smaller.
  switch (compression) {
    case Compression::kDeflate:
      return 1;
    case Compression::kZstd:
      return 1;
    case Compression::kLz4:
      return 5;
    default:
      return 0;
  }
}

}  // namespace stackproc::core
