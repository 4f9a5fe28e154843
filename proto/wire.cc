#include "proto/wire.h"

#include <google/protobuf/io/coded_stream.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "absl/strings/str_cat.h"

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

grpc::ByteBuffer ChunkMessage(int field, int64_t slice, int64_t offset, grpc::Slice data) {
  // SliceChunk: slice = 1, offset = 2, data = 3. Like protobuf, fields at their default (0,
  // empty) are left out.
  const auto slice_u = static_cast<uint64_t>(slice);
  const auto offset_u = static_cast<uint64_t>(offset);
  const size_t n = data.size();
  size_t inner = 0;
  if (slice_u != 0) inner += TagSize(1) + CodedOutputStream::VarintSize64(slice_u);
  if (offset_u != 0) inner += TagSize(2) + CodedOutputStream::VarintSize64(offset_u);
  if (n != 0) inner += TagSize(3) + CodedOutputStream::VarintSize64(n) + n;

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
  if (n == 0) {
    grpc::Slice only(head.data(), static_cast<size_t>(p - head.data()));
    return grpc::ByteBuffer(&only, 1);
  }
  p = WriteTag(p, 3, kLengthDelimited);
  p = CodedOutputStream::WriteVarint64ToArray(n, p);
  grpc::Slice slices[] = {grpc::Slice(head.data(), static_cast<size_t>(p - head.data())),
                          std::move(data)};
  return grpc::ByteBuffer(slices, 2);
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
