#include "core/zarr/zarr_codec.h"

#include <blosc.h>
#include <libdeflate.h>
#include <zstd.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/tiff/strip_encoder.h"

namespace stackproc::core {
namespace {

absl::Status Corrupt(const std::string& name, absl::string_view why) {
  return absl::DataLossError(absl::StrCat(name, ": ", why));
}

absl::Status Inflate(const ZarrCodec& codec, absl::Span<const uint8_t> in, uint8_t* out,
                     size_t size, const std::string& name) {
  const std::unique_ptr<libdeflate_decompressor, decltype(&libdeflate_free_decompressor)>
      decompressor(libdeflate_alloc_decompressor(), &libdeflate_free_decompressor);
  if (decompressor == nullptr) {
    return absl::ResourceExhaustedError("no memory for a deflate decoder");
  }
  size_t n = 0;
  const libdeflate_result result =
      codec.id == ZarrCodecId::kGzip
          ? libdeflate_gzip_decompress(decompressor.get(), in.data(), in.size(), out, size, &n)
          : libdeflate_zlib_decompress(decompressor.get(), in.data(), in.size(), out, size, &n);
  if (result == LIBDEFLATE_INSUFFICIENT_SPACE) {
    return Corrupt(name, absl::StrCat("holds more than the chunk's ", size, " bytes"));
  }
  if (result != LIBDEFLATE_SUCCESS) return Corrupt(name, "not a valid zlib/gzip stream");
  if (n != size) return Corrupt(name, absl::StrCat("holds ", n, " bytes, not the chunk's ", size));
  return absl::OkStatus();
}

}  // namespace

std::string ZarrCodecName(const ZarrCodec& codec) {
  switch (codec.id) {
    case ZarrCodecId::kNone:
      return "none";
    case ZarrCodecId::kZlib:
      return absl::StrCat("zlib:level=", codec.level);
    case ZarrCodecId::kGzip:
      return absl::StrCat("gzip:level=", codec.level);
    case ZarrCodecId::kZstd:
      return absl::StrCat("zstd:level=", codec.level);
    case ZarrCodecId::kBlosc:
      return absl::StrCat("blosc:", codec.blosc_name, ",level=", codec.level, ",shuffle=",
                          codec.shuffle == 0   ? "none"
                          : codec.shuffle == 1 ? "byte"
                                               : "bit");
  }
  return "?";
}

absl::Status ValidateZarrCodec(const ZarrCodec& codec) {
  const auto out_of_range = [&](int lo, int hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(ZarrCodecName(codec), ": the level must be ", lo, "-", hi));
  };
  switch (codec.id) {
    case ZarrCodecId::kNone:
      return absl::OkStatus();
    case ZarrCodecId::kZlib:
    case ZarrCodecId::kGzip:
      return codec.level < 0 || codec.level > 9 ? out_of_range(0, 9) : absl::OkStatus();
    case ZarrCodecId::kZstd:
      return codec.level < ZSTD_minCLevel() || codec.level > ZSTD_maxCLevel()
                 ? out_of_range(ZSTD_minCLevel(), ZSTD_maxCLevel())
                 : absl::OkStatus();
    case ZarrCodecId::kBlosc:
      if (blosc_compname_to_compcode(codec.blosc_name.c_str()) < 0) {
        return absl::InvalidArgumentError(absl::StrCat("blosc codec \"", codec.blosc_name,
                                                       "\" is not in this build of blosc (",
                                                       blosc_list_compressors(), ")"));
      }
      if (codec.shuffle < 0 || codec.shuffle > 2) {
        return absl::InvalidArgumentError(
            absl::StrCat("blosc shuffle ", codec.shuffle, " (0 none, 1 byte, 2 bit)"));
      }
      return codec.level < 0 || codec.level > 9 ? out_of_range(0, 9) : absl::OkStatus();
  }
  return absl::InvalidArgumentError("unknown codec");
}

absl::Status EncodeChunk(const ZarrCodec& codec, const uint8_t* data, size_t size, size_t item_size,
                         std::vector<uint8_t>& out) {
  switch (codec.id) {
    case ZarrCodecId::kNone:
      out.assign(data, data + size);
      return absl::OkStatus();
    case ZarrCodecId::kZlib:
    case ZarrCodecId::kGzip:
      return EncodeDeflate(codec.level, codec.id == ZarrCodecId::kGzip, data, size, out);
    case ZarrCodecId::kZstd: {
      out.resize(ZSTD_compressBound(size));
      const size_t n = ZSTD_compress(out.data(), out.size(), data, size, codec.level);
      if (ZSTD_isError(n)) return absl::InternalError(absl::StrCat("zstd: ", ZSTD_getErrorName(n)));
      out.resize(n);
      return absl::OkStatus();
    }
    case ZarrCodecId::kBlosc: {
      out.resize(size + BLOSC_MAX_OVERHEAD);
      // One thread: chunks are already encoded in parallel, each by a thread of the run.
      const int n = blosc_compress_ctx(codec.level, codec.shuffle, item_size, size, data,
                                       out.data(), out.size(), codec.blosc_name.c_str(),
                                       /*blocksize=*/0, /*numinternalthreads=*/1);
      if (n <= 0) return absl::InternalError(absl::StrCat("blosc: compression failed (", n, ")"));
      out.resize(static_cast<size_t>(n));
      return absl::OkStatus();
    }
  }
  return absl::InternalError("unknown codec");
}

absl::Status DecodeChunk(const ZarrCodec& codec, absl::Span<const uint8_t> encoded, uint8_t* out,
                         size_t size, const std::string& name) {
  switch (codec.id) {
    case ZarrCodecId::kNone:
      if (encoded.size() != size) {
        return Corrupt(name, absl::StrCat("holds ", encoded.size(), " bytes, not the chunk's ",
                                          size, " (truncated?)"));
      }
      std::copy(encoded.begin(), encoded.end(), out);
      return absl::OkStatus();
    case ZarrCodecId::kZlib:
    case ZarrCodecId::kGzip:
      return Inflate(codec, encoded, out, size, name);
    case ZarrCodecId::kZstd: {
      const size_t n = ZSTD_decompress(out, size, encoded.data(), encoded.size());
      if (ZSTD_isError(n)) {
        return Corrupt(name, absl::StrCat("not a valid zstd stream (", ZSTD_getErrorName(n), ")"));
      }
      if (n != size) {
        return Corrupt(name, absl::StrCat("holds ", n, " bytes, not the chunk's ", size));
      }
      return absl::OkStatus();
    }
    case ZarrCodecId::kBlosc: {
      size_t n = 0;
      if (blosc_cbuffer_validate(encoded.data(), encoded.size(), &n) != 0) {
        return Corrupt(name, "not a valid blosc stream (truncated?)");
      }
      if (n != size) {
        return Corrupt(name, absl::StrCat("holds ", n, " bytes, not the chunk's ", size));
      }
      const int got = blosc_decompress_ctx(encoded.data(), out, size, /*numinternalthreads=*/1);
      if (got < 0 || static_cast<size_t>(got) != size) {
        return Corrupt(name, "blosc could not decompress it (corrupt?)");
      }
      return absl::OkStatus();
    }
  }
  return absl::InternalError("unknown codec");
}

}  // namespace stackproc::core
