// ProcessStream: a streamed job on one bidirectional call. The upload fills a core::SliceStream
// (slices are processed as they complete) and the results flow back in slice order on the same
// call. Back-pressure both ways: the next chunk is read only when the stream's window has room
// for it, and the next response is written only when the previous write is done; so server
// memory is the window, whatever the stack's size and however slowly the client reads.
//
// The call is raw (proto/wire.h): result chunks go on the wire straight from the stream's
// slice buffers. Each chunk lends its slice to gRPC, which may hold it after the write has
// completed; the stream gets the slice back when the last chunk is returned, and the reactor
// is deleted when gRPC is done with the call and with every chunk.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/slice_stream.h"
#include "server/job_manager.h"
#include "stackproc/v1/service.grpc.pb.h"

namespace stackproc::server {

class ProcessStreamReactor final
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  static constexpr size_t kChunkBytes = 1 << 20;

  // `owner`: the caller, recorded as the job's owner.
  ProcessStreamReactor(grpc::CallbackServerContext* context, JobManager& jobs, std::string owner);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  // A result chunk lent to gRPC: keeps its slice out of the window, and the reactor alive,
  // until gRPC drops it.
  class ChunkLease {
   public:
    ChunkLease(ProcessStreamReactor* reactor, int64_t z);
    ChunkLease(ChunkLease&& other) noexcept;
    ChunkLease& operator=(ChunkLease&&) = delete;
    ~ChunkLease();

   private:
    ProcessStreamReactor* reactor_;
    int64_t z_;
  };

  ~ProcessStreamReactor() override;
  void Unref();
  // Result slice z is lent once more / once less (lease_mutex_); the stream gets it back
  // when nothing holds it.
  void Lend(int64_t z);
  void Return(int64_t z);

  // Validates the header, plans the stream and queues the job.
  absl::Status StartJob(const v1::StreamHeader& header);
  // Takes the message in request_buffer_: the header, or a chunk.
  absl::Status TakeMessage();
  // Checks one uploaded chunk and copies it into its slice with `copy_to`; a complete slice
  // starts processing.
  absl::Status TakeChunk(int64_t slice, int64_t offset, size_t n,
                         absl::FunctionRef<void(uint8_t*)> copy_to);
  // Called from the stream's workers after a slice is processed.
  void OnStreamChange();
  // The rest take mutex_. Pump starts the next read and the next write when they can go.
  void Pump();
  // Whether the next response is a progress update, and fills it if so.
  bool NextJobUpdate(bool force);
  bool NextResult();
  // Ends the job and the call with `status` (once the write in flight is done).
  void End(const absl::Status& status);

  grpc::CallbackServerContext* const context_;
  JobManager& jobs_;
  const std::string owner_;
  std::mutex mutex_;
  grpc::ByteBuffer request_buffer_;
  v1::ProcessStreamRequest request_;
  grpc::ByteBuffer response_buffer_;  // the write in flight
  v1::ProcessStreamResponse response_;
  std::unique_ptr<core::SliceStream> stream_;
  std::shared_ptr<Job> job_;

  bool admitted_ = false;
  bool reading_ = false;
  bool writing_ = false;
  bool upload_closed_ = false;  // the client half-closed after the last slice
  bool ended_ = false;          // End ran; Finish follows when no write is in flight
  bool finish_called_ = false;
  bool done_ = false;  // OnDone ran: stream callbacks do nothing
  bool sent_result_header_ = false;
  bool sent_final_job_ = false;
  absl::Status end_status_;

  int64_t in_slice_ = 0;  // the upload's position
  size_t in_offset_ = 0;
  uint8_t* in_buffer_ = nullptr;
  int64_t out_slice_ = 0;  // the results' position
  size_t out_offset_ = 0;

  uint64_t sent_job_version_ = 0;
  JobState sent_state_ = JobState::kQueued;
  int64_t sent_processed_ = -1;
  absl::Time last_job_sent_ = absl::InfinitePast();
  absl::Time started_ = absl::InfinitePast();

  std::atomic<int> refs_{1};  // gRPC's (until OnDone) and one per chunk lent
  std::mutex lease_mutex_;    // never held while calling gRPC or the stream's callbacks
  std::unordered_map<int64_t, int> lent_;  // result slice -> holds (chunks, and the sender's)
};

}  // namespace stackproc::server
