// Client::ProcessStream: a streamed job's upload beside its download, resumed when its call
// breaks (Client::Process, from a file to a file, is process_file.cc).
#include <grpcpp/generic/generic_stub.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/raw_bidi_call.h"
#include "client/result_header.h"
#include "core/base/status_macros.h"
#include "proto/convert.h"
#include "proto/wire.h"

namespace stackproc::client {

namespace {

// Where an upload starts: at once from the start (a new job's call), or, on a resumed call,
// from where the server's StreamAttached says, once it has come (or never: the call ended).
class UploadStart {
 public:
  void Set(int64_t slice, size_t offset) {
    std::lock_guard lock(mutex_);
    at_ = {slice, offset};
    changed_.notify_all();
  }
  void Abandon() {
    std::lock_guard lock(mutex_);
    abandoned_ = true;
    changed_.notify_all();
  }
  std::optional<std::pair<int64_t, size_t>> Wait() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return at_.has_value() || abandoned_; });
    return at_;
  }
  // Every result has come / whether it has (false: the call ended first).
  void AllReceived() {
    std::lock_guard lock(mutex_);
    received_ = true;
    changed_.notify_all();
  }
  bool WaitAllReceived() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return received_ || abandoned_; });
    return received_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::optional<std::pair<int64_t, size_t>> at_;
  bool received_ = false;
  bool abandoned_ = false;
};

// The upload of a streamed job: the header (unless the call resumes one), then each slice from
// the start position in chunks. Each slice is read into a buffer of its own; its chunks are
// views of it that gRPC sends without a copy (or, compressed, buffers of their own), and it is
// freed when gRPC has sent the last of them. Writes block while the server's window is full.
// Returns the source's error (the call is then cancelled); a call that ended is the call's to
// report.
absl::Status Upload(RawBidiCall& call, grpc::ClientContext& context,
                    const v1::ProcessStreamRequest* header, UploadStart& start,
                    const Client::StreamSource& source, size_t slice_bytes,
                    Client::WireCounts& counts, bool& header_went) {
  wire::ChunkPacker packer(source.wire_compression, core::BytesPerPixel(source.type));
  if (header != nullptr && !(header_went = call.Write(wire::Serialize(*header)))) {
    call.StopWriting();
    return absl::OkStatus();
  }
  const std::optional<std::pair<int64_t, size_t>> from = start.Wait();
  if (!from) {
    call.StopWriting();
    return absl::OkStatus();
  }
  for (int64_t z = from->first; z < source.shape.depth; ++z) {
    grpc::Slice slice(slice_bytes);
    if (absl::Status s = source.read_slice(z, const_cast<uint8_t*>(slice.begin())); !s.ok()) {
      context.TryCancel();
      call.StopWriting();
      return s;
    }
    for (size_t offset = z == from->first ? from->second : 0; offset < slice.size();
         offset += wire::kChunkBytes) {
      const size_t n = std::min(wire::kChunkBytes, slice.size() - offset);
      constexpr int kField = v1::ProcessStreamRequest::kChunkFieldNumber;
      const auto at = static_cast<int64_t>(offset);
      std::vector<uint8_t> packed;
      const bool compressed = packer.Pack(slice.begin() + offset, n, packed);
      const uint8_t* data = packed.data();
      const size_t size = packed.size();
      grpc::ByteBuffer message =
          compressed
              ? wire::ChunkMessage(kField, z, at, wire::BorrowSlice(data, size, std::move(packed)),
                                   static_cast<int64_t>(n))
              : wire::ChunkMessage(kField, z, at, slice.sub(offset, offset + n));
      if (!call.Write(message)) {
        call.StopWriting();  // the call ended: its status says why
        return absl::OkStatus();
      }
      counts.sent += static_cast<int64_t>(n);
      counts.sent_wire += static_cast<int64_t>(compressed ? size : n);
    }
  }
  // The half-close comes once every result has: it tells the server it may let go of them.
  if (start.WaitAllReceived()) {
    call.WritesDone();
  } else {
    call.StopWriting();
  }
  return absl::OkStatus();
}

// The download of a streamed job: job updates, the result header, and result chunks assembled
// into whole slices for the sink, in order.
class ResultAssembler {
 public:
  // The results from slice `first` on (0, or a ResumePoint's).
  ResultAssembler(Client::StreamSink& sink, const std::function<void(const v1::Job&)>& on_update,
                  Client::WireCounts& counts, int64_t first)
      : sink_(sink), on_update_(on_update), counts_(counts), z_(first) {}

  absl::Status Take(const grpc::ByteBuffer& buffer) {
    // Chunks, nearly every message, are copied from the received bytes straight into place.
    if (std::optional<wire::ChunkView> chunk =
            wire::ChunkView::Read(buffer, v1::ProcessStreamResponse::kChunkFieldNumber)) {
      return TakeChunk(chunk->slice(), chunk->offset(), chunk->raw_size(), chunk->size(),
                       [&](uint8_t* out) { return chunk->UnpackTo(out, scratch_); });
    }
    v1::ProcessStreamResponse message;
    if (absl::Status s = wire::Parse(buffer, message, "ProcessStreamResponse"); !s.ok()) {
      return absl::DataLossError(s.message());
    }
    if (message.has_job()) {
      last_ = message.job();
      if (on_update_) on_update_(last_);
      return absl::OkStatus();
    }
    if (message.has_attached()) {
      attached_ = message.attached();
      ++attachments_;
      return absl::OkStatus();
    }
    if (message.has_result_header()) {
      STACKPROC_ASSIGN_OR_RETURN(core::StackInfo info, ReadResultHeader(message.result_header()));
      if (begun_) {  // a resumed call's: the same
        if (attachments_ < 2 || info.shape != shape_) {
          return absl::DataLossError("a second result header, and not a resumed call's");
        }
        return absl::OkStatus();
      }
      shape_ = info.shape;
      STACKPROC_ASSIGN_OR_RETURN(size_t bytes, core::SliceBytes(shape_, info.type));
      slice_.resize(bytes);
      begun_ = true;
      return sink_.Begin(shape_, info.type, info.metadata);
    }
    if (!message.has_chunk()) return absl::OkStatus();
    const v1::SliceChunk& c = message.chunk();
    return TakeChunk(c.slice(), c.offset(), c.raw_size(), c.data().size(),
                     [&](uint8_t* out) { return wire::UnpackTo(c, out); });
  }

  // The server's StreamAttached, once one came (the last one), and how many came.
  const v1::StreamAttached& attached() const { return attached_; }
  int attachments() const { return attachments_; }
  const v1::Job& job() const { return last_; }
  // Whether every result slice has come.
  bool complete() const { return begun_ && z_ == shape_.depth; }
  // The first result byte not received yet: a resumed call's result position.
  std::pair<int64_t, int64_t> position() const { return {z_, static_cast<int64_t>(filled_)}; }

  // The finished job, once the call ended well: DataLoss unless the job succeeded and every
  // result slice arrived.
  absl::StatusOr<v1::Job> Result() const {
    if (last_.state() != v1::JOB_STATE_SUCCEEDED || !begun_ || z_ != shape_.depth) {
      return absl::DataLossError(absl::StrCat("the stream ended after ", z_, " of ", shape_.depth,
                                              " result slices without the job's success"));
    }
    return last_;
  }

 private:
  // A chunk of `stored` bytes holding `raw_size` pixel bytes compressed (0: as they are).
  absl::Status TakeChunk(int64_t slice, int64_t offset, int64_t raw_size, size_t stored,
                         const std::function<absl::Status(uint8_t*)>& unpack) {
    const size_t n = raw_size == 0 ? stored : static_cast<size_t>(raw_size);
    if (!begun_ || slice != z_ || offset != static_cast<int64_t>(filled_) || raw_size < 0 ||
        n > slice_.size() - filled_ ||
        (raw_size != 0 &&
         (counts_.compression == v1::WIRE_COMPRESSION_NONE || stored > wire::CompressedBound(n)))) {
      return absl::DataLossError(absl::StrCat("result chunk at slice ", slice, " offset ", offset,
                                              " is not the one expected"));
    }
    if (absl::Status s = unpack(slice_.data() + filled_); !s.ok()) {
      return absl::DataLossError(
          absl::StrCat("result chunk at slice ", slice, " offset ", offset, ": ", s.message()));
    }
    counts_.received += static_cast<int64_t>(n);
    counts_.received_wire += static_cast<int64_t>(stored);
    filled_ += n;
    if (filled_ < slice_.size()) return absl::OkStatus();
    filled_ = 0;
    return sink_.Slice(z_++, slice_.data());
  }

  Client::StreamSink& sink_;
  const std::function<void(const v1::Job&)>& on_update_;
  Client::WireCounts& counts_;
  std::vector<uint8_t> scratch_;  // a compressed chunk that spans received slices
  v1::Job last_;
  v1::StreamAttached attached_;
  int attachments_ = 0;
  std::vector<uint8_t> slice_;
  core::StackShape shape_;
  int64_t z_ = 0;
  size_t filled_ = 0;
  bool begun_ = false;
};

}  // namespace

namespace {

// A broken call's first resume waits this long, each next one twice as long, up to the last.
constexpr absl::Duration kFirstRetry = absl::Milliseconds(250);
constexpr absl::Duration kLastRetry = absl::Seconds(4);
// A link that breaks again and again is given up on after this many resumes.
constexpr int kMostResumes = 30;

}  // namespace

absl::StatusOr<v1::Job> Client::ProcessStream(const StreamSource& source,
                                              const std::vector<v1::OpSpec>& ops, StreamSink& sink,
                                              const std::function<void(const v1::Job&)>& on_update,
                                              WireCounts* counts, const ResumePoint* resume) {
  STACKPROC_ASSIGN_OR_RETURN(size_t in_bytes, core::SliceBytes(source.shape, source.type));
  WireCounts own_counts;
  WireCounts& moved = counts != nullptr ? *counts : own_counts;
  moved.compression = source.wire_compression;
  moved.sent = moved.sent_wire = moved.received = moved.received_wire = 0;
  v1::ProcessStreamRequest header_message;
  v1::StreamHeader* header = header_message.mutable_header();
  convert::ToProto(source.shape, header->mutable_shape());
  header->set_pixel_type(convert::ToProto(source.type));
  for (const v1::OpSpec& op : ops) *header->add_ops() = op;
  convert::MetadataToProto(source.metadata, header);
  header->set_name(source.name);
  header->set_wire_compression(source.wire_compression);

  // The job's secret for resumes, ours from the start: a call that breaks before the server's
  // first answer resumes as well.
  header->set_resume_token(resume != nullptr ? resume->resume_token : wire::NewResumeToken());
  std::string job_id = resume != nullptr ? resume->job_id : "";

  ResultAssembler results(sink, on_update, moved, resume != nullptr ? resume->result_slice : 0);
  // A call that breaks (the link, not the job) is resumed: again and again while the server
  // keeps the job (StreamAttached.grace_seconds from the break), waiting longer each time. One
  // that broke before any answer is resumed once, and started again if the server never had
  // its header (unless another process started the job: it is taken up, or lost).
  bool resuming = resume != nullptr;
  bool started_again = false;
  absl::Time broke_at = absl::InfinitePast();
  absl::Duration backoff = kFirstRetry;
  for (int resumes = 0;; ++resumes) {
    grpc::ClientContext context;
    Prepare(context);
    if (resuming) {
      v1::StreamResume from;
      from.set_resume_token(header->resume_token());
      const auto [z, offset] = results.position();
      from.set_result_slice(z);
      from.set_result_offset(offset);
      context.AddMetadata(wire::kResumeMetadataKey, from.SerializeAsString());
    }
    CallGuard guard(calls_, context);
    if (resuming) {
      guard.Streamed(job_id);  // CancelCalls cancels the job, not just the call
    } else {
      guard.AwaitsJob();
    }
    grpc::GenericStub generic(channel_);
    RawBidiCall call(generic, context,
                     absl::StrCat("/", v1::StackProcessor::service_full_name(), "/ProcessStream"));
    // The upload runs beside the download: the server processes slices as they arrive and
    // sends results while later slices are still on their way.
    UploadStart start;
    if (!resuming) start.Set(0, 0);
    absl::Status upload_status;
    bool header_went = false;
    std::thread uploader([&] {
      upload_status = Upload(call, context, resuming ? nullptr : &header_message, start, source,
                             in_bytes, moved, header_went);
    });
    absl::Status local_status;
    grpc::ByteBuffer buffer;
    const int attachments = results.attachments();
    int seen = attachments;
    while (call.Read(buffer)) {
      local_status = results.Take(buffer);
      if (job_id.empty()) job_id = results.job().id();  // CancelStreamedJob's, once it comes
      if (!local_status.ok()) break;
      if (results.complete()) start.AllReceived();
      if (results.attachments() != seen) {
        seen = results.attachments();
        if (attachments == 0 && seen == 1) {
          sink.Attached(job_id, header->resume_token(), results.attached().grace_seconds());
        }
        if (!resuming) guard.Streamed(job_id);
        if (resuming) {
          start.Set(results.attached().upload_slice(),
                    static_cast<size_t>(results.attached().upload_offset()));
        }
      }
    }
    // This side's own error (the source's, the sink's): the job is cancelled first, else the
    // server would keep it for a resume.
    if (!local_status.ok()) {
      CancelStreamedJob(job_id);
      context.TryCancel();
    }
    start.Abandon();
    uploader.join();
    grpc::Status status = call.Finish();
    if (!upload_status.ok()) {
      CancelStreamedJob(job_id);
      return upload_status;
    }
    if (!local_status.ok()) return local_status;
    if (status.ok()) return results.Result();
    if (results.complete() && status.error_code() != grpc::StatusCode::CANCELLED) {
      // Every result came, and then the call broke (or its resume was refused: the job had
      // ended): how the job ended is the server's to say.
      absl::StatusOr<v1::Job> job = Get(job_id);
      if (job.ok() && job->state() == v1::JOB_STATE_SUCCEEDED) return *job;
    }
    // Only a broken link is resumed: not the server's refusal, nor the caller's cancel.
    const absl::Time now = absl::Now();
    const bool answered = results.attachments() > 0;  // on some call: the grace is known
    if (results.attachments() != attachments) {       // this call had come through: the grace
      broke_at = now;                                 // counts from its break
      backoff = kFirstRetry;
    }
    if (resuming && !answered && status.error_code() == grpc::StatusCode::NOT_FOUND &&
        !started_again && resume == nullptr) {
      started_again = true;  // the header never reached the server: send it again
      resuming = false;
      continue;
    }
    const absl::Duration grace = absl::Seconds(results.attached().grace_seconds());
    const bool in_time = answered ? now + backoff <= broke_at + grace : header_went;
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE || guard.cancelled() || !in_time ||
        resumes == kMostResumes) {
      absl::Status error = ToAbslStatus(status);
      if (resumes == 0 || !answered) return error;
      return absl::Status(error.code(), absl::StrCat(error.message(), " (after ", resumes,
                                                     " resumes of job ", job_id, ")"));
    }
    if (on_resume_) on_resume_(job_id, ToAbslStatus(status), backoff);
    if (WaitUnlessCancelled(backoff)) {  // Ctrl-C meanwhile: the job goes with it
      CancelStreamedJob(job_id);
      return absl::CancelledError(absl::StrCat("cancelled while resuming job ", job_id));
    }
    backoff = std::min(backoff * 2, kLastRetry);
    resuming = true;
  }
}

}  // namespace stackproc::client
