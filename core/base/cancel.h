// A cancellation flag shared between whoever asks for cancellation (a job, a client, shutdown)
// and the code doing the work, which polls it between slices.
#pragma once

#include <atomic>

namespace stackproc::core {

// Thread-safe. Once cancelled, stays cancelled.
class CancelToken {
 public:
  void Cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool IsCancelled() const { return cancelled_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> cancelled_{false};
};

inline bool IsCancelled(const CancelToken* token) {
  return token != nullptr && token->IsCancelled();
}

}  // namespace stackproc::core
