// Zarr v3 arrays' zarr.json (zarr_metadata.h): https://zarr-specs.readthedocs.io/en/latest/v3/.
#include <algorithm>
#include <numeric>

#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "core/zarr/zarr_json.h"
#include "core/zarr/zarr_metadata.h"

namespace stackproc::core {
namespace {

using zarr_json::Bad;
using zarr_json::IntArray;
using zarr_json::IntAt;
using zarr_json::Json;
using zarr_json::StringAt;

constexpr const char* kCodecsRead = "transpose, bytes, blosc, zstd, gzip, crc32c, sharding_indexed";

std::string NameOf(const Json& codec) { return StringAt(codec, "name"); }

const Json& ConfigOf(const Json& codec) {
  static const Json kEmpty = Json::object();
  return codec.contains("configuration") && codec["configuration"].is_object()
             ? codec["configuration"]
             : kEmpty;
}

// The level at `key` of a codec's configuration, or `otherwise`.
int LevelOf(const Json& config, const char* key, int otherwise) {
  return static_cast<int>(IntAt(config, key).value_or(otherwise));
}

absl::StatusOr<ZarrCodec> ParseCompressor(const std::string& name, const Json& config,
                                          const std::string& file) {
  ZarrCodec codec;
  if (name == "gzip" || name == "zstd") {
    codec.id = name == "gzip" ? ZarrCodecId::kGzip : ZarrCodecId::kZstd;
    // zstd's level 0 is its default (3).
    codec.level = name == "gzip"                     ? LevelOf(config, "level", 1)
                  : LevelOf(config, "level", 0) == 0 ? 3
                                                     : LevelOf(config, "level", 0);
  } else if (name == "blosc") {
    const std::string shuffle = StringAt(config, "shuffle", "noshuffle");
    codec = {.id = ZarrCodecId::kBlosc,
             .level = LevelOf(config, "clevel", 5),
             .blosc_name = StringAt(config, "cname", "lz4"),
             .shuffle = shuffle == "bitshuffle" ? 2
                        : shuffle == "shuffle"  ? 1
                                                : 0};
  }
  if (absl::Status valid = ValidateZarrCodec(codec); !valid.ok()) return Bad(file, valid.message());
  return codec;
}

// A codec chain: [transpose], bytes or sharding_indexed, [a compressor], [crc32c]. Sharding
// (allowed in the array's chain, not in a shard's) fills meta's shards and inner chain.
absl::Status ParseChain(const Json& codecs, bool outer, ZarrArrayMeta& meta,
                        const std::string& file) {
  if (!codecs.is_array() || codecs.empty()) return Bad(file, "\"codecs\" must be a list");
  enum { kArray, kBytes, kCompressed, kChecked } stage = kArray;
  for (const Json& codec : codecs) {
    const std::string name = NameOf(codec);
    const Json& config = ConfigOf(codec);
    const auto misplaced = [&] {
      return Bad(file,
                 absl::StrCat("codec \"", name, "\" where it cannot come in ", codecs.dump()));
    };
    if (name == "transpose") {
      if (stage != kArray || !meta.transpose.empty()) return misplaced();
      const Json order = config.value("order", Json());
      std::vector<int> perm(meta.shape.size());
      std::iota(perm.begin(), perm.end(), 0);
      if (order == "F") std::reverse(perm.begin(), perm.end());
      if (order.is_array()) {
        perm.clear();
        for (const Json& i : order) perm.push_back(i.is_number_integer() ? i.get<int>() : -1);
      }
      std::vector<int> sorted = perm;
      std::sort(sorted.begin(), sorted.end());
      for (size_t i = 0; i < sorted.size(); ++i) {
        if (sorted.size() != meta.shape.size() || sorted[i] != static_cast<int>(i)) {
          return Bad(file, absl::StrCat("transpose order ", order.dump(),
                                        " is not an order of the array's axes"));
        }
      }
      if (!std::is_sorted(perm.begin(), perm.end())) meta.transpose = perm;
    } else if (name == "bytes") {
      if (stage != kArray) return misplaced();
      meta.big_endian =
          StringAt(config, "endian", "little") == "big" && meta.type != PixelType::kUint8;
      stage = kBytes;
    } else if (name == "sharding_indexed") {
      if (stage != kArray || !outer || !meta.transpose.empty()) {
        return Bad(file,
                   "sharding_indexed only as the array's first codec (nested sharding, or "
                   "sharding after transpose, are not read)");
      }
      meta.shards = meta.chunks;
      STACKPROC_ASSIGN_OR_RETURN(meta.chunks, IntArray(config, "chunk_shape", file));
      if (meta.chunks.size() != meta.shards.size()) {
        return Bad(file, "the shards' chunk_shape has another number of axes than the array");
      }
      for (size_t i = 0; i < meta.chunks.size(); ++i) {
        if (meta.chunks[i] < 1 || meta.shards[i] % meta.chunks[i] != 0) {
          return Bad(file, absl::StrCat("shards [", absl::StrJoin(meta.shards, ", "),
                                        "] are not a multiple of their chunks [",
                                        absl::StrJoin(meta.chunks, ", "), "]"));
        }
      }
      STACKPROC_RETURN_IF_ERROR(ParseChain(config.value("codecs", Json()), false, meta, file));
      const std::string where = StringAt(config, "index_location", "end");
      if (where != "start" && where != "end") {
        return Bad(file, absl::StrCat("index_location \"", where, "\""));
      }
      meta.index_at_start = where == "start";
      const Json index = config.value("index_codecs", Json());
      const Json plain = {{{"name", "bytes"}, {"configuration", {{"endian", "little"}}}}};
      Json checked = plain;
      checked.push_back({{"name", "crc32c"}});
      const auto without_config = [](Json chain) {  // {"name": "crc32c", "configuration": {}}
        for (Json& c : chain) {
          if (c.is_object() && c.contains("configuration") && c["configuration"].empty()) {
            c.erase("configuration");
          }
        }
        return chain;
      };
      if (without_config(index) == checked) {
        meta.index_crc32c = true;
      } else if (without_config(index) == plain) {
        meta.index_crc32c = false;
      } else {
        return Bad(file, absl::StrCat("index_codecs ", index.dump(),
                                      ": stackproc reads little-endian indexes with or without "
                                      "crc32c"));
      }
      stage = kChecked;
    } else if (name == "gzip" || name == "zstd" || name == "blosc") {
      if (stage != kBytes) return misplaced();
      STACKPROC_ASSIGN_OR_RETURN(meta.codec, ParseCompressor(name, config, file));
      stage = kCompressed;
    } else if (name == "crc32c") {
      if (stage != kBytes && stage != kCompressed) return misplaced();
      meta.chunk_crc32c = true;
      stage = kChecked;
    } else {
      return Bad(file, absl::StrCat("codec ", codec.dump(), " is not one stackproc reads (",
                                    kCodecsRead, ")"));
    }
  }
  if (stage == kArray) return Bad(file, "codecs without bytes or sharding_indexed");
  return absl::OkStatus();
}

Json CompressorJson(const ZarrCodec& codec, size_t item_size) {
  switch (codec.id) {
    case ZarrCodecId::kGzip:
    case ZarrCodecId::kZlib:  // not a v3 codec: ZarrCodecFor gives gzip for v3
      return {{"name", "gzip"}, {"configuration", {{"level", codec.level}}}};
    case ZarrCodecId::kZstd:
      return {{"name", "zstd"}, {"configuration", {{"level", codec.level}, {"checksum", false}}}};
    case ZarrCodecId::kBlosc:
      return {{"name", "blosc"},
              {"configuration",
               {{"cname", codec.blosc_name},
                {"clevel", codec.level},
                {"shuffle", codec.shuffle == 2   ? "bitshuffle"
                            : codec.shuffle == 1 ? "shuffle"
                                                 : "noshuffle"},
                {"typesize", item_size},
                {"blocksize", 0}}}};
    case ZarrCodecId::kNone:
      break;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<ZarrArrayMeta> ParseZarrJson(absl::string_view text, const std::string& name) {
  STACKPROC_ASSIGN_OR_RETURN(Json json, zarr_json::ParseJson(text, name));
  if (IntAt(json, "zarr_format") != 3 || StringAt(json, "node_type") != "array") {
    return Bad(name, "not a Zarr v3 array (\"zarr_format\": 3, \"node_type\": \"array\")");
  }
  ZarrArrayMeta meta;
  meta.zarr_format = 3;
  STACKPROC_ASSIGN_OR_RETURN(meta.shape, IntArray(json, "shape", name));
  const std::string type = json.value("data_type", Json()).is_string()
                               ? json["data_type"].get<std::string>()
                               : json.value("data_type", Json()).dump();
  // Zarr v3's names of these types are stackproc's.
  absl::StatusOr<PixelType> pixel = ParsePixelType(type);
  if (!pixel.ok()) {
    return Bad(name,
               absl::StrCat("data_type \"", type, "\": stackproc reads uint8, uint16 and float32"));
  }
  meta.type = *pixel;
  const Json grid = json.value("chunk_grid", Json());
  if (NameOf(grid) != "regular") {
    return Bad(name, absl::StrCat("chunk_grid ", grid.dump(), ": stackproc reads regular grids"));
  }
  STACKPROC_ASSIGN_OR_RETURN(meta.chunks, IntArray(ConfigOf(grid), "chunk_shape", name));
  if (meta.chunks.size() != meta.shape.size()) {
    return Bad(name, absl::StrCat("chunk_shape [", absl::StrJoin(meta.chunks, ","),
                                  "] does not match shape [", absl::StrJoin(meta.shape, ","), "]"));
  }
  if (std::find(meta.chunks.begin(), meta.chunks.end(), 0) != meta.chunks.end()) {
    return Bad(name, "a chunk length of 0");
  }
  const Json keys = json.value("chunk_key_encoding", Json());
  const std::string encoding = NameOf(keys);
  if (encoding != "default" && encoding != "v2") {
    return Bad(name, absl::StrCat("chunk_key_encoding ", keys.dump(), ": default or v2"));
  }
  meta.key_prefix = encoding == "default";
  const std::string separator =
      StringAt(ConfigOf(keys), "separator", meta.key_prefix ? "/" : ".");
  if (separator != "/" && separator != ".") {
    return Bad(name, absl::StrCat("chunk key separator \"", separator, "\""));
  }
  meta.nested = separator == "/";
  if (json.contains("storage_transformers") && !json["storage_transformers"].empty()) {
    return Bad(name, "storage_transformers: stackproc reads arrays without");
  }
  STACKPROC_RETURN_IF_ERROR(ParseChain(json.value("codecs", Json()), true, meta, name));
  STACKPROC_ASSIGN_OR_RETURN(
      meta.fill_value, zarr_json::ParseFill(json.value("fill_value", Json()), meta.type, name));
  return meta;
}

std::string FormatZarrJson(const ZarrArrayMeta& meta, const std::vector<std::string>& axes) {
  const size_t pixel = BytesPerPixel(meta.type);
  Json chunk_codecs = {{{"name", "bytes"}, {"configuration", {{"endian", "little"}}}}};
  if (Json compressor = CompressorJson(meta.codec, pixel); !compressor.is_null()) {
    chunk_codecs.push_back(std::move(compressor));
  }
  Json codecs = chunk_codecs;
  if (!meta.shards.empty()) {
    Json index = {{{"name", "bytes"}, {"configuration", {{"endian", "little"}}}},
                  {{"name", "crc32c"}}};
    codecs = {{{"name", "sharding_indexed"},
               {"configuration",
                {{"chunk_shape", meta.chunks},
                 {"codecs", chunk_codecs},
                 {"index_codecs", index},
                 {"index_location", "end"}}}}};
  }
  Json json = {
      {"zarr_format", 3},
      {"node_type", "array"},
      {"shape", meta.shape},
      {"data_type", PixelTypeName(meta.type)},
      {"chunk_grid", {{"name", "regular"}, {"configuration", {{"chunk_shape", meta.grid()}}}}},
      {"chunk_key_encoding", {{"name", "default"}, {"configuration", {{"separator", "/"}}}}},
      {"fill_value", 0},
      {"codecs", codecs},
      {"attributes", Json::object()},
      {"dimension_names", axes}};
  return json.dump(2) + "\n";
}

}  // namespace stackproc::core
