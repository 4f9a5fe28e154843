// The messages that carry pixels (ReadResult, ProcessStream) as gRPC byte buffers, for the
// server and the client that send and receive them raw: a chunk goes on the wire straight from
// the buffer that holds its slice, without the two copies that set_data and serialization
// make, and a received chunk is copied once, from the received bytes to where it belongs.
#pragma once

#include <google/protobuf/message_lite.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace stackproc::wire {

// Pixels travel in chunks of at most this many bytes (never across a slice): well under the
// largest message the server receives, gRPC's default 4 MiB, set by the server explicitly. The
// one definition of each, for both ends (GetServerInfo tells other clients).
inline constexpr size_t kChunkBytes = size_t{1} << 20;
inline constexpr int kMaxMessageBytes = 4 << 20;

// A grpc::Slice over `size` bytes at `data`, not copied. `owner` keeps the bytes valid: it is
// moved to the heap and destroyed when gRPC drops the slice's last reference, on whichever
// thread that happens (the transport may hold the slice after the write has completed).
template <typename Owner>
grpc::Slice BorrowSlice(const uint8_t* data, size_t size, Owner owner) {
  auto* held = new Owner(std::move(owner));
  return grpc::Slice(
      const_cast<uint8_t*>(data), size, [](void* p) { delete static_cast<Owner*>(p); }, held);
}

// The bytes of a message whose field `field` is a SliceChunk {slice, offset, data}: what
// ProcessStreamResponse (field 3) and ReadResultResponse (field 2) serialize to, byte for byte,
// with `data` borrowed rather than copied.
grpc::ByteBuffer ChunkMessage(int field, int64_t slice, int64_t offset, grpc::Slice data);

// The SliceChunk in field `field` of a received message (ProcessStreamRequest: 2), read without
// copying its data: the pixels stay in the received buffer until CopyTo puts them where they
// belong.
class ChunkView {
 public:
  // nullopt when `buffer` is not a message holding just that chunk in the encoding protobuf
  // writes (fields in order, each once): the caller parses such messages with protobuf.
  static std::optional<ChunkView> Read(const grpc::ByteBuffer& buffer, int field);

  int64_t slice() const { return slice_; }
  int64_t offset() const { return offset_; }
  size_t size() const { return size_; }
  void CopyTo(uint8_t* out) const;

 private:
  std::vector<grpc::Slice> slices_;
  size_t first_ = 0;  // where the data starts: slices_[first_] at byte first_at_
  size_t first_at_ = 0;
  int64_t slice_ = 0;
  int64_t offset_ = 0;
  size_t size_ = 0;
};

// Any other message, serialized.
grpc::ByteBuffer Serialize(const google::protobuf::MessageLite& message);

// Parses `buffer` into `message`: InvalidArgument naming `what` when it is not one.
absl::Status Parse(const grpc::ByteBuffer& buffer, google::protobuf::MessageLite& message,
                   const char* what);

}  // namespace stackproc::wire
