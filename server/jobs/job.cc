#include "server/jobs/job.h"

namespace stackproc::server {

bool IsTerminal(JobState state) {
  return state != JobState::kQueued && state != JobState::kRunning;
}

JobSnapshot Job::Snapshot() const {
  std::lock_guard lock(mutex_);
  return snapshot_;
}

int Job::Subscribe(std::function<void()> on_change) {
  std::lock_guard lock(observers_mutex_);
  observers_.emplace(next_handle_, std::move(on_change));
  return next_handle_++;
}

void Job::Unsubscribe(int handle) {
  std::lock_guard lock(observers_mutex_);
  observers_.erase(handle);
}

template <typename F>
void Job::Update(F&& change) {
  {
    std::lock_guard lock(mutex_);
    change(snapshot_);
    ++snapshot_.version;
  }
  std::lock_guard lock(observers_mutex_);
  for (auto& [handle, on_change] : observers_) on_change();
}

JobIo Job::io() const {
  std::lock_guard lock(mutex_);
  return io_;
}

void Job::Interrupt(const std::string& reason) {
  {
    std::lock_guard lock(mutex_);
    interrupt_reason_ = reason;
  }
  RequestCancel();
}

void Job::Start(absl::Time now) {
  Update([&](JobSnapshot& s) {
    if (IsTerminal(s.state)) return;  // ended while being admitted (a streamed job's call ended)
    if (s.state == JobState::kRunning) return;  // re-attached after a restart: it kept running
    s.state = JobState::kRunning;
    s.start_time = now;
    s.stage =
        s.spec.streamed || s.mode == core::ProcessMode::kStreaming ? "streaming" : "processing";
  });
}

void Job::SetStage(const std::string& stage) {
  Update([&](JobSnapshot& s) { s.stage = stage; });
}

void Job::SetProgress(const core::Progress& progress) {
  Update([&](JobSnapshot& s) { s.progress = progress; });
}

void Job::SetExecution(const Execution& execution) {
  Update([&](JobSnapshot& s) { s.execution = execution; });
}

bool Job::interrupted() const {
  std::lock_guard lock(mutex_);
  return !interrupt_reason_.empty();
}

void Job::Finish(absl::Status status, absl::Time now, std::shared_ptr<const core::Stack> result) {
  {
    std::lock_guard lock(mutex_);
    if (IsTerminal(snapshot_.state)) return;
    result_ = std::move(result);
    io_ = {};
    // Cancelled by Interrupt (a job that got to its end meanwhile keeps its outcome).
    if (absl::IsCancelled(status) && !interrupt_reason_.empty()) {
      status = absl::AbortedError(interrupt_reason_);
    }
  }
  Update([&](JobSnapshot& s) {
    s.state = status.ok()                 ? JobState::kSucceeded
              : absl::IsCancelled(status) ? JobState::kCancelled
              : absl::IsAborted(status)   ? JobState::kInterrupted
                                          : JobState::kFailed;
    s.error = status;
    s.end_time = now;
    s.stage = "done";
    s.result_available = result_ != nullptr;
    if (!status.ok()) s.memory_bytes = 0;
  });
}

uint64_t Job::DropResult() {
  uint64_t freed = 0;
  {
    std::lock_guard lock(mutex_);
    if (result_ == nullptr) return 0;
    freed = result_->size_bytes();
    result_.reset();
  }
  Update([](JobSnapshot& s) {
    s.result_available = false;
    s.memory_bytes = 0;
  });
  return freed;
}

std::shared_ptr<const core::Stack> Job::result() const {
  std::lock_guard lock(mutex_);
  return result_;
}

}  // namespace stackproc::server
