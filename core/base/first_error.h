// Collects the errors of work running in parallel over slices or pages: keeps the one of the
// lowest index (what a serial loop would have hit first) and cancels the rest of the work.
// Internal to core/.
#pragma once

#include <tbb/task_group.h>

#include <cstdint>
#include <limits>
#include <mutex>

#include "absl/status/status.h"

namespace stackproc::core {

class FirstError {
 public:
  // `context` (may be null) is cancelled at the first error.
  explicit FirstError(tbb::task_group_context* context = nullptr) : context_(context) {}

  // Thread-safe.
  void Set(int64_t index, absl::Status status) {
    {
      std::lock_guard lock(mutex_);
      if (index < index_) {
        index_ = index;
        status_ = std::move(status);
      }
      failed_ = true;
    }
    if (context_ != nullptr) context_->cancel_group_execution();
  }
  bool failed() const {
    std::lock_guard lock(mutex_);
    return failed_;
  }
  absl::Status Take() {
    std::lock_guard lock(mutex_);
    return std::move(status_);
  }

 private:
  tbb::task_group_context* const context_;
  mutable std::mutex mutex_;
  int64_t index_ = std::numeric_limits<int64_t>::max();
  bool failed_ = false;
  absl::Status status_;
};

}  // namespace stackproc::core
