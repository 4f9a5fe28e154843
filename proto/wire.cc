#include "proto/wire.h"

#include <blosc.h>
#include <google/protobuf/io/coded_stream.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/zarr/zarr_codec.h"

namespace stackproc::wire {
namespace {

using google::protobuf::io::CodedOutputStream;

constexpr uint32_t kVarint = 0;
constexpr uint32_t kLengthDelimited = 2;

uint8_t* WriteTag(uint8_t* out, uint32_t field, uint32_t wire_type) {
  return CodedOutputStream::WriteVarint32ToArray((field << 3) | wire_type, out);
}

size_t TagSize(uint32_t field) { return CodedOutputStream::VarintSize32(field << 3); }

}  // namespace

grpc::ByteBuffer ChunkMessage(int field, int64_t slice, int64_t offset, grpc::Slice data,
                              int64_t raw_size) {
  // SliceChunk: slice = 1, offset = 2, data = 3, raw_size = 4. Like protobuf, fields at their
  // default (0, empty) are left out, and the rest go in their numbers' order.
  const auto slice_u = static_cast<uint64_t>(slice);
  const auto offset_u = static_cast<uint64_t>(offset);
  const auto raw_u = static_cast<uint64_t>(raw_size);
  const size_t n = data.size();
  size_t inner = 0;
  if (slice_u != 0) inner += TagSize(1) + CodedOutputStream::VarintSize64(slice_u);
  if (offset_u != 0) inner += TagSize(2) + CodedOutputStream::VarintSize64(offset_u);
  if (n != 0) inner += TagSize(3) + CodedOutputStream::VarintSize64(n) + n;
  if (raw_u != 0) inner += TagSize(4) + CodedOutputStream::VarintSize64(raw_u);

  std::array<uint8_t, 64> head;  // tags and varints: at most 5 x 11 bytes
  uint8_t* p = head.data();
  p = WriteTag(p, static_cast<uint32_t>(field), kLengthDelimited);
  p = CodedOutputStream::WriteVarint64ToArray(inner, p);
  if (slice_u != 0) {
    p = WriteTag(p, 1, kVarint);
    p = CodedOutputStream::WriteVarint64ToArray(slice_u, p);
  }
  if (offset_u != 0) {
    p = WriteTag(p, 2, kVarint);
    p = CodedOutputStream::WriteVarint64ToArray(offset_u, p);
  }
  std::vector<grpc::Slice> slices;
  if (n != 0) {
    p = WriteTag(p, 3, kLengthDelimited);
    p = CodedOutputStream::WriteVarint64ToArray(n, p);
    slices.emplace_back(head.data(), static_cast<size_t>(p - head.data()));
    slices.push_back(std::move(data));
    p = head.data();
  }
  if (raw_u != 0) {
    p = WriteTag(p, 4, kVarint);
    p = CodedOutputStream::WriteVarint64ToArray(raw_u, p);
  }
  if (p != head.data()) slices.emplace_back(head.data(), static_cast<size_t>(p - head.data()));
  return grpc::ByteBuffer(slices.data(), slices.size());
}

namespace {

constexpr int kBloscShuffle = 1;  // byte shuffle, by the pixel's size

core::ZarrCodec BloscFor(v1::WireCompression compression) {
  return compression == v1::WIRE_COMPRESSION_ZSTD
             ? core::ZarrCodec{core::ZarrCodecId::kBlosc, 1, "zstd", kBloscShuffle}
             : core::ZarrCodec{core::ZarrCodecId::kBlosc, 5, "lz4", kBloscShuffle};
}

}  // namespace

const std::vector<v1::WireCompression>& WireCompressions() {
  static const std::vector<v1::WireCompression> kTaken = [] {
    std::vector<v1::WireCompression> taken = {v1::WIRE_COMPRESSION_NONE};
    for (v1::WireCompression c : {v1::WIRE_COMPRESSION_LZ4, v1::WIRE_COMPRESSION_ZSTD}) {
      if (blosc_compname_to_compcode(BloscFor(c).blosc_name.c_str()) >= 0) taken.push_back(c);
    }
    return taken;
  }();
  return kTaken;
}

const char* WireCompressionName(v1::WireCompression compression) {
  switch (compression) {
    case v1::WIRE_COMPRESSION_UNSPECIFIED:
    case v1::WIRE_COMPRESSION_NONE:
      return "none";
    case v1::WIRE_COMPRESSION_LZ4:
      return "lz4";
    case v1::WIRE_COMPRESSION_ZSTD:
      return "zstd";
    default:
      return "unknown";
  }
}

absl::StatusOr<v1::WireCompression> ParseWireCompression(const std::string& name) {
  std::vector<std::string> names;
  for (v1::WireCompression c : WireCompressions()) {
    if (name == WireCompressionName(c)) return c;
    names.emplace_back(WireCompressionName(c));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("wire compression \"", name, "\": one of ", absl::StrJoin(names, ", ")));
}

bool Compress(v1::WireCompression compression, const uint8_t* data, size_t n, size_t pixel_bytes,
              std::vector<uint8_t>& out) {
  if (compression == v1::WIRE_COMPRESSION_UNSPECIFIED || compression == v1::WIRE_COMPRESSION_NONE ||
      n == 0) {
    return false;
  }
  return core::EncodeChunk(BloscFor(compression), data, n, pixel_bytes, out).ok() && out.size() < n;
}

bool ChunkPacker::Pack(const uint8_t* data, size_t n, std::vector<uint8_t>& out) {
  if (skip_ > 0) {
    --skip_;
    return false;
  }
  if (Compress(compression_, data, n, pixel_bytes_, out) && out.size() * 10 <= n * 9) return true;
  if (compression_ != v1::WIRE_COMPRESSION_NONE &&
      compression_ != v1::WIRE_COMPRESSION_UNSPECIFIED) {
    skip_ = kSkip;
  }
  return false;
}

size_t CompressedBound(size_t raw_size) { return raw_size + BLOSC_MAX_OVERHEAD; }

absl::Status Decompress(const uint8_t* data, size_t size, uint8_t* out, size_t raw_size) {
  // Any blosc frame: how it was made (lz4 or zstd, shuffled or not) is in its header.
  return core::DecodeChunk(BloscFor(v1::WIRE_COMPRESSION_LZ4), {data, size}, out, raw_size,
                           "a compressed chunk");
}

namespace {

// Reads bytes across a received message's slices.
class SliceCursor {
 public:
  explicit SliceCursor(const std::vector<grpc::Slice>& slices) : slices_(slices) { SkipEmpty(); }

  size_t slice() const { return index_; }
  size_t at() const { return at_; }
  size_t consumed() const { return consumed_; }

  bool ReadByte(uint8_t& byte) {
    if (index_ == slices_.size()) return false;
    byte = slices_[index_].begin()[at_];
    Advance(1);
    return true;
  }

  bool ReadVarint(uint64_t& value) {
    value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t byte = 0;
      if (!ReadByte(byte)) return false;
      value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;
  }

  bool Skip(uint64_t n) {
    while (n > 0) {
      if (index_ == slices_.size()) return false;
      const size_t step = std::min<uint64_t>(n, slices_[index_].size() - at_);
      Advance(step);
      n -= step;
    }
    return true;
  }

 private:
  void Advance(size_t n) {
    at_ += n;
    consumed_ += n;
    if (at_ == slices_[index_].size()) {
      ++index_;
      at_ = 0;
      SkipEmpty();
    }
  }
  void SkipEmpty() {
    while (index_ < slices_.size() && slices_[index_].size() == 0) ++index_;
  }

  const std::vector<grpc::Slice>& slices_;
  size_t index_ = 0;
  size_t at_ = 0;
  size_t consumed_ = 0;
};

}  // namespace

std::optional<ChunkView> ChunkView::Read(const grpc::ByteBuffer& buffer, int field) {
  ChunkView view;
  if (!buffer.Dump(&view.slices_).ok()) return std::nullopt;
  SliceCursor in(view.slices_);
  uint64_t tag = 0, length = 0;
  if (!in.ReadVarint(tag) || tag != ((static_cast<uint64_t>(field) << 3) | kLengthDelimited) ||
      !in.ReadVarint(length) || length != buffer.Length() - in.consumed()) {
    return std::nullopt;
  }
  uint32_t last_field = 0;
  while (in.consumed() < buffer.Length()) {
    if (!in.ReadVarint(tag)) return std::nullopt;
    const auto number = static_cast<uint32_t>(tag >> 3);
    if (number <= last_field) return std::nullopt;  // out of order or repeated
    last_field = number;
    uint64_t value = 0;
    if (number == 1 && (tag & 7) == kVarint && in.ReadVarint(value)) {
      view.slice_ = static_cast<int64_t>(value);
    } else if (number == 2 && (tag & 7) == kVarint && in.ReadVarint(value)) {
      view.offset_ = static_cast<int64_t>(value);
    } else if (number == 3 && (tag & 7) == kLengthDelimited && in.ReadVarint(value) &&
               value <= buffer.Length() - in.consumed()) {
      view.first_ = in.slice();
      view.first_at_ = in.at();
      view.size_ = static_cast<size_t>(value);
      in.Skip(value);
    } else if (number == 4 && (tag & 7) == kVarint && in.ReadVarint(value)) {
      view.raw_size_ = static_cast<int64_t>(value);
    } else {
      return std::nullopt;
    }
  }
  return view;
}

void ChunkView::CopyTo(uint8_t* out) const {
  size_t left = size_;
  for (size_t i = first_, at = first_at_; left > 0; ++i, at = 0) {
    const size_t n = std::min(left, slices_[i].size() - at);
    std::memcpy(out, slices_[i].begin() + at, n);
    out += n;
    left -= n;
  }
}

absl::Status ChunkView::UnpackTo(uint8_t* out, std::vector<uint8_t>& scratch) const {
  if (raw_size_ == 0) {
    CopyTo(out);
    return absl::OkStatus();
  }
  const uint8_t* data = nullptr;
  if (size_ > 0 && slices_[first_].size() - first_at_ >= size_) {
    data = slices_[first_].begin() + first_at_;  // in one received slice, as it mostly is
  } else {
    scratch.resize(size_);
    CopyTo(scratch.data());
    data = scratch.data();
  }
  return Decompress(data, size_, out, static_cast<size_t>(raw_size_));
}

std::string NewResumeToken() {
  std::random_device random;
  std::string token;
  for (int i = 0; i < 4; ++i) absl::StrAppendFormat(&token, "%08x", random());
  return token;
}

absl::Status UnpackTo(const v1::SliceChunk& chunk, uint8_t* out) {
  const auto* data = reinterpret_cast<const uint8_t*>(chunk.data().data());
  if (chunk.raw_size() != 0) {
    return Decompress(data, chunk.data().size(), out, static_cast<size_t>(chunk.raw_size()));
  }
  std::memcpy(out, data, chunk.data().size());
  return absl::OkStatus();
}

grpc::ByteBuffer Serialize(const google::protobuf::MessageLite& message) {
  grpc::Slice slice(message.ByteSizeLong());
  message.SerializeWithCachedSizesToArray(const_cast<uint8_t*>(slice.begin()));
  return grpc::ByteBuffer(&slice, 1);
}

absl::Status Parse(const grpc::ByteBuffer& buffer, google::protobuf::MessageLite& message,
                   const char* what) {
  grpc::ByteBuffer view(buffer);  // shares the slices
  grpc::ProtoBufferReader reader(&view);
  if (!message.ParseFromZeroCopyStream(&reader)) {
    return absl::InvalidArgumentError(
        absl::StrCat("a message of ", buffer.Length(), " bytes that is not a ", what));
  }
  return absl::OkStatus();
}

}  // namespace stackproc::wire
