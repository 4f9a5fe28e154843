// The compressors of Zarr v2 chunks, as numcodecs names and configures them (the "compressor"
// of a .zarray): none, zlib, gzip, zstd and blosc (its lz4, lz4hc, zstd, zlib and blosclz inner
// codecs, with byte or bit shuffle). Every one is a standard stream, so zarr-python, zarr.js,
// TensorStore and the viewers built on them read what is written here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace stackproc::core {

enum class ZarrCodecId { kNone, kZlib, kGzip, kZstd, kBlosc };

struct ZarrCodec {
  ZarrCodecId id = ZarrCodecId::kNone;
  int level = 0;           // zlib/gzip 0-9, zstd 1-22, blosc's clevel 0-9
  std::string blosc_name;  // blosc's inner codec: "lz4", "lz4hc", "zstd", "zlib", "blosclz"
  int shuffle = 1;         // blosc: 0 none, 1 byte, 2 bit (numcodecs' NOSHUFFLE/SHUFFLE/BITSHUFFLE)
};

// "none", "zlib:level=1", "blosc:zstd,level=5,shuffle=byte": for messages and listings.
std::string ZarrCodecName(const ZarrCodec& codec);

// InvalidArgument for a blosc inner codec this build of blosc lacks, or a level out of range.
absl::Status ValidateZarrCodec(const ZarrCodec& codec);

// Compresses a chunk of `size` bytes of `item_size`-byte elements (blosc shuffles by it) into
// `out` (its capacity reused: writers keep one per thread or per chunk).
absl::Status EncodeChunk(const ZarrCodec& codec, const uint8_t* data, size_t size, size_t item_size,
                         std::vector<uint8_t>& out);

// Decompresses `encoded` into exactly `size` bytes at `out`. DataLoss when the stream is
// corrupt, truncated or holds another number of bytes; `name` (the chunk's file) heads the
// message.
absl::Status DecodeChunk(const ZarrCodec& codec, absl::Span<const uint8_t> encoded, uint8_t* out,
                         size_t size, const std::string& name);

}  // namespace stackproc::core
