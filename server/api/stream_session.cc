#include "server/api/stream_session.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/api/process_stream.h"

namespace stackproc::server {

StreamSession::StreamSession(JobManager& jobs, std::string owner, StreamSessions& registry)
    : jobs_(jobs), owner_(std::move(owner)), registry_(registry) {}

StreamSession::~StreamSession() {
  feed_.reset();  // the upload's ring and, with the job's own references gone, its window
  drain_.reset();
  job_.reset();
  core::ReturnFreeMemory();
}

StreamSession::ChunkLease::ChunkLease(std::shared_ptr<StreamSession> session, int64_t z)
    : session_(std::move(session)), z_(z) {
  session_->Lend(z_);
}

StreamSession::ChunkLease::~ChunkLease() {
  if (session_ != nullptr) session_->Return(z_);
}

void StreamSession::Lend(int64_t z) {
  std::lock_guard lock(lease_mutex_);
  ++lent_[z];
}

void StreamSession::Return(int64_t z) {
  {
    std::lock_guard lock(lease_mutex_);
    auto it = lent_.find(z);
    if (--it->second > 0) return;
    lent_.erase(it);
  }
  // gRPC may drop a chunk inside one of our calls that holds mutex_.
  if (drain_ != nullptr) Later([drain = drain_, z] { drain->Release(z); });
}

bool StreamSession::AnyLent() {
  std::lock_guard lock(lease_mutex_);
  return !lent_.empty();
}

void StreamSession::Later(std::function<void()> work) { arena_->enqueue(std::move(work)); }

void StreamSession::OnRunChange() {
  std::lock_guard lock(mutex_);
  if (attached_ != nullptr) return attached_->Pump();
  // Waiting for a resume, the job was cancelled (CancelJob, the server's stop): it ends now,
  // not after the grace, giving back the slice it was sending.
  if (!closed_ && job_ != nullptr && job_->cancel_token().IsCancelled()) {
    Close(absl::CancelledError("cancelled while its call was broken"));
    Unhook();
  }
}

bool StreamSession::Resumable() const {
  if (registry_.grace() <= absl::ZeroDuration() || closed_ || job_ == nullptr ||
      job_->cancel_token().IsCancelled()) {
    return false;
  }
  const JobState state = job_->Snapshot().state;
  return state != JobState::kFailed && state != JobState::kCancelled &&
         state != JobState::kInterrupted;
}

void StreamSession::Detach(bool broke) {
  attached_ = nullptr;
  if (registry_.closing()) {  // the server stops: no call can come back
    Close(absl::CancelledError("the server stopped while the job waited for its client"));
    Unhook();
    return;
  }
  if (broke) {
    jobs_.LogJobEvent(*job_, "stream_broke",
                      absl::StrCat(" upload_slice=", in_slice_, " result_slice=", out_slice_,
                                   " grace_s=", absl::ToInt64Seconds(registry_.grace())));
  }
  if (!broke) {
    // Done: what a resume needs is the tail and the output's description, not the run's
    // window, which goes now (not after the grace: a server of many small jobs keeps none).
    upload_closed_ = true;
    Unhook();
    Later([feed = std::move(feed_)] {});  // its ring: the drain's slots are all given back
  }
  if (grace_alarm_) grace_alarm_->Cancel();
  grace_alarm_ = std::make_unique<grpc::Alarm>();
  const uint64_t generation = ++grace_generation_;
  // The registry keeps the session while it waits: the alarm only looks for it (holding it
  // would keep it, and its job, for as long as the alarm object lives).
  grace_alarm_->Set(absl::ToChronoTime(absl::Now() + registry_.grace()),
                    [weak = weak_from_this(), generation](bool fired) {
                      std::shared_ptr<StreamSession> self = weak.lock();
                      // On the job's arena: the session may go with the last reference, and
                      // its alarm with it, which must not happen inside the alarm's callback.
                      if (fired && self)
                        self->Later([self, generation] { self->OnGraceEnd(generation); });
                    });
}

void StreamSession::OnGraceEnd(uint64_t generation) {
  std::lock_guard lock(mutex_);
  if (generation != grace_generation_ || attached_ != nullptr || closed_) return;
  if (job_->Snapshot().state == JobState::kSucceeded) {
    Close(absl::OkStatus());  // its tail is of no more use
    return;
  }
  Close(absl::CancelledError(
      absl::StrCat("the client's call broke and no call resumed the job within --stream-grace (",
                   absl::FormatDuration(registry_.grace()), ")")));
}

void StreamSession::Close(const absl::Status& status) {
  if (closed_) return;
  closed_ = true;
  if (grace_alarm_) grace_alarm_->Cancel();
  if (job_ == nullptr) return;
  if (!status.ok() && feed_ != nullptr) {  // (none once it has succeeded)
    feed_->Fail(status);                   // a running job fails with it ...
    Later([&jobs = jobs_, job = job_, status] { jobs.Dequeue(*job, status); });  // a queued one too
  }
  if (holding_) {  // the sender's hold on a slice it will not finish sending
    holding_ = false;
    Return(out_slice_);
  }
  tail_.clear();
  if (drain_ != nullptr) {  // the run must not wait for a call that is gone
    Later([drain = drain_] { drain->Stop(); });
  }
  registry_.Remove(token_);
  if (attached_ == nullptr) Unhook();  // else once its call has seen the job end
}

void StreamSession::Unhook() {
  // Outside our lock: clearing a callback waits for a call of it in progress.
  if (job_ == nullptr || unhooked_) return;
  unhooked_ = true;
  Later([job = job_, observer = observer_, feed = feed_, drain = drain_] {
    if (observer >= 0) job->Unsubscribe(observer);
    feed->SetOnRoom(nullptr);
    drain->SetOnChange(nullptr);
  });
}

void StreamSession::KeepInTail(int64_t z, const uint8_t* data) {
  if (tail_slices_ == 0) return;
  tail_.push_back({z, std::make_shared<const std::vector<uint8_t>>(data, data + out_slice_bytes_)});
  while (tail_.size() > tail_slices_) tail_.pop_front();
}

// ---- StreamSessions ----

absl::Status StreamSessions::Add(const std::string& token, std::shared_ptr<StreamSession> session) {
  std::lock_guard lock(mutex_);
  if (!sessions_.emplace(token, std::move(session)).second) {
    return absl::AlreadyExistsError("the header's resume token is another job's");
  }
  return absl::OkStatus();
}

void StreamSessions::Remove(const std::string& token) {
  std::lock_guard lock(mutex_);
  sessions_.erase(token);
}

absl::StatusOr<std::shared_ptr<StreamSession>> StreamSessions::Find(const v1::StreamResume& resume,
                                                                    const std::string& owner) {
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(resume.resume_token());
  // Another caller's token is not found either: its existence is not theirs to learn.
  if (it == sessions_.end() || it->second->owner_ != owner) {
    return absl::NotFoundError(absl::StrCat(
        "no streamed job of the caller's has that resume token (never, or no longer: it ended, "
        "or its call broke more than --stream-grace, ",
        absl::FormatDuration(grace_), ", ago)"));
  }
  return it->second;
}

void StreamSessions::CloseDetached(const absl::Status& status) {
  std::vector<std::shared_ptr<StreamSession>> sessions;
  {
    std::lock_guard lock(mutex_);
    closing_ = true;
    for (const auto& [token, session] : sessions_) sessions.push_back(session);
  }
  for (const std::shared_ptr<StreamSession>& session : sessions) {  // Close takes mutex_
    std::lock_guard lock(session->mutex_);
    if (session->attached_ == nullptr) {
      session->Close(status);
      session->Unhook();
    }
  }
}

bool StreamSessions::closing() {
  std::lock_guard lock(mutex_);
  return closing_;
}

}  // namespace stackproc::server
