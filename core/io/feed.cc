#include "core/io/feed.h"

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"

namespace stackproc::core {

FeedSource::FeedSource(StackInfo info)
    : info_(std::move(info)),
      format_{static_cast<int>(info_.shape.height), static_cast<int>(info_.shape.width),
              info_.type} {}

absl::StatusOr<uint8_t*> FeedSource::Fill(int64_t z) {
  std::lock_guard lock(mutex_);
  if (!status_.ok()) return status_;
  if (z != filled_ || z >= info_.shape.depth) {
    return absl::InvalidArgumentError(
        absl::StrCat("slice ", z, " is not the next slice (", filled_, ")"));
  }
  if (ring_.empty() || z - done_ >= std::ssize(ring_)) return nullptr;  // no room yet
  cv::Mat& slot = SlotFor(z);
  if (slot.empty()) {
    try {
      slot = cv::Mat(format_.height, format_.width, CvType(format_.type));
    } catch (const std::exception&) {
      return absl::ResourceExhaustedError(absl::StrCat("cannot allocate the buffer of slice ", z,
                                                       " (", format_.bytes(), " bytes)"));
    }
  }
  return slot.data;
}

void FeedSource::Complete(int64_t z) {
  std::shared_ptr<Waker> waker;
  {
    std::lock_guard lock(mutex_);
    if (z != filled_) return;
    ++filled_;
    waker = waker_;
  }
  if (waker != nullptr) waker->Wake();
}

void FeedSource::End() {
  std::shared_ptr<Waker> waker;
  {
    std::lock_guard lock(mutex_);
    ended_ = true;
    waker = waker_;
  }
  if (waker != nullptr) waker->Wake();
}

void FeedSource::Fail(absl::Status status) {
  std::shared_ptr<Waker> waker;
  {
    std::lock_guard lock(mutex_);
    if (!status_.ok()) return;
    status_ = std::move(status);
    waker = waker_;
  }
  if (waker != nullptr) waker->Wake();
}

absl::Status FeedSource::status() const {
  std::lock_guard lock(mutex_);
  return status_;
}

uint8_t* FeedSource::Lend(int64_t z) {
  std::lock_guard lock(mutex_);
  return SlotFor(z).data;
}

absl::Status FeedSource::Start(std::shared_ptr<Waker> waker, int64_t window_slices) {
  {
    std::lock_guard lock(mutex_);
    waker_ = std::move(waker);
    ring_.resize(static_cast<size_t>(window_slices + 1));
    given_back_.assign(ring_.size(), false);
  }
  on_room_.Notify();
  return absl::OkStatus();
}

absl::StatusOr<bool> FeedSource::Ready(int64_t z) {
  std::lock_guard lock(mutex_);
  if (!status_.ok()) return status_;
  return z < info_.shape.depth ? z < filled_ : ended_;
}

absl::Status FeedSource::Read(int64_t z, uint8_t* buffer) {
  (void)buffer;
  return absl::InternalError(absl::StrCat("slice ", z, " of a fed source was not lent"));
}

void FeedSource::Done(int64_t z) {
  {
    std::lock_guard lock(mutex_);
    if (z < done_ || z >= filled_) return;
    given_back_[static_cast<size_t>(z % std::ssize(ring_))] = true;
    while (done_ < filled_ && given_back_[static_cast<size_t>(done_ % std::ssize(ring_))]) {
      given_back_[static_cast<size_t>(done_ % std::ssize(ring_))] = false;
      ++done_;
    }
  }
  on_room_.Notify();
}

const StackInfo* DrainSink::output() const {
  std::lock_guard lock(mutex_);
  return open_ ? &output_ : nullptr;
}

const uint8_t* DrainSink::Result(int64_t z) {
  std::lock_guard lock(mutex_);
  if (!open_ || stopped_ || z < 0 || z >= written_) return nullptr;
  const auto i = static_cast<size_t>(z % std::ssize(slots_));
  if (!held_[i] || z < written_ - std::ssize(slots_)) return nullptr;
  taken_ = std::max(taken_, z + 1);
  return slots_[i];
}

void DrainSink::Release(int64_t z) {
  std::function<void(int64_t)> release;
  {
    std::lock_guard lock(mutex_);
    const auto i = static_cast<size_t>(z % std::ssize(slots_));
    if (!held_[i]) return;
    held_[i] = false;
    release = release_;
  }
  release(z);
}

void DrainSink::Stop() {
  std::vector<int64_t> untaken;
  std::function<void(int64_t)> release;
  {
    std::lock_guard lock(mutex_);
    stopped_ = true;
    for (int64_t z = taken_; z < written_; ++z) {
      const auto i = static_cast<size_t>(z % std::ssize(slots_));
      if (held_[i]) {
        held_[i] = false;
        untaken.push_back(z);
      }
    }
    release = release_;
  }
  for (int64_t z : untaken) release(z);
}

absl::Status DrainSink::Open(const StackInfo& output, int64_t window_slices,
                             std::function<void(int64_t)> release) {
  {
    std::lock_guard lock(mutex_);
    output_ = output;
    release_ = std::move(release);
    slots_.assign(static_cast<size_t>(window_slices), nullptr);
    held_.assign(static_cast<size_t>(window_slices), false);
    open_ = true;
  }
  on_change_.Notify();
  return absl::OkStatus();
}

absl::Status DrainSink::Write(int64_t z, const uint8_t* data) {
  bool stopped = false;
  {
    std::lock_guard lock(mutex_);
    const auto i = static_cast<size_t>(z % std::ssize(slots_));
    slots_[i] = data;
    held_[i] = !stopped_;
    written_ = z + 1;
    stopped = stopped_;
  }
  if (stopped) {
    release_(z);
  } else {
    on_change_.Notify();
  }
  return absl::OkStatus();
}

void DrainSink::Abandon() {
  Stop();
  on_change_.Notify();
}

}  // namespace stackproc::core
