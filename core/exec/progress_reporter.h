// Turns "one more slice done" from many worker threads into ProgressCallback calls at a bounded
// rate (see ProgressCallback for the contract). Internal to core/.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

#include "absl/time/time.h"
#include "core/exec/engine.h"

namespace stackproc::core {

class ProgressReporter {
 public:
  // `total` slices of `slice_bytes` input bytes each; `callback` may be empty.
  ProgressReporter(const ProgressCallback& callback, absl::Duration interval, int64_t total,
                   uint64_t slice_bytes)
      : callback_(callback),
        interval_(interval),
        total_(total),
        slice_bytes_(slice_bytes),
        start_(absl::Now()) {}

  // Thread-safe. Reports when the interval has passed since the last report and no other
  // thread is reporting.
  void SliceDone() {
    int64_t done = done_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (!callback_) return;
    absl::Time now = absl::Now();
    std::unique_lock lock(mutex_, std::try_to_lock);
    if (!lock.owns_lock() || now - last_ < interval_) return;
    last_ = now;
    callback_(Make(done, now));
  }

  // The final report, slices_done == total.
  void Finish() {
    if (!callback_) return;
    std::lock_guard lock(mutex_);
    callback_(Make(total_, absl::Now()));
  }

 private:
  Progress Make(int64_t done, absl::Time now) const {
    Progress p;
    p.slices_done = done;
    p.slices_total = total_;
    p.bytes_done = slice_bytes_ * static_cast<uint64_t>(done);
    p.bytes_total = slice_bytes_ * static_cast<uint64_t>(total_);
    p.elapsed = now - start_;
    if (done > 0) p.eta = p.elapsed * (static_cast<double>(total_ - done) / done);
    return p;
  }

  const ProgressCallback& callback_;
  const absl::Duration interval_;
  const int64_t total_;
  const uint64_t slice_bytes_;
  const absl::Time start_;
  std::atomic<int64_t> done_{0};
  std::mutex mutex_;
  absl::Time last_ = absl::InfinitePast();
};

}  // namespace stackproc::core
