// A few threads for the work a call must not do on gRPC's callback threads: anything that
// touches a disk (probing an input TIFF beneath the data root, which may be a stalled network
// filesystem). gRPC runs its callbacks on a small pool of its own; one that waits on a disk
// stalls every call behind it.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace stackproc::server {

class WorkPool {
 public:
  explicit WorkPool(int threads);
  // Runs what is queued, then joins the threads.
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  // Queues `work`; it runs on one of the pool's threads, in submission order of start.
  void Run(std::function<void()> work);

 private:
  void Loop();

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;  // last: they start once the rest is set up
};

}  // namespace stackproc::server
