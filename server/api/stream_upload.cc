// ProcessStreamReactor's upload: the header that makes the job, and the chunks that fill its
// slices (process_stream.h).
#include <algorithm>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "core/base/status_macros.h"
#include "proto/wire.h"
#include "server/api/process_stream.h"
#include "server/api/proto_convert.h"

namespace stackproc::server {
namespace {

// "ipv4:127.0.0.1:53422" -> "127.0.0.1", "ipv6:%5B::1%5D:53422" (gRPC 1.51 escapes the
// brackets) -> "[::1]", "unix:..." -> "unix".
std::string PeerHost(const std::string& peer) {
  const size_t scheme = peer.find(':');
  if (scheme == std::string::npos) return peer;
  if (peer.compare(0, scheme, "unix") == 0) return "unix";
  std::string address = absl::StrReplaceAll(peer.substr(scheme + 1), {{"%5B", "["}, {"%5D", "]"}});
  return address.substr(0, address.rfind(':'));
}

}  // namespace

absl::Status ProcessStreamReactor::StartJob(const v1::StreamHeader& header) {
  StreamSession& s = *session_;
  if (header.wire_compression() != v1::WIRE_COMPRESSION_UNSPECIFIED) {
    const std::vector<v1::WireCompression>& taken = wire::WireCompressions();
    if (std::find(taken.begin(), taken.end(), header.wire_compression()) == taken.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("header: wire compression ", header.wire_compression(),
                       " is not one this server takes (GetServerInfo lists them)"));
    }
    s.wire_ = header.wire_compression();
  }
  const std::string& token = header.resume_token();
  if (!token.empty() && (token.size() < 16 || token.size() > 128)) {
    return absl::InvalidArgumentError(
        absl::StrCat("header: a resume token of ", token.size(), " characters (16 to 128)"));
  }
  s.token_ = token.empty() ? wire::NewResumeToken() : token;
  if (s.registry_.grace() <= absl::ZeroDuration()) return SubmitJob(header);
  // Before the job: a taken token refuses it. A header refused after takes its token back.
  STACKPROC_RETURN_IF_ERROR(s.registry_.Add(s.token_, session_));
  absl::Status submitted = SubmitJob(header);
  if (!submitted.ok()) s.registry_.Remove(s.token_);
  return submitted;
}

absl::Status ProcessStreamReactor::SubmitJob(const v1::StreamHeader& header) {
  StreamSession& s = *session_;
  core::StackInfo input;
  input.shape = FromProto(header.shape());
  STACKPROC_ASSIGN_OR_RETURN(input.type, FromProto(header.pixel_type()));
  absl::StatusOr<core::StackMetadata> metadata = convert::MetadataFromProto(header);
  if (!metadata.ok())
    return absl::InvalidArgumentError(absl::StrCat("header: ", metadata.status().message()));
  input.metadata = *std::move(metadata);
  JobSpec spec;
  STACKPROC_ASSIGN_OR_RETURN(spec.ops, FromProto(header.ops()));
  spec.owner = s.owner_;
  spec.streamed = true;
  spec.uploaded_from = PeerHost(context_->peer());
  spec.input_name = header.name();
  auto feed = std::make_shared<core::FeedSource>(input);
  auto drain = std::make_shared<core::DrainSink>();
  STACKPROC_ASSIGN_OR_RETURN(s.job_, s.jobs_.SubmitStream(spec, {feed, drain}));
  s.feed_ = std::move(feed);
  s.drain_ = std::move(drain);
  const JobSnapshot snapshot = s.job_->Snapshot();
  s.depth_ = snapshot.input_shape.depth;
  s.in_slice_bytes_ = core::SliceBytes(snapshot.input_shape, snapshot.input_type).value_or(0);
  s.out_slice_bytes_ = core::SliceBytes(snapshot.output_shape, snapshot.output_type).value_or(0);
  s.packer_ = wire::ChunkPacker(s.wire_, core::BytesPerPixel(snapshot.output_type));
  s.tail_slices_ =
      s.registry_.grace() > absl::ZeroDuration() ? StreamTailSlices(s.out_slice_bytes_) : 0;
  s.arena_ = &s.jobs_.ArenaFor(snapshot.progress.bytes_total);
  std::weak_ptr<StreamSession> weak = session_;
  s.feed_->SetOnRoom([weak] {
    if (auto session = weak.lock()) session->OnRunChange();
  });
  s.drain_->SetOnChange([weak] {
    if (auto session = weak.lock()) session->OnRunChange();
  });
  return absl::OkStatus();
}

absl::Status ProcessStreamReactor::TakeMessage() {
  StreamSession& s = *session_;
  // Chunks, nearly every message, go from the received bytes straight into their slice.
  if (s.job_) {
    if (std::optional<wire::ChunkView> chunk =
            wire::ChunkView::Read(request_buffer_, v1::ProcessStreamRequest::kChunkFieldNumber)) {
      return TakeChunk(chunk->slice(), chunk->offset(), chunk->raw_size(), chunk->size(),
                       [&](uint8_t* out) { return chunk->UnpackTo(out, scratch_); });
    }
  }
  STACKPROC_RETURN_IF_ERROR(wire::Parse(request_buffer_, request_, "ProcessStreamRequest"));
  if (!s.job_) {
    return request_.has_header()
               ? StartJob(request_.header())
               : absl::InvalidArgumentError("the first message must be a StreamHeader");
  }
  if (request_.has_chunk()) {
    const v1::SliceChunk& c = request_.chunk();
    return TakeChunk(c.slice(), c.offset(), c.raw_size(), c.data().size(),
                     [&](uint8_t* out) { return wire::UnpackTo(c, out); });
  }
  return absl::InvalidArgumentError("a StreamHeader after the first message");
}

absl::Status ProcessStreamReactor::TakeChunk(int64_t slice, int64_t offset, int64_t raw_size,
                                             size_t stored,
                                             absl::FunctionRef<absl::Status(uint8_t*)> unpack) {
  StreamSession& s = *session_;
  auto where = [&] { return absl::StrCat("chunk at slice ", slice, " offset ", offset); };
  // A compressed chunk is checked for what it holds before anything is decompressed.
  const size_t n = raw_size == 0 ? stored : static_cast<size_t>(raw_size);
  if (raw_size != 0 && s.wire_ == v1::WIRE_COMPRESSION_NONE) {
    return absl::InvalidArgumentError(
        absl::StrCat(where(), " is compressed (raw_size ", raw_size,
                     ") but the stream's header asked for no wire compression"));
  }
  if (s.in_slice_ >= s.depth_) {
    return absl::InvalidArgumentError(
        absl::StrCat(where(), ": the header announced ", s.depth_, " slices and all have arrived"));
  }
  if (slice != s.in_slice_ || offset != static_cast<int64_t>(s.in_offset_)) {
    return absl::InvalidArgumentError(absl::StrCat(where(), " is out of order: expected slice ",
                                                   s.in_slice_, " offset ", s.in_offset_));
  }
  if (n == 0 || n > wire::kChunkBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        where(), " has ", n, " bytes; chunks carry 1 to ", wire::kChunkBytes, " bytes"));
  }
  if (s.in_offset_ + n > s.in_slice_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat(
        where(), " of ", n, " bytes overruns the slice's ", s.in_slice_bytes_, " bytes"));
  }
  if (raw_size != 0 && stored > wire::CompressedBound(n)) {
    return absl::InvalidArgumentError(absl::StrCat(where(), " takes ", stored,
                                                   " bytes compressed, more than its ", n,
                                                   " bytes can (", wire::CompressedBound(n), ")"));
  }
  if (s.in_buffer_ == nullptr) return absl::InternalError("read a chunk with no room for it");
  if (absl::Status status = unpack(s.in_buffer_ + s.in_offset_); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where(), ": ", status.message()));
  }
  s.in_offset_ += n;
  if (s.in_offset_ == s.in_slice_bytes_) {
    s.feed_->Complete(s.in_slice_);
    ++s.in_slice_;
    s.in_offset_ = 0;
    s.in_buffer_ = nullptr;
  }
  return absl::OkStatus();
}

}  // namespace stackproc::server
