// Server-streaming reactors: one write in flight, nothing blocks inside a callback.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <mutex>

#include "server/jobs/job.h"
#include "stackproc/v1/service.grpc.pb.h"

namespace stackproc::server {

// Streams snapshots of a job: the current one at once, then the newest one after every change
// (changes that arrive while a write is in flight coalesce into one), ending after the job's
// final state. A client that goes away only ends the stream.
class WatchReactor final : public grpc::ServerWriteReactor<v1::WatchJobResponse> {
 public:
  explicit WatchReactor(std::shared_ptr<Job> job);
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  void MaybeWrite();  // under no lock

  std::shared_ptr<Job> job_;
  int subscription_ = -1;
  std::mutex mutex_;
  bool writing_ = false;
  bool finished_ = false;
  bool sent_final_ = false;
  uint64_t sent_version_ = 0;
  bool sent_any_ = false;
  v1::WatchJobResponse response_;
};

// Streams an in-memory result: a header, then chunks of up to 1 MiB from (slice, offset).
// The chunks go on the wire straight from the result's buffer, which they keep alive.
class ReadResultReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  ReadResultReactor(std::shared_ptr<const core::Stack> result, int64_t slice, int64_t offset);
  void OnWriteDone(bool ok) override;
  void OnCancel() override {}
  void OnDone() override { delete this; }

 private:
  void WriteNext();

  std::shared_ptr<const core::Stack> result_;
  int64_t slice_;
  size_t offset_;
  grpc::ByteBuffer response_;
};

}  // namespace stackproc::server
