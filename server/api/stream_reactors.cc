#include "server/api/stream_reactors.h"

#include "proto/wire.h"
#include "server/api/proto_convert.h"

namespace stackproc::server {

WatchReactor::WatchReactor(std::shared_ptr<Job> job) : job_(std::move(job)) {
  subscription_ = job_->Subscribe([this] { MaybeWrite(); });
  MaybeWrite();
}

void WatchReactor::MaybeWrite() {
  std::lock_guard lock(mutex_);
  if (writing_ || finished_ || sent_final_) return;
  JobSnapshot snapshot = job_->Snapshot();
  if (sent_any_ && snapshot.version == sent_version_) return;
  sent_any_ = true;
  sent_version_ = snapshot.version;
  sent_final_ = IsTerminal(snapshot.state);
  response_.Clear();
  ToProto(snapshot, response_.mutable_job());
  writing_ = true;
  StartWrite(&response_);
}

void WatchReactor::OnWriteDone(bool ok) {
  {
    std::lock_guard lock(mutex_);
    writing_ = false;
    if (!ok || sent_final_) {
      if (!finished_) {
        finished_ = true;
        Finish(ok ? grpc::Status::OK : grpc::Status(grpc::StatusCode::CANCELLED, "watch ended"));
      }
      return;
    }
  }
  MaybeWrite();
}

void WatchReactor::OnCancel() {
  std::lock_guard lock(mutex_);
  if (!finished_ && !writing_) {
    finished_ = true;
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
  }
  // A write in flight completes with ok == false and finishes there.
}

void WatchReactor::OnDone() {
  job_->Unsubscribe(subscription_);  // waits for a notification in progress
  delete this;
}

ReadResultReactor::ReadResultReactor(std::shared_ptr<const core::Stack> result, int64_t slice,
                                     int64_t offset)
    : result_(std::move(result)), slice_(slice), offset_(static_cast<size_t>(offset)) {
  v1::ReadResultResponse header;
  ToProto(result_->shape(), result_->pixel_type(), result_->metadata(), header.mutable_header());
  response_ = wire::Serialize(header);
  StartWrite(&response_);
}

void ReadResultReactor::OnWriteDone(bool ok) {
  if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
  WriteNext();
}

void ReadResultReactor::WriteNext() {
  if (offset_ >= result_->slice_bytes()) {
    ++slice_;
    offset_ = 0;
  }
  if (slice_ >= result_->depth()) return Finish(grpc::Status::OK);
  const size_t n = std::min(wire::kChunkBytes, result_->slice_bytes() - offset_);
  response_ = wire::ChunkMessage(
      v1::ReadResultResponse::kChunkFieldNumber, slice_, static_cast<int64_t>(offset_),
      wire::BorrowSlice(result_->slice_data(slice_) + offset_, n, result_));
  offset_ += n;
  StartWrite(&response_);
}

}  // namespace stackproc::server
