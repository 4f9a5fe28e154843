// ProcessStream: a streamed job on one bidirectional call. The call is a transport only: it
// feeds the upload into a core::FeedSource and drains the results from a core::DrainSink, and
// the job manager runs the job like any other (admission, the engine, cancellation, progress,
// the job table). Back-pressure both ways: the next chunk is read only when the source has room
// for its slice, and the next response is written only when the previous write is done; so
// server memory is the window, whatever the stack's size and however slowly the client reads.
//
// The call is raw (proto/wire.h): result chunks go on the wire straight from the run's slice
// buffers. Each chunk lends its slice to gRPC, which may hold it after the write has completed;
// the sink gets the slice back when the last chunk is returned, and the reactor is deleted
// when gRPC is done with the call and with every chunk.
#pragma once

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>
#include <tbb/task_arena.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/io/feed.h"
#include "server/jobs/job_manager.h"
#include "stackproc/v1/service.grpc.pb.h"

namespace stackproc::server {

class ProcessStreamReactor final
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  // Once every result is out, how long the call waits for the client's half-close before it
  // takes the upload as complete (a client that never half-closes still gets its end).
  static constexpr absl::Duration kHalfCloseGrace = absl::Seconds(1);

  // `owner`: the caller, recorded as the job's owner.
  ProcessStreamReactor(grpc::CallbackServerContext* context, JobManager& jobs, std::string owner);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  // A result chunk lent to gRPC: keeps its slice lent, and the reactor alive, until gRPC
  // drops it.
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
  // Result slice z is lent once more / once less (lease_mutex_); the sink gets it back when
  // nothing holds it.
  void Lend(int64_t z);
  void Return(int64_t z);
  // Runs `work` on the job's arena: what calls into the run (which may call us back) never
  // runs inside one of our callbacks, which hold mutex_.
  void Later(std::function<void()> work);

  // Validates the header and submits the job; the job's observer is added by the caller,
  // outside mutex_.
  absl::Status StartJob(const v1::StreamHeader& header);
  // Takes the message in request_buffer_: the header, or a chunk.
  absl::Status TakeMessage();
  // Checks one uploaded chunk and copies it into its slice with `copy_to`; a complete slice
  // goes to the run.
  absl::Status TakeChunk(int64_t slice, int64_t offset, size_t n,
                         absl::FunctionRef<void(uint8_t*)> copy_to);
  // Called by the job, the source and the sink when something changed.
  void OnRunChange();
  void OnAlarm(bool fired);
  // The rest take mutex_. Pump starts the next read and the next write when they can go.
  void Pump();
  bool NextJobUpdate(bool force);
  bool NextResult();
  // Ends the call with `status` once the write in flight is done and the job has ended.
  void End(const absl::Status& status);

  grpc::CallbackServerContext* const context_;
  JobManager& jobs_;
  const std::string owner_;
  std::mutex mutex_;
  grpc::ByteBuffer request_buffer_;
  v1::ProcessStreamRequest request_;
  grpc::ByteBuffer response_buffer_;  // the write in flight
  v1::ProcessStreamResponse response_;
  std::shared_ptr<core::FeedSource> feed_;
  std::shared_ptr<core::DrainSink> drain_;
  std::shared_ptr<Job> job_;
  int observer_ = -1;                 // our Job::Subscribe handle
  tbb::task_arena* arena_ = nullptr;  // the job's
  grpc::Alarm alarm_;                 // kHalfCloseGrace

  bool reading_ = false;
  bool writing_ = false;
  bool upload_closed_ =
      false;  // the client half-closed after the last slice (or the grace ran out)
  bool alarm_set_ = false;
  bool ended_ = false;  // End ran; Finish follows when no write is in flight and the job ended
  bool finish_called_ = false;
  bool done_ = false;  // OnDone ran: callbacks do nothing
  bool sent_result_header_ = false;
  bool sent_final_job_ = false;
  absl::Status end_status_;

  int64_t depth_ = 0;  // the upload's
  size_t in_slice_bytes_ = 0;
  int64_t in_slice_ = 0;  // the upload's position
  size_t in_offset_ = 0;
  uint8_t* in_buffer_ = nullptr;  // slice in_slice_'s, from the source
  size_t out_slice_bytes_ = 0;
  int64_t out_slice_ = 0;  // the results' position
  size_t out_offset_ = 0;
  const uint8_t* out_data_ = nullptr;  // slice out_slice_'s, from the sink

  uint64_t sent_job_version_ = 0;
  JobState sent_state_ = JobState::kQueued;
  absl::Time last_job_sent_ = absl::InfinitePast();

  std::atomic<int> refs_{1};  // gRPC's (until OnDone), the alarm's, and one per chunk lent
  std::mutex lease_mutex_;    // never held while calling gRPC or the run
  std::unordered_map<int64_t, int> lent_;  // result slice -> holds (chunks, and the sender's)
};

}  // namespace stackproc::server
