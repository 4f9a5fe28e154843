// The job table's writes, off the callers' threads. The job manager records every change of a
// job under its lock (so that the order of writes is the order of events, and a late write
// cannot bring a deleted job back); a slow or locked disk (NFS, a backup holding the SQLite
// lock) must then stall neither the manager nor gRPC's callback threads. Writes are queued and
// applied in order by one thread of the writer's own; a job's newer record replaces its pending
// one, so the queue holds at most one write per job however long the disk stalls.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "server/jobs/job.h"
#include "server/jobs/job_store.h"

namespace stackproc::server {

class StoreWriter {
 public:
  // `on_error` hears of a write that failed (the job's id, the store's error), on the writer's
  // thread; the job itself is unaffected, only its record may be stale after a restart.
  using OnError = std::function<void(const std::string& id, const absl::Status& error)>;
  StoreWriter(JobStore& store, OnError on_error);
  // Applies what is queued, then stops.
  ~StoreWriter();
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  void Put(JobSnapshot job);
  void Remove(const std::string& id);
  // Returns when every write queued before the call has been applied (or has failed).
  void Flush();

 private:
  void Loop();

  JobStore& store_;
  const OnError on_error_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::string> order_;                              // ids with a pending write
  std::map<std::string, std::optional<JobSnapshot>> pending_;  // nullopt: remove the row
  bool writing_ = false;
  bool stopping_ = false;
  std::thread thread_;  // last: starts once the rest is set up
};

}  // namespace stackproc::server
