// A streamed job beyond its call (StreamSession): what the call was doing, kept while the client
// may resume it after the call breaks, and the sessions by their resume token (StreamSessions).
// ProcessStreamReactor (process_stream.h) is the call; these are what outlives it.
#pragma once

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>
#include <tbb/task_arena.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/io/feed.h"
#include "proto/wire.h"
#include "server/jobs/job_manager.h"
#include "stackproc/v1/service.pb.h"

namespace stackproc::server {

class ProcessStreamReactor;
class StreamSessions;

// The part of a streamed job that outlives one call: the job, its feed and drain, where the
// upload and the results are, the results sent lately, and the call attached now, if any. Its
// mutex guards it and the per-call state of every call on it.
class StreamSession final : public std::enable_shared_from_this<StreamSession> {
 public:
  StreamSession(JobManager& jobs, std::string owner, StreamSessions& registry);
  ~StreamSession();

 private:
  friend class ProcessStreamReactor;
  friend class StreamSessions;

  // A result chunk lent to gRPC: keeps its slice lent until gRPC drops it.
  class ChunkLease {
   public:
    ChunkLease(std::shared_ptr<StreamSession> session, int64_t z);
    ChunkLease(ChunkLease&& other) noexcept = default;
    ChunkLease& operator=(ChunkLease&&) = delete;
    ~ChunkLease();

   private:
    std::shared_ptr<StreamSession> session_;
    int64_t z_;
  };

  // Result slice z is lent once more / once less (lease_mutex_); the sink gets it back when
  // nothing holds it.
  void Lend(int64_t z);
  void Return(int64_t z);
  bool AnyLent();
  // Runs `work` on the job's arena: what calls into the run (which may call us back) never
  // runs inside one of our callbacks, which hold mutex_.
  void Later(std::function<void()> work);
  // Called by the job, the source and the sink when something changed: the attached call goes
  // on.
  void OnRunChange();
  // The rest take mutex_.
  // Whether a call that breaks now leaves the job waiting for a resume.
  bool Resumable() const;
  // The attached call broke (or ended, its job done): the job waits for a resume until the
  // grace runs out.
  void Detach(bool broke);
  void OnGraceEnd(uint64_t generation);
  // The job is over for its calls: `status` not OK fails it (a queued one too); the sender's
  // hold is given back, the sink stopped, the session forgotten.
  void Close(const absl::Status& status);
  // Once closed and no call is attached: the job, the source and the sink stop calling us.
  void Unhook();
  // Fully sent result slice `z` (at `data`), kept for a resume.
  void KeepInTail(int64_t z, const uint8_t* data);

  JobManager& jobs_;
  const std::string owner_;
  StreamSessions& registry_;
  std::mutex mutex_;
  std::string token_;
  std::shared_ptr<core::FeedSource> feed_;
  std::shared_ptr<core::DrainSink> drain_;
  std::shared_ptr<Job> job_;
  int observer_ = -1;                 // our Job::Subscribe handle
  tbb::task_arena* arena_ = nullptr;  // the job's
  ProcessStreamReactor* attached_ = nullptr;
  bool closed_ = false;                       // Close ran: no call takes it up
  bool unhooked_ = false;                     // Unhook ran
  std::unique_ptr<grpc::Alarm> grace_alarm_;  // while detached
  uint64_t grace_generation_ = 0;             // a detach's; a resume moves it on

  v1::WireCompression wire_ = v1::WIRE_COMPRESSION_NONE;    // the header's, both ways
  wire::ChunkPacker packer_{v1::WIRE_COMPRESSION_NONE, 1};  // the results'

  int64_t depth_ = 0;  // the upload's
  size_t in_slice_bytes_ = 0;
  int64_t in_slice_ = 0;  // the upload's position
  size_t in_offset_ = 0;
  uint8_t* in_buffer_ = nullptr;  // slice in_slice_'s, from the source
  bool acked_ = false;            // the client half-closed with every result out: it has them
  bool upload_closed_ = false;    // the client half-closed after the last slice (or the grace
                                  // for it ran out)
  size_t out_slice_bytes_ = 0;
  int64_t out_slice_ = 0;  // the results' position
  size_t out_offset_ = 0;
  std::optional<core::StackInfo> output_;  // what the ResultHeader says, once the run has begun
  const uint8_t* out_data_ = nullptr;      // slice out_slice_'s, from the sink, while held
  bool holding_ = false;                   // the sender holds slice out_slice_ (Lend)

  // The result slices sent last, copies: at most tail_slices_ of them (none without a grace).
  struct TailSlice {
    int64_t z;
    std::shared_ptr<const std::vector<uint8_t>> bytes;
  };
  std::deque<TailSlice> tail_;
  size_t tail_slices_ = 0;

  std::mutex lease_mutex_;                 // never held while calling gRPC or the run
  std::unordered_map<int64_t, int> lent_;  // result slice -> holds (chunks, and the sender's)
};

// The sessions waiting for, or on, a call: by resume token.
class StreamSessions {
 public:
  explicit StreamSessions(JobManager& jobs) : jobs_(jobs), grace_(jobs.options().stream_grace) {}
  absl::Duration grace() const { return grace_; }
  JobManager& jobs() { return jobs_; }
  // AlreadyExists for a token another session has.
  absl::Status Add(const std::string& token, std::shared_ptr<StreamSession> session);
  void Remove(const std::string& token);
  // The session `resume` names, when `owner` may take it up; its checks are the call's.
  absl::StatusOr<std::shared_ptr<StreamSession>> Find(const v1::StreamResume& resume,
                                                      const std::string& owner);
  // Closes with `status` every session no call is attached to, and from now on every one whose
  // call breaks, at once (the server stops).
  void CloseDetached(const absl::Status& status);
  bool closing();

 private:
  JobManager& jobs_;
  const absl::Duration grace_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<StreamSession>> sessions_;
  bool closing_ = false;
};

}  // namespace stackproc::server
