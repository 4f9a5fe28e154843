#include "server/api/process_stream.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"
#include "core/pipeline/pipeline.h"
#include "proto/wire.h"
#include "server/api/proto_convert.h"

namespace stackproc::server {
namespace {

constexpr absl::Duration kProgressInterval = absl::Milliseconds(250);

absl::Status ClientWentAway() { return absl::CancelledError("the client went away"); }

}  // namespace

ProcessStreamReactor::ProcessStreamReactor(grpc::CallbackServerContext* context,
                                           StreamSessions& sessions, std::string owner)
    : context_(context),
      session_(std::make_shared<StreamSession>(sessions.jobs(), std::move(owner), sessions)) {
  std::lock_guard lock(session_->mutex_);
  session_->attached_ = this;
  reading_ = true;
  StartRead(&request_buffer_);
}

ProcessStreamReactor::ProcessStreamReactor(grpc::CallbackServerContext* context,
                                           std::shared_ptr<StreamSession> session,
                                           const v1::StreamResume& resume)
    : context_(context), session_(std::move(session)) {
  std::lock_guard lock(session_->mutex_);
  StreamSession& s = *session_;
  const int64_t z = resume.result_slice();
  const int64_t offset = resume.result_offset();
  absl::Status refused = [&]() -> absl::Status {
    if (s.job_ == nullptr) {  // its header was refused: there is no job
      return absl::NotFoundError("no streamed job has that resume token: its header was refused");
    }
    if (s.closed_ || !s.Resumable()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job ", s.job_->id(), " has ended: ", JobStateName(s.job_->Snapshot().state)));
    }
    if (z < 0 || offset < 0 || z > s.out_slice_ ||
        (z == s.out_slice_ && static_cast<size_t>(offset) > s.out_offset_) ||
        (z < s.out_slice_ && static_cast<size_t>(offset) >= s.out_slice_bytes_)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the resume's result position (slice ", z, " offset ", offset,
          ") is past what was sent: up to slice ", s.out_slice_, " offset ", s.out_offset_));
    }
    if (z < s.out_slice_ && (s.tail_.empty() || s.tail_.front().z > z)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "result slice ", z, " is no longer held: the server keeps the last ", s.tail_.size(),
          " slices it sent, from slice ", s.out_slice_ - std::ssize(s.tail_)));
    }
    return absl::OkStatus();
  }();
  if (!refused.ok()) {
    ended_ = true;
    end_status_ = refused;
    Pump();  // not attached: finishes at once
    return;
  }
  if (ProcessStreamReactor* old = s.attached_; old != nullptr) {
    // The call this one replaces has not seen its link break yet: it ends now.
    s.attached_ = nullptr;
    old->ended_ = true;
    old->end_status_ = absl::CancelledError("a resumed call took the job up");
    old->context_->TryCancel();
    old->Pump();
  }
  if (s.grace_alarm_) s.grace_alarm_->Cancel();
  ++s.grace_generation_;
  s.attached_ = this;
  s.jobs_.LogJobEvent(*s.job_, "stream_resumed",
                      absl::StrCat(" upload_slice=", s.in_slice_, " result_slice=", z,
                                   " from_tail=", s.out_slice_ - z));
  if (z < s.out_slice_) {
    replay_slice_ = z;
    replay_offset_ = static_cast<size_t>(offset);
    s.out_offset_ = 0;  // a slice in part sent is held: after the tail it goes again whole
  } else {
    s.out_offset_ = static_cast<size_t>(offset);  // the slice is still held while in part sent
  }
  Pump();
}

void ProcessStreamReactor::Unref() {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

void ProcessStreamReactor::OnReadDone(bool ok) {
  StreamSession& s = *session_;
  std::shared_ptr<Job> subscribe;
  {
    std::lock_guard lock(s.mutex_);
    reading_ = false;
    if (ended_ || !attached()) return Pump();
    if (!ok) {
      if (context_->IsCancelled()) return ClientGone();
      if (!s.job_) return End(absl::InvalidArgumentError("the call ended before its StreamHeader"));
      if (s.in_slice_ < s.depth_ && s.job_->cancel_token().IsCancelled()) {
        // Cancelled (CancelJob, shutdown): the client stopped sending; the job ends so.
        s.upload_closed_ = true;
        return Pump();
      }
      if (s.in_slice_ < s.depth_) {
        return End(absl::InvalidArgumentError(
            absl::StrCat("the upload ended at slice ", s.in_slice_, " offset ", s.in_offset_,
                         "; the header announced ", s.depth_,
                         " slices (the client half-closed early, or the call broke: a message "
                         "over gRPC's 4 MiB limit breaks it too)")));
      }
      // A client half-closes once it has every result (stackproc's do): then the tail is of no
      // more use after the job. (An older one half-closes after its upload, mostly before.)
      half_closed_ = true;
      s.acked_ = s.out_slice_ >= s.depth_ && replay_slice_ < 0;
      if (!s.upload_closed_) {  // (the half-close alarm may have closed it)
        s.upload_closed_ = true;
        s.feed_->End();
      }
      return Pump();
    }
    const bool had_job = s.job_ != nullptr;
    if (absl::Status status = TakeMessage(); !status.ok()) return End(status);
    if (had_job || s.job_ == nullptr) return Pump();
    subscribe = s.job_;
  }
  // A new job: its changes reach the session. Outside its mutex, which its observers take.
  std::weak_ptr<StreamSession> weak = session_;
  const int handle = subscribe->Subscribe([weak] {
    if (auto session = weak.lock()) session->OnRunChange();
  });
  std::lock_guard lock(s.mutex_);
  s.observer_ = handle;
  if (s.unhooked_) {  // unhooked before the handle was known: it goes now
    s.Later([job = subscribe, handle] { job->Unsubscribe(handle); });
  }
  Pump();
}

void ProcessStreamReactor::OnWriteDone(bool ok) {
  std::lock_guard lock(session_->mutex_);
  writing_ = false;
  response_buffer_.Clear();  // our reference to the chunk sent: gRPC holds it as long as needed
  // Pump even when the call has already ended: a Finish may be waiting for this write.
  if (!ok) ClientGone();
  Pump();
}

void ProcessStreamReactor::OnCancel() {
  std::lock_guard lock(session_->mutex_);
  ClientGone();
}

void ProcessStreamReactor::OnAlarm(bool fired) {
  {
    StreamSession& s = *session_;
    std::lock_guard lock(s.mutex_);
    if (fired && !done_ && !ended_ && attached() && !s.upload_closed_) {
      // Every result is out and the client has not half-closed: take the upload as complete.
      s.upload_closed_ = true;
      s.feed_->End();
      Pump();
    }
  }
  Unref();
}

void ProcessStreamReactor::OnDone() {
  {
    StreamSession& s = *session_;
    std::lock_guard lock(s.mutex_);
    done_ = true;
    response_buffer_.Clear();
    if (attached()) {  // (Finish lets go of the session first: this is only a safeguard)
      s.attached_ = nullptr;
      s.Close(ClientWentAway());
      s.Unhook();
    }
  }
  alarm_.Cancel();
  Unref();
}

void ProcessStreamReactor::ClientGone() { End(ClientWentAway(), /*client_gone=*/true); }

void ProcessStreamReactor::End(const absl::Status& status, bool client_gone) {
  if (ended_) return;
  ended_ = true;
  end_status_ = status;
  StreamSession& s = *session_;
  if (attached()) {
    if (s.job_ == nullptr) {
      s.attached_ = nullptr;
    } else if (client_gone && s.Resumable()) {
      s.Detach(/*broke=*/true);  // the job waits for a resumed call; this one finishes at once
    } else if (!status.ok()) {
      s.Close(status);  // the call finishes once the job has ended
    }
  }
  Pump();
}

void ProcessStreamReactor::Pump() {
  if (done_) return;
  StreamSession& s = *session_;
  if (ended_ || !attached()) {
    if (writing_ || finish_called_) return;
    if (attached()) {
      // The call ends after its job, so that whoever sees the call's status finds the job
      // ended; unless chunks are still out with gRPC, which may hold them until the call ends.
      const bool job_ended = IsTerminal(s.job_->Snapshot().state);
      if (!job_ended && !s.AnyLent()) return;
      if (end_status_.ok() && !s.acked_ && s.Resumable()) {
        // Done, but the last results may still be on their way and lost with the link: its
        // tail stays for a resume until the grace runs out.
        s.Detach(/*broke=*/false);
      } else {
        s.attached_ = nullptr;
        s.Close(end_status_);  // done with it: nothing waits for it any more
        s.Unhook();
      }
    }
    finish_called_ = true;
    Finish(ToGrpcStatus(end_status_));
    return;
  }
  if (!s.job_) return;  // the header has not been read yet

  // Writes first: sending a result slice frees room for the upload.
  if (!writing_) {
    if (sent_final_job_) return End(absl::OkStatus());
    const JobSnapshot snapshot = s.job_->Snapshot();
    // (A resumed call that lacked no result still gets the result header before the end.)
    if (snapshot.state == JobState::kSucceeded && sent_attached_ && sent_result_header_ &&
        replay_slice_ < 0) {
      NextJobUpdate(true);  // the final message: the job as it ended
      sent_final_job_ = true;
      writing_ = true;
      StartWrite(&response_buffer_);
    } else if (IsTerminal(snapshot.state) && snapshot.state != JobState::kSucceeded) {
      return End(snapshot.error);
    } else if (NextJobUpdate(false) || NextAttached() || NextResult()) {
      writing_ = true;
      StartWrite(&response_buffer_);
    }
  }
  // Once the upload is whole, one more read sees the client's half-close (or a stray chunk),
  // even after the upload was taken as closed: it says the client has every result.
  if (!reading_ && !half_closed_ && (!s.upload_closed_ || s.in_slice_ >= s.depth_)) {
    if (!s.upload_closed_ && s.in_slice_ < s.depth_ && s.in_buffer_ == nullptr) {
      absl::StatusOr<uint8_t*> buffer = s.feed_->Fill(s.in_slice_);
      if (!buffer.ok()) return End(buffer.status());
      s.in_buffer_ = *buffer;
    }
    if (s.in_slice_ >= s.depth_ || s.in_buffer_ != nullptr) {
      reading_ = true;
      StartRead(&request_buffer_);
    }
  }
  if (!alarm_set_ && !s.upload_closed_ && sent_result_header_ && replay_slice_ < 0 &&
      s.out_slice_ == s.depth_) {
    alarm_set_ = true;
    refs_.fetch_add(1, std::memory_order_relaxed);
    alarm_.Set(absl::ToChronoTime(absl::Now() + kHalfCloseGrace),
               [this](bool fired) { OnAlarm(fired); });
  }
}

bool ProcessStreamReactor::NextJobUpdate(bool force) {
  const absl::Time now = absl::Now();
  const JobSnapshot snapshot = session_->job_->Snapshot();
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

bool ProcessStreamReactor::NextAttached() {
  if (sent_attached_) return false;
  const StreamSession& s = *session_;
  response_.Clear();
  v1::StreamAttached* attached = response_.mutable_attached();
  attached->set_resume_token(s.token_);
  attached->set_upload_slice(s.in_slice_);
  attached->set_upload_offset(static_cast<int64_t>(s.in_offset_));
  attached->set_grace_seconds(absl::ToDoubleSeconds(s.registry_.grace()));
  response_buffer_ = wire::Serialize(response_);
  sent_attached_ = true;
  return true;
}

grpc::ByteBuffer ProcessStreamReactor::ResultChunk(int64_t z, size_t offset, const uint8_t* data,
                                                   size_t n,
                                                   const std::function<grpc::Slice()>& lend) {
  constexpr int kField = v1::ProcessStreamResponse::kChunkFieldNumber;
  const auto at = static_cast<int64_t>(offset);
  if (std::vector<uint8_t> packed; session_->packer_.Pack(data, n, packed)) {
    const uint8_t* bytes = packed.data();
    const size_t size = packed.size();
    return wire::ChunkMessage(kField, z, at, wire::BorrowSlice(bytes, size, std::move(packed)),
                              static_cast<int64_t>(n));
  }
  return wire::ChunkMessage(kField, z, at, lend());  // as it is: lent, not copied
}

bool ProcessStreamReactor::NextResult() {
  StreamSession& s = *session_;
  if (!sent_result_header_) {
    if (!s.output_) {
      const core::StackInfo* output = s.drain_->output();
      if (output == nullptr) return false;  // the run has not started
      s.output_ = *output;                  // a resumed call's too, after the run
    }
    response_.Clear();
    ToProto(s.output_->shape, s.output_->type, s.output_->metadata,
            response_.mutable_result_header());
    response_buffer_ = wire::Serialize(response_);
    sent_result_header_ = true;
    return true;
  }
  if (replay_slice_ >= 0) {  // a resumed call: first what the client lacks of the tail
    const StreamSession::TailSlice& kept =
        s.tail_[static_cast<size_t>(replay_slice_ - s.tail_.front().z)];
    const size_t n = std::min(wire::kChunkBytes, s.out_slice_bytes_ - replay_offset_);
    const uint8_t* data = kept.bytes->data() + replay_offset_;
    response_buffer_ = ResultChunk(replay_slice_, replay_offset_, data, n,
                                   [&] { return wire::BorrowSlice(data, n, kept.bytes); });
    replay_offset_ += n;
    if (replay_offset_ == s.out_slice_bytes_) {
      replay_offset_ = 0;
      if (++replay_slice_ == s.out_slice_) replay_slice_ = -1;
    }
    return true;
  }
  if (s.out_slice_ >= s.depth_) return false;
  const int64_t z = s.out_slice_;
  if (!s.holding_) {
    s.out_data_ = s.drain_->Result(z);
    if (s.out_data_ == nullptr) return false;
    s.Lend(z);  // held while its chunks are being made
    s.holding_ = true;
  }
  const size_t n = std::min(wire::kChunkBytes, s.out_slice_bytes_ - s.out_offset_);
  const uint8_t* data = s.out_data_ + s.out_offset_;
  response_buffer_ = ResultChunk(z, s.out_offset_, data, n, [&] {
    return wire::BorrowSlice(data, n, StreamSession::ChunkLease(session_, z));
  });
  s.out_offset_ += n;
  if (s.out_offset_ == s.out_slice_bytes_) {
    s.KeepInTail(z, s.out_data_);
    s.holding_ = false;
    s.Return(z);
    ++s.out_slice_;
    s.out_offset_ = 0;
  }
  return true;
}

}  // namespace stackproc::server
