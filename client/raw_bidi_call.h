// A bidirectional streaming call with raw byte buffers (proto/wire.h), used from two threads the
// way the synchronous API is: one thread writes, one reads, each call blocking until its
// operation is done. (The synchronous API has no raw form; this is the callback API's generic
// stub behind the same shape.)
#pragma once

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <mutex>
#include <string>

namespace stackproc::client {

class RawBidiCall final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  // Starts `method` ("/package.Service/Method") on `context`, which must outlive Finish().
  RawBidiCall(grpc::GenericStub& stub, grpc::ClientContext& context, const std::string& method);

  // The writer. Write is false once the call has ended (Finish says why). After the last
  // write, WritesDone half-closes; a writer that gives up calls StopWriting instead.
  bool Write(const grpc::ByteBuffer& message);
  void WritesDone();
  void StopWriting();

  // The reader: false at the end of the stream.
  bool Read(grpc::ByteBuffer& message);

  // Waits for the call to end (after the writer has stopped) and returns its status.
  grpc::Status Finish();

 private:
  void OnWriteDone(bool ok) override;
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;
  // The writer's and the reader's holds keep OnDone back while they may still start an
  // operation from outside a reaction.
  void ReleaseWriter();
  void ReleaseReader();

  std::mutex mutex_;
  std::condition_variable changed_;
  grpc::ByteBuffer out_, in_;
  bool writing_ = false, write_ok_ = true, writer_held_ = true;
  bool reading_ = false, read_ok_ = true, reader_held_ = true;
  bool done_ = false;
  grpc::Status status_;
};

}  // namespace stackproc::client
