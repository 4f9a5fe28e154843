#include "server/process_stream.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/pipeline.h"
#include "core/status_macros.h"
#include "proto/wire.h"
#include "server/proto_convert.h"

namespace stackproc::server {
namespace {

constexpr absl::Duration kProgressInterval = absl::Milliseconds(250);

std::string Mib(uint64_t bytes) {
  return absl::StrFormat("%.1f MiB", static_cast<double>(bytes) / (1 << 20));
}

absl::StatusOr<core::StackMetadata> MetadataFromHeader(const v1::StreamHeader& header) {
  core::StackMetadata metadata;
  metadata.description = header.description();
  if (header.x_resolution() > 0 && header.y_resolution() > 0) {
    metadata.x_resolution = header.x_resolution();
    metadata.y_resolution = header.y_resolution();
  }
  switch (header.resolution_unit()) {
    case 0:
    case 1:
      metadata.resolution_unit = core::ResolutionUnit::kNone;
      break;
    case 2:
      metadata.resolution_unit = core::ResolutionUnit::kInch;
      break;
    case 3:
      metadata.resolution_unit = core::ResolutionUnit::kCentimeter;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("header: resolution_unit ", header.resolution_unit(),
                       " is not 1 (none), 2 (inch) or 3 (centimetre)"));
  }
  return metadata;
}

}  // namespace

ProcessStreamReactor::ProcessStreamReactor(grpc::CallbackServerContext* context, JobManager& jobs,
                                           std::string owner)
    : context_(context), jobs_(jobs), owner_(std::move(owner)) {
  reading_ = true;
  StartRead(&request_buffer_);
}

ProcessStreamReactor::~ProcessStreamReactor() {
  stream_.reset();  // waits for work still running; its callbacks see done_
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
  // gRPC may drop a chunk inside one of our calls that holds mutex_: Pump runs later.
  stream_->ReleaseLater(z);
}

absl::Status ProcessStreamReactor::StartJob(const v1::StreamHeader& header) {
  const core::StackShape shape{header.shape().depth(), header.shape().height(),
                               header.shape().width()};
  if (shape.depth <= 0 || shape.height <= 0 || shape.width <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("header: shape ", core::ShapeString(shape),
                                                   " must be positive in every dimension"));
  }
  STACKPROC_ASSIGN_OR_RETURN(core::PixelType type, FromProto(header.pixel_type()));
  const core::TiffLimits& limits = jobs_.options().limits;
  if (shape.depth > limits.max_pages) {
    return absl::ResourceExhaustedError(
        absl::StrCat("header: ", shape.depth, " slices exceed the limit of ", limits.max_pages,
                     " slices per stack (--max-slices)"));
  }
  if (shape.height > limits.max_side || shape.width > limits.max_side) {
    return absl::ResourceExhaustedError(
        absl::StrCat("header: slices of ", shape.height, "x", shape.width, " exceed the limit of ",
                     limits.max_side, " pixels per side (--max-side)"));
  }
  STACKPROC_ASSIGN_OR_RETURN(size_t stack_bytes, core::StackBytes(shape, type));
  if (stack_bytes > limits.max_stack_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("header: a stack of ", stack_bytes, " bytes exceeds the limit of ",
                     limits.max_stack_bytes, " bytes (--max-stack-bytes)"));
  }
  STACKPROC_ASSIGN_OR_RETURN(std::vector<std::string> ops, FromProto(header.ops()));
  STACKPROC_ASSIGN_OR_RETURN(core::Pipeline pipeline, core::Pipeline::Parse(ops));
  STACKPROC_ASSIGN_OR_RETURN(core::StackMetadata metadata, MetadataFromHeader(header));

  core::SliceStreamOptions options;
  options.arena = &jobs_.ArenaFor(stack_bytes);
  options.window_bytes = jobs_.options().stream_window_bytes;
  options.on_change = [this] { OnStreamChange(); };
  STACKPROC_ASSIGN_OR_RETURN(stream_, core::SliceStream::Create(std::move(pipeline), shape, type,
                                                                std::move(metadata), options));
  const uint64_t budget = jobs_.options().memory_budget;
  if (stream_->memory_bytes() > budget) {
    return absl::ResourceExhaustedError(
        stream_->whole_stack()
            ? absl::StrCat("the pipeline has a whole-stack step (normalize:scope=stack), so the "
                           "streamed job must hold the whole stack: ",
                           Mib(stream_->memory_bytes()),
                           ", more than the server's memory budget of ", Mib(budget),
                           " (--memory-budget); use a per-slice pipeline")
            : absl::StrCat("a window of ", stream_->window_slices(), " slices needs ",
                           Mib(stream_->memory_bytes()),
                           ", more than the server's memory budget of ", Mib(budget),
                           " (--memory-budget)"));
  }

  JobSnapshot initial;
  initial.spec.ops = std::move(ops);
  initial.spec.owner = owner_;
  initial.input_shape = shape;
  initial.input_type = type;
  initial.output_shape = stream_->output_shape();
  initial.output_type = stream_->output_type();
  initial.memory_bytes = stream_->memory_bytes();
  initial.mode =
      stream_->whole_stack() ? core::ProcessMode::kInMemory : core::ProcessMode::kStreaming;
  initial.progress.slices_total = shape.depth;
  initial.progress.bytes_total = stack_bytes;
  STACKPROC_ASSIGN_OR_RETURN(job_, jobs_.SubmitStreamed(
                                       std::move(initial),
                                       [this] {
                                         std::lock_guard lock(mutex_);
                                         admitted_ = true;
                                         started_ = absl::Now();
                                         Pump();
                                       },
                                       [this] {
                                         std::lock_guard lock(mutex_);
                                         End(absl::CancelledError("the job was cancelled"));
                                       }));
  return absl::OkStatus();
}

absl::Status ProcessStreamReactor::TakeMessage() {
  // Chunks, nearly every message, go from the received bytes straight into their slice.
  if (stream_) {
    if (std::optional<wire::ChunkView> chunk =
            wire::ChunkView::Read(request_buffer_, v1::ProcessStreamRequest::kChunkFieldNumber)) {
      return TakeChunk(chunk->slice(), chunk->offset(), chunk->size(),
                       [&](uint8_t* out) { chunk->CopyTo(out); });
    }
  }
  STACKPROC_RETURN_IF_ERROR(wire::Parse(request_buffer_, request_, "ProcessStreamRequest"));
  if (!stream_) {
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
  const int64_t depth = stream_->input_shape().depth;
  const size_t slice_bytes = stream_->input_slice_bytes();
  auto where = [&] { return absl::StrCat("chunk at slice ", slice, " offset ", offset); };
  if (in_slice_ >= depth) {
    return absl::InvalidArgumentError(
        absl::StrCat(where(), ": the header announced ", depth, " slices and all have arrived"));
  }
  if (slice != in_slice_ || offset != static_cast<int64_t>(in_offset_)) {
    return absl::InvalidArgumentError(absl::StrCat(where(), " is out of order: expected slice ",
                                                   in_slice_, " offset ", in_offset_));
  }
  if (n == 0 || n > kChunkBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(where(), " has ", n, " bytes; chunks carry 1 to ", kChunkBytes, " bytes"));
  }
  if (in_offset_ + n > slice_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(where(), " of ", n, " bytes overruns the slice's ", slice_bytes, " bytes"));
  }
  if (in_offset_ == 0) {
    STACKPROC_ASSIGN_OR_RETURN(in_buffer_, stream_->InputSlice(in_slice_));
    if (in_buffer_ == nullptr) return absl::InternalError("read a chunk with the window full");
  }
  copy_to(in_buffer_ + in_offset_);
  in_offset_ += n;
  if (in_offset_ == slice_bytes) {
    stream_->SliceComplete(in_slice_);
    ++in_slice_;
    in_offset_ = 0;
    in_buffer_ = nullptr;
  }
  return absl::OkStatus();
}

void ProcessStreamReactor::OnReadDone(bool ok) {
  std::lock_guard lock(mutex_);
  reading_ = false;
  if (ended_) return Pump();
  if (!ok) {
    if (context_->IsCancelled()) return End(absl::CancelledError("the client went away"));
    if (!stream_) return End(absl::InvalidArgumentError("the call ended before its StreamHeader"));
    const int64_t depth = stream_->input_shape().depth;
    if (in_slice_ < depth) {
      return End(absl::InvalidArgumentError(
          absl::StrCat("the upload ended at slice ", in_slice_, " offset ", in_offset_,
                       "; the header announced ", depth,
                       " slices (the client half-closed early, or the call broke: a message over "
                       "gRPC's 4 MiB limit breaks it too)")));
    }
    upload_closed_ = true;
    return Pump();
  }
  if (absl::Status status = TakeMessage(); !status.ok()) return End(status);
  Pump();
}

void ProcessStreamReactor::OnWriteDone(bool ok) {
  std::lock_guard lock(mutex_);
  writing_ = false;
  // Pump even when the call has already ended: a Finish may be waiting for this write.
  if (!ok) End(absl::CancelledError("the client went away"));
  Pump();
}

void ProcessStreamReactor::OnCancel() {
  std::lock_guard lock(mutex_);
  End(absl::CancelledError("the client went away"));
}

void ProcessStreamReactor::OnStreamChange() {
  std::lock_guard lock(mutex_);
  Pump();
}

void ProcessStreamReactor::OnDone() {
  {
    std::lock_guard lock(mutex_);
    done_ = true;
    response_buffer_.Clear();  // our reference to the last chunk sent
  }
  if (job_) job_->SetHooks(nullptr, nullptr);
  Unref();  // the last chunk gRPC returns may outlive the call
}

void ProcessStreamReactor::End(const absl::Status& status) {
  if (ended_) return;
  ended_ = true;
  end_status_ = status;
  if (stream_) stream_->Cancel();
  if (job_) jobs_.FinishStreamed(*job_, status);
  Pump();
}

void ProcessStreamReactor::Pump() {
  if (done_) return;
  if (!ended_ && stream_) {
    if (absl::Status status = stream_->status(); !status.ok()) return End(status);
  }
  if (ended_) {
    if (!writing_ && !finish_called_) {
      finish_called_ = true;
      Finish(ToGrpcStatus(end_status_));
    }
    return;
  }
  if (!job_) return;  // the header has not been read yet

  // Writes first: sending a result slice frees room in the window for the upload.
  if (!writing_) {
    if (sent_final_job_) return End(absl::OkStatus());
    if (NextJobUpdate(false) || NextResult()) {
      writing_ = true;
      StartWrite(&response_buffer_);
    } else if (admitted_ && upload_closed_ && out_slice_ == stream_->output_shape().depth) {
      // Every result is out and the client has half-closed: nothing stray can follow.
      jobs_.FinishStreamed(*job_, absl::OkStatus());
      NextJobUpdate(true);
      sent_final_job_ = true;
      writing_ = true;
      StartWrite(&response_buffer_);
    }
  }
  if (admitted_ && !reading_ && !upload_closed_) {
    // After the last slice one more read sees the client's half-close (or a stray chunk).
    const bool room = in_slice_ >= stream_->input_shape().depth || in_offset_ > 0 ||
                      stream_->CanAccept(in_slice_);
    if (room) {
      reading_ = true;
      StartRead(&request_buffer_);
    }
  }
}

bool ProcessStreamReactor::NextJobUpdate(bool force) {
  const absl::Time now = absl::Now();
  const int64_t processed = stream_->slices_processed();
  if (admitted_ && processed != sent_processed_ &&
      (force || now - last_job_sent_ >= kProgressInterval)) {
    core::Progress progress;
    progress.slices_done = processed;
    progress.slices_total = stream_->input_shape().depth;
    progress.bytes_done = static_cast<uint64_t>(processed) * stream_->input_slice_bytes();
    progress.bytes_total =
        static_cast<uint64_t>(progress.slices_total) * stream_->input_slice_bytes();
    progress.elapsed = now - started_;
    if (processed > 0) {
      progress.eta =
          progress.elapsed * (static_cast<double>(progress.slices_total - processed) / processed);
    }
    job_->SetProgress(progress);
    sent_processed_ = processed;
  }
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
  if (!admitted_) return false;
  if (!sent_result_header_) {
    response_.Clear();
    ToProto(stream_->output_shape(), stream_->output_type(), stream_->output_metadata(),
            response_.mutable_result_header());
    response_buffer_ = wire::Serialize(response_);
    sent_result_header_ = true;
    return true;
  }
  if (out_slice_ >= stream_->output_shape().depth) return false;
  const uint8_t* data = stream_->Result(out_slice_);
  if (data == nullptr) return false;
  const size_t slice_bytes = stream_->output_slice_bytes();
  const size_t n = std::min(kChunkBytes, slice_bytes - out_offset_);
  if (out_offset_ == 0) Lend(out_slice_);  // held while its chunks are being made
  response_buffer_ = wire::ChunkMessage(
      v1::ProcessStreamResponse::kChunkFieldNumber, out_slice_, static_cast<int64_t>(out_offset_),
      wire::BorrowSlice(data + out_offset_, n, ChunkLease(this, out_slice_)));
  out_offset_ += n;
  if (out_offset_ == slice_bytes) {
    Return(out_slice_);
    ++out_slice_;
    out_offset_ = 0;
  }
  return true;
}

}  // namespace stackproc::server
