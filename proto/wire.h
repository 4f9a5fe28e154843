// The messages that carry pixels (ReadResult, ProcessStream) as gRPC byte buffers, for the
// server and the client that send and receive them raw: a chunk goes on the wire straight from
// the buffer that holds its slice, without the two copies that set_data and serialization
// make, and a received chunk is copied once, from the received bytes to where it belongs (or
// decompressed there: a chunk's optional wire compression is here too).
#pragma once

#include <google/protobuf/message_lite.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "stackproc/v1/service.pb.h"

namespace stackproc::wire {

// Pixels travel in chunks of at most this many bytes (never across a slice): well under the
// largest message the server receives, gRPC's default 4 MiB, set by the server explicitly. The
// one definition of each, for both ends (GetServerInfo tells other clients).
inline constexpr size_t kChunkBytes = size_t{1} << 20;
inline constexpr int kMaxMessageBytes = 4 << 20;

// A resume token (StreamHeader.resume_token): 128 random bits, hex.
std::string NewResumeToken();

// The ProcessStream call metadata that makes a call resume a job: a serialized v1::StreamResume
// (gRPC's binary metadata: the key ends in -bin).
inline constexpr char kResumeMetadataKey[] = "stackproc-resume-bin";

// Keepalive, so that a dead link (a laptop's Wi-Fi gone, a cable pulled, a node that vanished)
// ends its calls in about kKeepaliveMs + kKeepaliveTimeoutMs, not TCP's many minutes: both ends
// ping a call's connection after that long without a frame from the other (the client even when
// no data flows, as while a whole-stack step computes), and give up on it when no answer came
// within the timeout (gRPC also sets TCP_USER_TIMEOUT to it). The server takes pings as often as
// kMinPingIntervalMs, below the client's interval, so that it never counts them as abuse.
inline constexpr int kKeepaliveMs = 20'000;
inline constexpr int kKeepaliveTimeoutMs = 10'000;
inline constexpr int kMinPingIntervalMs = 10'000;

// A grpc::Slice over `size` bytes at `data`, not copied. `owner` keeps the bytes valid: it is
// moved to the heap and destroyed when gRPC drops the slice's last reference, on whichever
// thread that happens (the transport may hold the slice after the write has completed).
template <typename Owner>
grpc::Slice BorrowSlice(const uint8_t* data, size_t size, Owner owner) {
  auto* held = new Owner(std::move(owner));
  return grpc::Slice(
      const_cast<uint8_t*>(data), size, [](void* p) { delete static_cast<Owner*>(p); }, held);
}

// The bytes of a message whose field `field` is a SliceChunk {slice, offset, data, raw_size}:
// what ProcessStreamResponse (field 3) and ReadResultResponse (field 2) serialize to, byte for
// byte, with `data` borrowed rather than copied.
grpc::ByteBuffer ChunkMessage(int field, int64_t slice, int64_t offset, grpc::Slice data,
                              int64_t raw_size = 0);

// Compression on the wire (StreamHeader.wire_compression): what ProcessStream takes, none first
// (GetServerInfoResponse.wire_compressions), and their names for flags and messages: "none",
// "lz4", "zstd".
const std::vector<v1::WireCompression>& WireCompressions();
const char* WireCompressionName(v1::WireCompression compression);
// InvalidArgument naming the ones there are.
absl::StatusOr<v1::WireCompression> ParseWireCompression(const std::string& name);

// One chunk's `n` pixel bytes (of `pixel_bytes` each) compressed into `out`, as SliceChunk.data
// with raw_size n; false, `out` undefined, when that is no smaller: the chunk goes as it is.
bool Compress(v1::WireCompression compression, const uint8_t* data, size_t n, size_t pixel_bytes,
              std::vector<uint8_t>& out);
// A sender's Compress, while it pays: a chunk goes compressed when that makes it at least a
// tenth smaller; after one that did not, the next kSkip go as they are without a try (8-bit
// noise, which does not compress, then costs one try in kSkip + 1, not a compression each).
class ChunkPacker {
 public:
  static constexpr int kSkip = 15;
  ChunkPacker(v1::WireCompression compression, size_t pixel_bytes)
      : compression_(compression), pixel_bytes_(pixel_bytes) {}
  // true: `out` holds the chunk's `n` bytes compressed (SliceChunk.data, with raw_size n).
  bool Pack(const uint8_t* data, size_t n, std::vector<uint8_t>& out);

 private:
  v1::WireCompression compression_;
  size_t pixel_bytes_;
  int skip_ = 0;
};

// The most bytes a compressed chunk of `raw_size` bytes may take (the receiver's bound).
size_t CompressedBound(size_t raw_size);
// A compressed chunk's `size` bytes into exactly `raw_size` bytes at `out`. DataLoss when they
// are not one blosc frame of raw_size bytes.
absl::Status Decompress(const uint8_t* data, size_t size, uint8_t* out, size_t raw_size);
// A parsed chunk's pixels at `out` (ChunkView::UnpackTo's, for a chunk protobuf parsed): its
// data copied, or decompressed when raw_size is set.
absl::Status UnpackTo(const v1::SliceChunk& chunk, uint8_t* out);

// The SliceChunk in field `field` of a received message (ProcessStreamRequest: 2), read without
// copying its data: the pixels stay in the received buffer until CopyTo or UnpackTo puts them
// where they belong.
class ChunkView {
 public:
  // nullopt when `buffer` is not a message holding just that chunk in the encoding protobuf
  // writes (fields in order, each once): the caller parses such messages with protobuf.
  static std::optional<ChunkView> Read(const grpc::ByteBuffer& buffer, int field);

  int64_t slice() const { return slice_; }
  int64_t offset() const { return offset_; }
  size_t size() const { return size_; }
  int64_t raw_size() const { return raw_size_; }
  void CopyTo(uint8_t* out) const;
  // The chunk's pixels at `out`: its data copied, or, when raw_size() is not 0, decompressed
  // (through `scratch` when the data spans received slices). DataLoss as Decompress.
  absl::Status UnpackTo(uint8_t* out, std::vector<uint8_t>& scratch) const;

 private:
  std::vector<grpc::Slice> slices_;
  size_t first_ = 0;  // where the data starts: slices_[first_] at byte first_at_
  size_t first_at_ = 0;
  int64_t slice_ = 0;
  int64_t offset_ = 0;
  size_t size_ = 0;
  int64_t raw_size_ = 0;
};

// Any other message, serialized.
grpc::ByteBuffer Serialize(const google::protobuf::MessageLite& message);

// Parses `buffer` into `message`: InvalidArgument naming `what` when it is not one.
absl::Status Parse(const grpc::ByteBuffer& buffer, google::protobuf::MessageLite& message,
                   const char* what);

}  // namespace stackproc::wire
