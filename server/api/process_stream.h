// ProcessStream: a streamed job on a bidirectional call. The call is a transport only: it
// feeds the upload into a core::FeedSource and drains the results from a core::DrainSink, and
// the job manager runs the job like any other (admission, the engine, cancellation, progress,
// the job table). Back-pressure both ways: the next chunk is read only when the source has room
// for its slice, and the next response is written only when the previous write is done; so
// server memory is the window, whatever the stack's size and however slowly the client reads.
//
// The call is raw (proto/wire.h): result chunks go on the wire straight from the run's slice
// buffers. Each such chunk lends its slice to gRPC, which may hold it after the write has
// completed; the sink gets the slice back when the last chunk is returned. With wire
// compression (StreamHeader.wire_compression) a chunk that compresses goes as a buffer of its
// own instead, made here as the response is, and lends nothing; an uploaded one is
// decompressed into its slice.
//
// A job outlives its call (StreamSession): when the call breaks (the client went away) the job
// waits --stream-grace for a new call to take it up (StreamResume, in the call's metadata),
// with the upload where it was and the last results sent kept (the tail), since gRPC lets go
// of a chunk when the kernel has it, not when the client has; after the grace it is cancelled,
// as when there is no grace.
#pragma once

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "proto/wire.h"
#include "server/api/stream_session.h"
#include "stackproc/v1/service.grpc.pb.h"

namespace stackproc::server {

class ProcessStreamReactor final
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  // Once every result is out, how long the call waits for the client's half-close before it
  // takes the upload as complete (a client that never half-closes still gets its end).
  static constexpr absl::Duration kHalfCloseGrace = absl::Seconds(1);

  // A new job's call: its first message is the header. `owner`: the caller, the job's owner.
  ProcessStreamReactor(grpc::CallbackServerContext* context, StreamSessions& sessions,
                       std::string owner);
  // A resumed job's call (StreamSessions::Find's session), from the client's result position.
  ProcessStreamReactor(grpc::CallbackServerContext* context, std::shared_ptr<StreamSession> session,
                       const v1::StreamResume& resume);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  friend class StreamSession;

  ~ProcessStreamReactor() override = default;
  void Unref();

  // Validates the header and submits the job; the job's observer is added by the caller,
  // outside the session's mutex.
  absl::Status StartJob(const v1::StreamHeader& header);
  // StartJob's job: the header's stack, planned and admitted.
  absl::Status SubmitJob(const v1::StreamHeader& header);
  // Takes the message in request_buffer_: the header, or a chunk.
  absl::Status TakeMessage();
  // Checks one uploaded chunk of `stored` bytes (holding `raw_size` pixel bytes compressed, or,
  // raw_size 0, as they are) and puts its pixels into their slice with `unpack`; a complete
  // slice goes to the run.
  absl::Status TakeChunk(int64_t slice, int64_t offset, int64_t raw_size, size_t stored,
                         absl::FunctionRef<absl::Status(uint8_t*)> unpack);
  void OnAlarm(bool fired);
  // The rest run under the session's mutex. Pump starts the next read and the next write when
  // they can go.
  void Pump();
  bool NextJobUpdate(bool force);
  bool NextAttached();
  bool NextResult();
  // One result chunk: `n` bytes at `data`, slice z's from `offset`; compressed when that pays,
  // else `lend`'s slice of them (which keeps them while gRPC holds it).
  grpc::ByteBuffer ResultChunk(int64_t z, size_t offset, const uint8_t* data, size_t n,
                               const std::function<grpc::Slice()>& lend);
  // Ends the call with `status` once the write in flight is done and (attached) the job has
  // ended. A client that went away (`client_gone`) from a job that may resume leaves it
  // waiting instead.
  void End(const absl::Status& status, bool client_gone = false);
  // The call broke (the client went away): End so.
  void ClientGone();
  bool attached() const { return session_->attached_ == this; }

  grpc::CallbackServerContext* const context_;
  std::shared_ptr<StreamSession> session_;
  grpc::ByteBuffer request_buffer_;
  v1::ProcessStreamRequest request_;
  std::vector<uint8_t> scratch_;      // a compressed chunk that spans received slices
  grpc::ByteBuffer response_buffer_;  // the write in flight
  v1::ProcessStreamResponse response_;
  grpc::Alarm alarm_;  // kHalfCloseGrace

  bool reading_ = false;
  bool writing_ = false;
  bool alarm_set_ = false;
  bool ended_ = false;  // End ran; Finish follows when no write is in flight and the job ended
  bool finish_called_ = false;
  bool done_ = false;  // OnDone ran: callbacks do nothing
  bool sent_attached_ = false;
  bool half_closed_ = false;  // this call's client half-closed
  bool sent_result_header_ = false;
  bool sent_final_job_ = false;
  absl::Status end_status_;
  // A resumed call's results first come from the session's tail, from here.
  int64_t replay_slice_ = -1;
  size_t replay_offset_ = 0;

  uint64_t sent_job_version_ = 0;
  JobState sent_state_ = JobState::kQueued;
  absl::Time last_job_sent_ = absl::InfinitePast();

  std::atomic<int> refs_{1};  // gRPC's (until OnDone) and the half-close alarm's
};

}  // namespace stackproc::server
