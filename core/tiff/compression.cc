#include "core/tiff/compression.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/base/status_macros.h"
#include "core/tiff/tiff_writer.h"

namespace stackproc::core {

const CodecInfo& CodecOf(Compression compression) {
  for (const CodecInfo& codec : kCodecs) {
    if (codec.compression == compression) return codec;
  }
  return kCodecs[0];
}

std::string CodecNames(bool CodecInfo::*column, bool with_default, absl::string_view separator) {
  std::vector<absl::string_view> names;
  for (const CodecInfo& codec : kCodecs) {
    if ((column == nullptr || codec.*column) &&
        (with_default || codec.compression != Compression::kDefault)) {
      names.push_back(codec.name);
    }
  }
  return absl::StrJoin(names, separator);
}

std::string CodecLevels() {
  std::vector<std::string> levels;
  for (const CodecInfo& codec : kCodecs) {
    if (codec.most_level > 0) levels.push_back(absl::StrCat(codec.name, " 1-", codec.most_level));
  }
  return absl::StrJoin(levels, ", ");
}

absl::string_view CompressionName(Compression compression) { return CodecOf(compression).name; }

absl::StatusOr<Compression> ParseCompression(absl::string_view name) {
  for (const CodecInfo& codec : kCodecs) {
    if (name == codec.name) return codec.compression;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown compression '", name, "' (use ", CodecNames(nullptr, true), ")"));
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

absl::Status CheckCompressionLevel(Compression compression, int level) {
  if (level == 0) return absl::OkStatus();
  const int most = CodecOf(compression).most_level;
  if (most == 0) {
    return absl::InvalidArgumentError(absl::StrCat("compression ", CompressionName(compression),
                                                   " takes no level (levels: ", CodecLevels(),
                                                   ")"));
  }
  if (level < 1 || level > most) {
    return absl::InvalidArgumentError(absl::StrCat("compression ", CompressionName(compression),
                                                   ": level ", level, " is outside 1-", most));
  }
  return absl::OkStatus();
}

absl::Status CheckPredictor(Compression compression, Predictor predictor) {
  if (predictor == Predictor::kDefault || CodecOf(compression).predictor) return absl::OkStatus();
  std::vector<absl::string_view> takers;
  for (const CodecInfo& codec : kCodecs) {
    if (codec.predictor) takers.push_back(codec.name);
  }
  return absl::InvalidArgumentError(absl::StrCat("compression ", CompressionName(compression),
                                                 " takes no predictor (a TIFF's ",
                                                 absl::StrJoin(takers, ", "), " do)"));
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
  return level != 0 ? level : CodecOf(compression).default_level;
}

}  // namespace stackproc::core
