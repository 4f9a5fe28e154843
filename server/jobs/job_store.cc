#include "server/jobs/job_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "server/api/proto_convert.h"
#include "stackproc/v1/service.pb.h"

namespace stackproc::server {
namespace {

// Bumped when the table changes incompatibly; a server refuses a file with another version.
constexpr int kSchemaVersion = 1;

}  // namespace

absl::StatusOr<std::unique_ptr<JobStore>> JobStore::Open(const std::string& state_dir) {
  if (::mkdir(state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError(
        absl::StrCat(state_dir, ": cannot create the state directory: ", std::strerror(errno)));
  }
  // One server per job table: two would each think the queued jobs theirs.
  core::UniqueFd lock(::open((state_dir + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) {
    return absl::FailedPreconditionError(
        absl::StrCat(state_dir, "/lock: cannot open: ", std::strerror(errno)));
  }
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {};
    const ssize_t n = ::pread(lock.get(), pid, sizeof pid - 1, 0);
    return absl::FailedPreconditionError(
        absl::StrCat("another stackprocd",
                     n > 0 ? absl::StrCat(" (pid ", absl::StripAsciiWhitespace(pid), ")") : "",
                     " uses the state directory ", state_dir));
  }
  // The pid is for the message a second server prints; not writing it harms nothing else.
  const std::string pid = std::to_string(::getpid()) + "\n";
  const bool noted =
      ::ftruncate(lock.get(), 0) == 0 &&
      ::pwrite(lock.get(), pid.data(), pid.size(), 0) == static_cast<ssize_t>(pid.size());
  (void)noted;
  const std::string path = state_dir + "/jobs.sqlite3";
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  // The store owns the handle from here on, even a failed one (sqlite3_close frees it).
  auto store = std::unique_ptr<JobStore>(new JobStore(path, db, std::move(lock)));
  if (rc != SQLITE_OK) return store->Error("cannot open");
  sqlite3_busy_timeout(db, 5000);

  // Reading the version is the first access: a file that is not a database fails here.
  int version = 0;
  {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, nullptr) != SQLITE_OK ||
        sqlite3_step(stmt) != SQLITE_ROW) {
      sqlite3_finalize(stmt);
      return store->Error("is not a readable job table");
    }
    version = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
  }
  if (version != 0 && version != kSchemaVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": job table version ", version, ", this server reads version ",
                     kSchemaVersion, " (a newer server wrote it?)"));
  }
  // seq keeps the submission order across replacements (INSERT OR REPLACE would renumber).
  for (const char* sql : {
           "PRAGMA journal_mode=WAL",
           "PRAGMA synchronous=NORMAL",
           "CREATE TABLE IF NOT EXISTS jobs ("
           "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
           "  id TEXT NOT NULL UNIQUE,"
           "  job BLOB NOT NULL)",
       }) {
    if (absl::Status s = store->Exec(sql); !s.ok()) return s;
  }
  if (version == 0) {
    if (absl::Status s = store->Exec("PRAGMA user_version=1"); !s.ok()) return s;
  }
  if (sqlite3_prepare_v2(db,
                         "INSERT INTO jobs (id, job) VALUES (?1, ?2) "
                         "ON CONFLICT (id) DO UPDATE SET job = excluded.job",
                         -1, &store->put_, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(db, "DELETE FROM jobs WHERE id = ?1", -1, &store->remove_, nullptr) !=
          SQLITE_OK) {
    return store->Error("cannot prepare its statements");
  }
  return store;
}

JobStore::~JobStore() {
  sqlite3_finalize(put_);
  sqlite3_finalize(remove_);
  sqlite3_close(db_);
}

absl::Status JobStore::Error(const std::string& what) const {
  return absl::FailedPreconditionError(
      absl::StrCat(path_, ": ", what, ": ", db_ ? sqlite3_errmsg(db_) : "out of memory"));
}

absl::Status JobStore::Exec(const char* sql) const {
  char* message = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &message) == SQLITE_OK) return absl::OkStatus();
  std::string detail = message ? message : sqlite3_errmsg(db_);
  sqlite3_free(message);
  return absl::FailedPreconditionError(absl::StrCat(path_, ": ", sql, ": ", detail));
}

absl::StatusOr<std::vector<JobSnapshot>> JobStore::Load() const {
  std::lock_guard lock(mutex_);
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT id, job FROM jobs ORDER BY seq", -1, &stmt, nullptr) !=
      SQLITE_OK) {
    return Error("cannot read the jobs");
  }
  std::vector<JobSnapshot> jobs;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const auto* id = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    v1::Job proto;
    absl::StatusOr<JobSnapshot> job =
        proto.ParseFromArray(sqlite3_column_blob(stmt, 1), sqlite3_column_bytes(stmt, 1))
            ? FromProto(proto)
            : absl::InvalidArgumentError("not a job record");
    if (!job.ok()) {
      sqlite3_finalize(stmt);
      return absl::FailedPreconditionError(
          absl::StrCat(path_, ": job ", id ? id : "?", ": ", job.status().message()));
    }
    jobs.push_back(*std::move(job));
  }
  sqlite3_finalize(stmt);
  if (rc != SQLITE_DONE) return Error("cannot read the jobs");
  return jobs;
}

absl::Status JobStore::Put(const JobSnapshot& job) {
  v1::Job proto;
  ToProto(job, &proto);
  const std::string bytes = proto.SerializeAsString();
  std::lock_guard lock(mutex_);
  sqlite3_bind_text(put_, 1, job.id.data(), static_cast<int>(job.id.size()), SQLITE_STATIC);
  sqlite3_bind_blob(put_, 2, bytes.data(), static_cast<int>(bytes.size()), SQLITE_STATIC);
  const int rc = sqlite3_step(put_);
  sqlite3_reset(put_);  // ends the statement (and so its write transaction)
  sqlite3_clear_bindings(put_);
  if (rc != SQLITE_DONE) return Error(absl::StrCat("cannot store job ", job.id));
  return absl::OkStatus();
}

absl::Status JobStore::Remove(const std::string& id) {
  std::lock_guard lock(mutex_);
  sqlite3_bind_text(remove_, 1, id.data(), static_cast<int>(id.size()), SQLITE_STATIC);
  const int rc = sqlite3_step(remove_);
  sqlite3_reset(remove_);
  sqlite3_clear_bindings(remove_);
  if (rc != SQLITE_DONE) return Error(absl::StrCat("cannot remove job ", id));
  return absl::OkStatus();
}

}  // namespace stackproc::server
