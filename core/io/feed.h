// A slice source fed from outside the run and a slice sink drained from outside it: what a
// network transport (the ProcessStream call) plugs into the engine. Neither blocks the side that
// feeds or drains (a gRPC reactor must never block); the run waits for them without holding a
// thread of the arena (SliceSource::Ready, lending sinks).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "core/exec/engine.h"

namespace stackproc::core {

// A callback that can be replaced or cleared while another thread may be calling it: clearing
// waits for a call in progress, so that what the callback refers to can go away afterwards.
class Notifier {
 public:
  void Set(std::function<void()> callback) {
    std::lock_guard lock(mutex_);
    callback_ = std::move(callback);
  }
  void Notify() {
    std::lock_guard lock(mutex_);
    if (callback_) callback_();
  }

 private:
  std::mutex mutex_;  // held while the callback runs
  std::function<void()> callback_;
};

// The feeder fills slices in order into buffers of the source's own (a ring of the run's window
// plus one, allocated as they are first filled), and the run lends them: one copy, from the
// feeder's bytes into the ring. Thread-safe: one feeder, the run, and any thread for Fail.
class FeedSource final : public SliceSource {
 public:
  explicit FeedSource(StackInfo info);

  // The feeder's side; none of these blocks.
  // The buffer for slice `z`, the next in order, once the ring has room for it (the run has
  // given back slice z - ring); nullptr until then. InvalidArgument for a slice out of order,
  // ResourceExhausted when the buffer cannot be allocated.
  absl::StatusOr<uint8_t*> Fill(int64_t z);
  // Slice `z` is filled.
  void Complete(int64_t z);
  // Nothing came after the last slice (the upload was half-closed, or given up on cleanly).
  void End();
  // The feed broke: the run fails with `status` (the first one given wins).
  void Fail(absl::Status status);
  // Called after the run gives a slice back or fails (any thread, outside the source's lock):
  // the feeder may have room again. Clearing it (nullptr) waits for a call in progress.
  void SetOnRoom(std::function<void()> on_room) { on_room_.Set(std::move(on_room)); }
  // The first failure, OK while none.
  absl::Status status() const;

  // SliceSource.
  const StackInfo& info() const override { return info_; }
  SourceTraits traits() const override { return {.fed = true}; }
  uint8_t* Lend(int64_t z) override;
  bool lends_writable() const override { return true; }
  absl::Status Start(std::shared_ptr<Waker> waker, int64_t window_slices) override;
  absl::StatusOr<bool> Ready(int64_t z) override;
  absl::Status Read(int64_t z, uint8_t* buffer) override;
  void Done(int64_t z) override;

 private:
  cv::Mat& SlotFor(int64_t z) { return ring_[static_cast<size_t>(z % std::ssize(ring_))]; }

  const StackInfo info_;
  const SliceFormat format_;
  mutable std::mutex mutex_;
  std::shared_ptr<Waker> waker_;
  std::vector<cv::Mat> ring_;
  int64_t filled_ = 0;  // slices complete
  int64_t done_ = 0;    // slices given back, in order (the lowest not given back)
  std::vector<bool> given_back_;
  bool ended_ = false;
  absl::Status status_;
  Notifier on_room_;
};

// The run writes result slices; the drainer takes them in order, lends them on (a gRPC message
// that points into the slice), and gives each back when nothing refers to it any more.
// Thread-safe.
class DrainSink final : public SliceSink {
 public:
  // The drainer's side.
  // Called after the run opens the sink, writes a slice, or fails (from the run's threads,
  // outside the sink's lock). Clearing it (nullptr) waits for a call in progress.
  void SetOnChange(std::function<void()> on_change) { on_change_.Set(std::move(on_change)); }
  // What the output is, once the run has opened the sink (nullptr before).
  const StackInfo* output() const;
  // Result slice `z` once written (nullptr before), until Release(z).
  const uint8_t* Result(int64_t z);
  // The drainer is done with slice `z` (any thread; calls into the run, which never calls the
  // drainer back from inside it).
  void Release(int64_t z);
  // The drainer will take no more slices (its call ended): every slice written and not taken
  // yet is given back now, and any written later at once.
  void Stop();

  // SliceSink.
  SinkTraits traits() const override { return {.lends = true}; }
  absl::Status Open(const StackInfo& output, int64_t window_slices,
                    std::function<void(int64_t)> release) override;
  absl::Status Write(int64_t z, const uint8_t* data) override;
  void Abandon() override;
  absl::Status Close() override { return absl::OkStatus(); }

 private:
  mutable std::mutex mutex_;
  bool open_ = false;
  bool stopped_ = false;
  StackInfo output_;
  std::function<void(int64_t)> release_;
  int64_t written_ = 0;
  int64_t taken_ = 0;  // Result() was asked for slices below this: the drainer releases them
  std::vector<const uint8_t*> slots_;  // written slice z at z % window, until released
  std::vector<bool> held_;
  Notifier on_change_;
};

}  // namespace stackproc::core
