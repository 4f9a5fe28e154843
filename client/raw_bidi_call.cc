#include "client/raw_bidi_call.h"

namespace stackproc::client {

RawBidiCall::RawBidiCall(grpc::GenericStub& stub, grpc::ClientContext& context,
                         const std::string& method) {
  stub.PrepareBidiStreamingCall(&context, method, grpc::StubOptions(), this);
  AddMultipleHolds(2);  // the writer's and the reader's
  StartCall();
}

bool RawBidiCall::Write(const grpc::ByteBuffer& message) {
  {
    std::lock_guard lock(mutex_);
    if (!write_ok_) return false;
    out_ = message;  // shares the slices
    writing_ = true;
  }
  StartWrite(&out_);  // not under mutex_: the reaction may run on this thread
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return !writing_; });
  out_.Clear();
  return write_ok_;
}

void RawBidiCall::WritesDone() {
  StartWritesDone();
  ReleaseWriter();
}

void RawBidiCall::StopWriting() { ReleaseWriter(); }

bool RawBidiCall::Read(grpc::ByteBuffer& message) {
  {
    std::lock_guard lock(mutex_);
    if (!read_ok_) return false;
    reading_ = true;
  }
  StartRead(&in_);
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return !reading_; });
  if (read_ok_) {
    message.Swap(&in_);
    return true;
  }
  lock.unlock();
  ReleaseReader();
  return false;
}

grpc::Status RawBidiCall::Finish() {
  ReleaseWriter();
  ReleaseReader();  // a reader that stopped early (its caller cancelled the call)
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return done_; });
  return status_;
}

void RawBidiCall::OnWriteDone(bool ok) {
  std::lock_guard lock(mutex_);
  writing_ = false;
  write_ok_ = write_ok_ && ok;
  changed_.notify_all();
}

void RawBidiCall::OnReadDone(bool ok) {
  std::lock_guard lock(mutex_);
  reading_ = false;
  read_ok_ = ok;
  changed_.notify_all();
}

void RawBidiCall::OnDone(const grpc::Status& status) {
  std::lock_guard lock(mutex_);
  status_ = status;
  done_ = true;
  changed_.notify_all();
}

void RawBidiCall::ReleaseWriter() {
  {
    std::lock_guard lock(mutex_);
    if (!writer_held_) return;
    writer_held_ = false;
  }
  RemoveHold();  // may run OnDone on this thread
}

void RawBidiCall::ReleaseReader() {
  {
    std::lock_guard lock(mutex_);
    if (!reader_held_) return;
    reader_held_ = false;
  }
  RemoveHold();
}

}  // namespace stackproc::client
