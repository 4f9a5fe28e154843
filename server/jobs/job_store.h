// Job records in SQLite under the server's state directory (--state-dir), so that they outlive
// the process: one row per job, its v1::Job encoding. WAL journal with synchronous=NORMAL: a
// committed change survives the process being killed (kill -9, the OOM killer); a power loss
// may take back the last changes, never corrupt the file. Thread-safe.
#pragma once

#include <sqlite3.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/base/file.h"
#include "server/jobs/job.h"

namespace stackproc::server {

class JobStore {
 public:
  // Opens or creates `state_dir`/jobs.sqlite3 (and the directory). A file that is not a job
  // table (corrupt, another program's, a newer schema) is an error naming it: the server must
  // not start over jobs it cannot read. The directory is locked while the store is open
  // (`state_dir`/lock, flock): a second server on it is refused, naming the first one's pid.
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(const std::string& state_dir);
  ~JobStore();
  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  // Every stored job, in the order they were first stored.
  absl::StatusOr<std::vector<JobSnapshot>> Load() const;
  // Stores `job`, replacing the row with its id (which keeps its place in the order).
  absl::Status Put(const JobSnapshot& job);
  absl::Status Remove(const std::string& id);

  const std::string& path() const { return path_; }

 private:
  JobStore(std::string path, sqlite3* db, core::UniqueFd lock)
      : path_(std::move(path)), lock_(std::move(lock)), db_(db) {}
  // Runs `sql` (no results), the error naming what failed.
  absl::Status Exec(const char* sql) const;
  absl::Status Error(const std::string& what) const;

  const std::string path_;
  const core::UniqueFd lock_;  // the state directory's lock, held while open
  mutable std::mutex mutex_;
  sqlite3* const db_;
  sqlite3_stmt* put_ = nullptr;
  sqlite3_stmt* remove_ = nullptr;
};

}  // namespace stackproc::server
