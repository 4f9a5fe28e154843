#include "server/api/process_stream.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "core/base/status_macros.h"
#include "core/pipeline/pipeline.h"
#include "proto/wire.h"
#include "server/api/proto_convert.h"

namespace stackproc::server {
namespace {

constexpr absl::Duration kProgressInterval = absl::Milliseconds(250);

}  // namespace

ProcessStreamReactor::ProcessStreamReactor(grpc::CallbackServerContext* context, JobManager& jobs,
                                           std::string owner)
    : context_(context), jobs_(jobs), owner_(std::move(owner)) {
  reading_ = true;
  StartRead(&request_buffer_);
}

ProcessStreamReactor::~ProcessStreamReactor() {
  feed_.reset();  // the upload's ring and, with the job's own references gone, its window
  drain_.reset();
  job_.reset();
  core::ReturnFreeMemory();
}

void ProcessStreamReactor::Unref() {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

ProcessStreamReactor::ChunkLease::ChunkLease(ProcessStreamReactor* reactor, int64_t z)
    : reactor_(reactor), z_(z) {
  reactor_->refs_.fetch_add(1, std::memory_order_relaxed);
  reactor_->Lend(z_);
}

ProcessStreamReactor::ChunkLease::ChunkLease(ChunkLease&& other) noexcept
    : reactor_(std::exchange(other.reactor_, nullptr)), z_(other.z_) {}

ProcessStreamReactor::ChunkLease::~ChunkLease() {
  if (reactor_ == nullptr) return;
  reactor_->Return(z_);
  reactor_->Unref();
}

void ProcessStreamReactor::Lend(int64_t z) {
  std::lock_guard lock(lease_mutex_);
  ++lent_[z];
}

void ProcessStreamReactor::Return(int64_t z) {
  {
    std::lock_guard lock(lease_mutex_);
    auto it = lent_.find(z);
    if (--it->second > 0) return;
    lent_.erase(it);
  }
  // gRPC may drop a chunk inside one of our calls that holds mutex_.
  Later([drain = drain_, z] { drain->Release(z); });
}

// "ipv4:127.0.0.1:53422" -> "127.0.0.1", "ipv6:%5B::1%5D:53422" (gRPC 1.51 escapes the
// brackets) -> "[::1]", "unix:..." -> "unix".
std::string PeerHost(const std::string& peer) {
  const size_t scheme = peer.find(':');
  if (scheme == std::string::npos) return peer;
  if (peer.compare(0, scheme, "unix") == 0) return "unix";
  std::string address = absl::StrReplaceAll(peer.substr(scheme + 1), {{"%5B", "["}, {"%5D", "]"}});
  return address.substr(0, address.rfind(':'));
}

void ProcessStreamReactor::Later(std::function<void()> work) { arena_->enqueue(std::move(work)); }

absl::Status ProcessStreamReactor::StartJob(const v1::StreamHeader& header) {
  core::StackInfo input;
  input.shape = FromProto(header.shape());
  STACKPROC_ASSIGN_OR_RETURN(input.type, FromProto(header.pixel_type()));
  absl::StatusOr<core::StackMetadata> metadata = convert::MetadataFromProto(header);
  if (!metadata.ok())
    return absl::InvalidArgumentError(absl::StrCat("header: ", metadata.status().message()));
  input.metadata = *std::move(metadata);
  JobSpec spec;
  STACKPROC_ASSIGN_OR_RETURN(spec.ops, FromProto(header.ops()));
  spec.owner = owner_;
  spec.streamed = true;
  spec.uploaded_from = PeerHost(context_->peer());
  spec.input_name = header.name();
  auto feed = std::make_shared<core::FeedSource>(input);
  auto drain = std::make_shared<core::DrainSink>();
  STACKPROC_ASSIGN_OR_RETURN(job_, jobs_.SubmitStream(spec, {feed, drain}));
  feed_ = std::move(feed);
  drain_ = std::move(drain);
  const JobSnapshot s = job_->Snapshot();
  depth_ = s.input_shape.depth;
  in_slice_bytes_ = core::SliceBytes(s.input_shape, s.input_type).value_or(0);
  out_slice_bytes_ = core::SliceBytes(s.output_shape, s.output_type).value_or(0);
  arena_ = &jobs_.ArenaFor(s.progress.bytes_total);
  feed_->SetOnRoom([this] { OnRunChange(); });
  drain_->SetOnChange([this] { OnRunChange(); });
  return absl::OkStatus();
}

absl::Status ProcessStreamReactor::TakeMessage() {
  // Chunks, nearly every message, go from the received bytes straight into their slice.
  if (job_) {
    if (std::optional<wire::ChunkView> chunk =
            wire::ChunkView::Read(request_buffer_, v1::ProcessStreamRequest::kChunkFieldNumber)) {
      return TakeChunk(chunk->slice(), chunk->offset(), chunk->size(),
                       [&](uint8_t* out) { chunk->CopyTo(out); });
    }
  }
  STACKPROC_RETURN_IF_ERROR(wire::Parse(request_buffer_, request_, "ProcessStreamRequest"));
  if (!job_) {
    return request_.has_header()
               ? StartJob(request_.header())
               : absl::InvalidArgumentError("the first message must be a StreamHeader");
  }
  if (request_.has_chunk()) {
    const v1::SliceChunk& chunk = request_.chunk();
    return TakeChunk(chunk.slice(), chunk.offset(), chunk.data().size(), [&](uint8_t* out) {
      std::memcpy(out, chunk.data().data(), chunk.data().size());
    });
  }
  return absl::InvalidArgumentError("a StreamHeader after the first message");
}

absl::Status ProcessStreamReactor::TakeChunk(int64_t slice, int64_t offset, size_t n,
                                             absl::FunctionRef<void(uint8_t*)> copy_to) {
  auto where = [&] { return absl::StrCat("chunk at slice ", slice, " offset ", offset); };
  if (in_slice_ >= depth_) {
    return absl::InvalidArgumentError(
        absl::StrCat(where(), ": the header announced ", depth_, " slices and all have arrived"));
  }
  if (slice != in_slice_ || offset != static_cast<int64_t>(in_offset_)) {
    return absl::InvalidArgumentError(absl::StrCat(where(), " is out of order: expected slice ",
                                                   in_slice_, " offset ", in_offset_));
  }
  if (n == 0 || n > wire::kChunkBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        where(), " has ", n, " bytes; chunks carry 1 to ", wire::kChunkBytes, " bytes"));
  }
  if (in_offset_ + n > in_slice_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat(
        where(), " of ", n, " bytes overruns the slice's ", in_slice_bytes_, " bytes"));
  }
  if (in_buffer_ == nullptr) return absl::InternalError("read a chunk with no room for it");
  copy_to(in_buffer_ + in_offset_);
  in_offset_ += n;
  if (in_offset_ == in_slice_bytes_) {
    feed_->Complete(in_slice_);
    ++in_slice_;
    in_offset_ = 0;
    in_buffer_ = nullptr;
  }
  return absl::OkStatus();
}

void ProcessStreamReactor::OnReadDone(bool ok) {
  bool subscribe = false;
  {
    std::lock_guard lock(mutex_);
    reading_ = false;
    if (ended_) return Pump();
    if (!ok) {
      if (context_->IsCancelled()) return End(absl::CancelledError("the client went away"));
      if (!job_) return End(absl::InvalidArgumentError("the call ended before its StreamHeader"));
      if (in_slice_ < depth_ && job_->cancel_token().IsCancelled()) {
        // Cancelled (CancelJob, shutdown): the client stopped sending; the job ends so.
        upload_closed_ = true;
        return Pump();
      }
      if (in_slice_ < depth_) {
        return End(absl::InvalidArgumentError(
            absl::StrCat("the upload ended at slice ", in_slice_, " offset ", in_offset_,
                         "; the header announced ", depth_,
                         " slices (the client half-closed early, or the call broke: a message "
                         "over gRPC's 4 MiB limit breaks it too)")));
      }
      upload_closed_ = true;
      feed_->End();
      return Pump();
    }
    const bool had_job = job_ != nullptr;
    if (absl::Status status = TakeMessage(); !status.ok()) return End(status);
    subscribe = !had_job && job_ != nullptr;
    if (!subscribe) return Pump();
  }
  // A new job: its changes reach Pump. Outside mutex_, which its observers take.
  const int handle = job_->Subscribe([this] { OnRunChange(); });
  std::lock_guard lock(mutex_);
  observer_ = handle;
  Pump();
}

void ProcessStreamReactor::OnWriteDone(bool ok) {
  std::lock_guard lock(mutex_);
  writing_ = false;
  response_buffer_.Clear();  // our reference to the chunk sent: gRPC holds it as long as needed
  // Pump even when the call has already ended: a Finish may be waiting for this write.
  if (!ok) End(absl::CancelledError("the client went away"));
  Pump();
}

void ProcessStreamReactor::OnCancel() {
  std::lock_guard lock(mutex_);
  End(absl::CancelledError("the client went away"));
}

void ProcessStreamReactor::OnRunChange() {
  std::lock_guard lock(mutex_);
  Pump();
}

void ProcessStreamReactor::OnAlarm(bool fired) {
  {
    std::lock_guard lock(mutex_);
    if (fired && !done_ && !ended_ && !upload_closed_) {
      // Every result is out and the client has not half-closed: take the upload as complete.
      upload_closed_ = true;
      feed_->End();
      Pump();
    }
  }
  Unref();
}

void ProcessStreamReactor::OnDone() {
  {
    std::lock_guard lock(mutex_);
    done_ = true;
    response_buffer_.Clear();
  }
  alarm_.Cancel();
  if (job_) {
    // The run must not wait for a call that is gone.
    feed_->Fail(absl::CancelledError("the client went away"));
    Later([drain = drain_] { drain->Stop(); });
    if (observer_ >= 0) job_->Unsubscribe(observer_);
    feed_->SetOnRoom(nullptr);
    drain_->SetOnChange(nullptr);
  }
  Unref();  // the last chunk gRPC returns may outlive the call
}

void ProcessStreamReactor::End(const absl::Status& status) {
  if (ended_) return;
  ended_ = true;
  end_status_ = status;
  if (job_) {
    if (!status.ok()) {
      feed_->Fail(status);  // a running job fails with it ...
      Later([&jobs = jobs_, job = job_, status] {
        jobs.Dequeue(*job, status);
      });  // ... a queued one too
    }
    if (out_offset_ > 0) {  // the sender's hold on a slice it will not finish sending
      out_offset_ = 0;
      Return(out_slice_);
    }
    Later([drain = drain_] { drain->Stop(); });
  }
  Pump();
}

void ProcessStreamReactor::Pump() {
  if (done_) return;
  if (ended_) {
    // The call ends after its job, so that whoever sees the call's status finds the job ended;
    // unless chunks are still out with gRPC, which may hold them until the call ends.
    bool lent;
    {
      std::lock_guard lock(lease_mutex_);
      lent = !lent_.empty();
    }
    const bool job_ended = !job_ || IsTerminal(job_->Snapshot().state);
    if (!writing_ && !finish_called_ && (job_ended || lent)) {
      finish_called_ = true;
      Finish(ToGrpcStatus(end_status_));
    }
    return;
  }
  if (!job_) return;  // the header has not been read yet

  // Writes first: sending a result slice frees room for the upload.
  if (!writing_) {
    if (sent_final_job_) return End(absl::OkStatus());
    const JobSnapshot s = job_->Snapshot();
    if (s.state == JobState::kSucceeded) {
      NextJobUpdate(true);  // the final message: the job as it ended
      sent_final_job_ = true;
      writing_ = true;
      StartWrite(&response_buffer_);
    } else if (IsTerminal(s.state)) {
      return End(s.error);
    } else if (NextJobUpdate(false) || NextResult()) {
      writing_ = true;
      StartWrite(&response_buffer_);
    }
  }
  if (!reading_ && !upload_closed_) {
    if (in_slice_ < depth_ && in_buffer_ == nullptr) {
      absl::StatusOr<uint8_t*> buffer = feed_->Fill(in_slice_);
      if (!buffer.ok()) return End(buffer.status());
      in_buffer_ = *buffer;
    }
    // After the last slice one more read sees the client's half-close (or a stray chunk).
    if (in_slice_ >= depth_ || in_buffer_ != nullptr) {
      reading_ = true;
      StartRead(&request_buffer_);
    }
  }
  if (!alarm_set_ && !upload_closed_ && sent_result_header_ && out_slice_ == depth_) {
    alarm_set_ = true;
    refs_.fetch_add(1, std::memory_order_relaxed);
    alarm_.Set(absl::ToChronoTime(absl::Now() + kHalfCloseGrace),
               [this](bool fired) { OnAlarm(fired); });
  }
}

bool ProcessStreamReactor::NextJobUpdate(bool force) {
  const absl::Time now = absl::Now();
  const JobSnapshot snapshot = job_->Snapshot();
  const bool first = last_job_sent_ == absl::InfinitePast();
  const bool state_changed = snapshot.state != sent_state_;
  const bool due =
      now - last_job_sent_ >= kProgressInterval && snapshot.version != sent_job_version_;
  if (!(force || first || state_changed || due)) return false;
  response_.Clear();
  ToProto(snapshot, response_.mutable_job());
  response_buffer_ = wire::Serialize(response_);
  sent_job_version_ = snapshot.version;
  sent_state_ = snapshot.state;
  last_job_sent_ = now;
  return true;
}

bool ProcessStreamReactor::NextResult() {
  if (!sent_result_header_) {
    const core::StackInfo* output = drain_->output();
    if (output == nullptr) return false;  // the run has not started
    response_.Clear();
    ToProto(output->shape, output->type, output->metadata, response_.mutable_result_header());
    response_buffer_ = wire::Serialize(response_);
    sent_result_header_ = true;
    return true;
  }
  if (out_slice_ >= depth_) return false;
  if (out_offset_ == 0) {
    out_data_ = drain_->Result(out_slice_);
    if (out_data_ == nullptr) return false;
    Lend(out_slice_);  // held while its chunks are being made
  }
  const size_t n = std::min(wire::kChunkBytes, out_slice_bytes_ - out_offset_);
  response_buffer_ = wire::ChunkMessage(
      v1::ProcessStreamResponse::kChunkFieldNumber, out_slice_, static_cast<int64_t>(out_offset_),
      wire::BorrowSlice(out_data_ + out_offset_, n, ChunkLease(this, out_slice_)));
  out_offset_ += n;
  if (out_offset_ == out_slice_bytes_) {
    Return(out_slice_);
    ++out_slice_;
    out_offset_ = 0;
  }
  return true;
}

}  // namespace stackproc::server
