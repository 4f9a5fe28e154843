#include "server/jobs/store_writer.h"

#include <utility>

namespace stackproc::server {

StoreWriter::StoreWriter(JobStore& store, OnError on_error)
    : store_(store), on_error_(std::move(on_error)), thread_([this] { Loop(); }) {}

StoreWriter::~StoreWriter() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void StoreWriter::Put(JobSnapshot job) {
  std::lock_guard lock(mutex_);
  auto [it, added] = pending_.try_emplace(job.id);
  if (added) order_.push_back(job.id);
  it->second = std::move(job);
  changed_.notify_all();
}

void StoreWriter::Remove(const std::string& id) {
  std::lock_guard lock(mutex_);
  auto [it, added] = pending_.try_emplace(id);
  if (added) order_.push_back(id);
  it->second.reset();
  changed_.notify_all();
}

void StoreWriter::Flush() {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return order_.empty() && !writing_; });
}

void StoreWriter::Loop() {
  std::unique_lock lock(mutex_);
  while (true) {
    changed_.wait(lock, [&] { return stopping_ || !order_.empty(); });
    if (order_.empty()) return;  // stopping, and everything written
    const std::string id = std::move(order_.front());
    order_.pop_front();
    auto node = pending_.extract(id);
    writing_ = true;
    lock.unlock();
    const std::optional<JobSnapshot>& job = node.mapped();
    const absl::Status status = job ? store_.Put(*job) : store_.Remove(id);
    if (!status.ok() && on_error_) on_error_(id, status);
    lock.lock();
    writing_ = false;
    changed_.notify_all();
  }
}

}  // namespace stackproc::server
