#include "server/jobs/job_manager.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "server/executors/slurm_executor.h"
#include "server/jobs/job_manager_util.h"

namespace stackproc::server {

std::string Gib(uint64_t bytes) {
  return absl::StrFormat("%.2f GiB", static_cast<double>(bytes) / (uint64_t{1} << 30));
}

std::string InterruptReason(const JobSnapshot& s, bool shutdown, bool kept) {
  return absl::StrCat(
      shutdown ? "the server shut down " : "the server stopped ",
      s.state == JobState::kQueued ? "before the job started" : "while the job was running",
      s.spec.streamed ? " (its stack came over its call: send it again)"
      : kept          ? absl::StrCat(" (stackproc resume ", s.id, " runs it again)")
                      : " (the server keeps no job table, --state-dir: submit it again)");
}

std::string Quote(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out + "\"";
}

namespace {

// The memory this process may use: physical memory, or the container's limit when a cgroup
// sets one (v2 memory.max, v1 memory.limit_in_bytes). In a container the host's physical
// memory is not ours: a budget from it would get the server OOM-killed.
uint64_t AvailableMemory() {
  const auto pages = static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES));
  const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  uint64_t memory = pages * page;
  for (const char* path :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream file(path);
    std::string text;
    uint64_t limit = 0;
    if (file >> text && absl::SimpleAtoi(text, &limit) && limit > 0) {
      memory = std::min(memory, limit);  // "max" (no limit) does not parse
    }
  }
  return memory;
}

uint64_t DefaultBudget() { return AvailableMemory() / 4 * 3; }

}  // namespace

absl::StatusOr<std::unique_ptr<JobManager>> JobManager::Create(JobManagerOptions options) {
  if (options.data_root.empty()) {
    return absl::InvalidArgumentError("a data root is required (--data-root)");
  }
  STACKPROC_ASSIGN_OR_RETURN(PathResolver resolver, PathResolver::Create(options.data_root));
  if (options.memory_budget == 0) options.memory_budget = DefaultBudget();
  if (options.max_running_jobs < 1) {
    return absl::InvalidArgumentError("max running jobs must be at least 1");
  }
  if (options.executor == Executor::kSlurm && options.state_dir.empty()) {
    return absl::InvalidArgumentError(
        "--executor slurm needs --state-dir: a job's shards run on the cluster while the server "
        "restarts, and the job table is how the server finds them again");
  }
  if (options.executor == Executor::kSlurm && options.slurm.worker.empty()) {
    return absl::InvalidArgumentError(
        "--executor slurm needs the stackproc-local the shards run (--slurm-worker)");
  }
  auto manager = std::unique_ptr<JobManager>(new JobManager(options, std::move(resolver)));
  if (!options.state_dir.empty()) {
    // Under the data root, a job could write over the job table.
    std::error_code error;
    const std::string root = std::filesystem::weakly_canonical(options.data_root, error).string();
    const std::string state = std::filesystem::weakly_canonical(options.state_dir, error).string();
    if (!error && absl::StartsWith(state + "/", root + "/")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the state directory ", options.state_dir, " is inside the data root ", options.data_root,
          ": jobs could overwrite the job table (--state-dir elsewhere)"));
    }
    STACKPROC_ASSIGN_OR_RETURN(manager->store_, JobStore::Open(options.state_dir));
    manager->store_writer_ = std::make_unique<StoreWriter>(
        *manager->store_, [m = manager.get()](const std::string& id, const absl::Status& failure) {
          m->LogStoreFailure(id, failure);
        });
    STACKPROC_RETURN_IF_ERROR(manager->Restore());
  }
  for (int i = 0; i < options.max_running_jobs; ++i) {
    manager->workers_.emplace_back([m = manager.get()] { m->WorkerLoop(); });
  }
  return manager;
}

JobManager::JobManager(JobManagerOptions options, PathResolver resolver)
    : options_(std::move(options)),
      resolver_(std::move(resolver)),
      local_(std::make_unique<LocalExecutor>(options_.threads, resolver_, options_.limits,
                                             options_.stream_window_bytes)) {
  if (options_.executor == Executor::kSlurm) {
    std::shared_ptr<SlurmCommands> commands = options_.slurm_commands;
    if (!commands) commands = std::make_shared<Slurm>(options_.slurm);
    cluster_ = std::make_unique<SlurmExecutor>(options_.slurm, std::move(commands), resolver_);
  }
}

const JobExecutor& JobManager::PlannerOf() const {
  return cluster_ ? static_cast<const JobExecutor&>(*cluster_) : *local_;
}

JobExecutor* JobManager::ExecutorOf(const JobSnapshot& s) {
  return s.execution.executor == Executor::kSlurm ? cluster_.get() : local_.get();
}

JobManager::~JobManager() { Shutdown(absl::ZeroDuration()); }

Metrics::JobCounts JobManager::Counts() const {
  std::lock_guard lock(mutex_);
  Metrics::JobCounts counts;
  for (const auto& [id, job] : jobs_) ++counts.by_state[job->Snapshot().state];
  counts.queued = static_cast<int>(queue_.size());
  return counts;
}

void JobManager::Enqueue(std::shared_ptr<Job> job, const std::string& log_extra) {
  static thread_local std::mt19937_64 random(std::random_device{}());
  const bool resumed = !job->id().empty();
  if (!resumed) {
    std::string id;
    do {  // unique among the jobs listed, which a restart may have brought back
      id = absl::StrFormat("%06x%04x", random() & 0xffffff, next_id_++ & 0xffff);
    } while (jobs_.contains(id));
    job->AssignId(id);
    order_.push_back(id);
  }
  jobs_[job->id()] = job;
  queue_.push_back(job);
  if (busy_workers_ >= options_.max_running_jobs) ExplainQueue(/*free_worker=*/false);
  Persist(*job);
  const JobSnapshot s = job->Snapshot();
  LogEvent(s, resumed ? "job_resumed" : "job_submitted",
           absl::StrCat(log_extra, " ops=", Quote(core::FormatOpSpecs(s.spec.ops)),
                        " memory_bytes=", s.memory_bytes,
                        s.spec.owner.empty() ? "" : " owner=" + Quote(s.spec.owner)));
  changed_.notify_all();
}

bool JobManager::Dequeue(Job& job, const absl::Status& status) {
  {
    std::lock_guard lock(mutex_);
    auto queued = std::find_if(queue_.begin(), queue_.end(),
                               [&](const std::shared_ptr<Job>& j) { return j.get() == &job; });
    if (queued == queue_.end()) return false;
    queue_.erase(queued);
  }
  job.Finish(status, absl::Now());
  Save(job);
  LogEnd(job.Snapshot());
  return true;
}

absl::StatusOr<std::shared_ptr<Job>> JobManager::Get(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job ", id));
  return it->second;
}

absl::StatusOr<std::shared_ptr<Job>> JobManager::Get(const std::string& id,
                                                     const Caller& caller) const {
  absl::StatusOr<std::shared_ptr<Job>> job = Get(id);
  if (job.ok() && !caller.Sees((*job)->Snapshot().spec.owner)) {
    return absl::NotFoundError(absl::StrCat("no job ", id));  // as if it did not exist
  }
  return job;
}

std::vector<std::shared_ptr<Job>> JobManager::List() const {
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<Job>> jobs;
  for (const std::string& id : order_) jobs.push_back(jobs_.at(id));
  return jobs;
}

absl::StatusOr<std::shared_ptr<Job>> JobManager::Cancel(const std::string& id) {
  STACKPROC_ASSIGN_OR_RETURN(std::shared_ptr<Job> job, Get(id));
  job->RequestCancel();
  Dequeue(*job, absl::CancelledError("cancelled while queued"));
  return job;
}

absl::Status JobManager::Delete(const std::string& id) {
  STACKPROC_ASSIGN_OR_RETURN(std::shared_ptr<Job> job, Get(id));
  if (!IsTerminal(job->Snapshot().state)) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id, " has not finished (cancel it first)"));
  }
  std::lock_guard lock(mutex_);
  if (store_writer_) store_writer_->Remove(id);
  memory_in_use_ -= job->DropResult();
  jobs_.erase(id);
  order_.erase(std::find(order_.begin(), order_.end(), id));
  for (auto it = by_request_id_.begin(); it != by_request_id_.end();) {
    it = it->second == id ? by_request_id_.erase(it) : std::next(it);
  }
  changed_.notify_all();
  return absl::OkStatus();
}

uint64_t JobManager::memory_in_use() const {
  std::lock_guard lock(mutex_);
  return memory_in_use_;
}

void JobManager::LogEnd(const JobSnapshot& s) {
  const absl::Status& status = s.error;
  const double seconds =
      s.start_time == absl::InfinitePast() ? 0 : absl::ToDoubleSeconds(s.end_time - s.start_time);
  std::string extra = absl::StrFormat(" duration_s=%.3f", seconds);
  if (status.ok()) {
    uint64_t in_bytes = core::StackBytes(s.input_shape, s.input_type).value_or(0);
    absl::StrAppendFormat(&extra, " mb_per_s=%.1f", in_bytes / 1e6 / std::max(seconds, 1e-9));
  } else {
    absl::StrAppend(&extra, " code=", absl::StatusCodeToString(status.code()),
                    " reason=", Quote(status.message()));
  }
  LogEvent(s,
           status.ok()                 ? "job_finished"
           : absl::IsCancelled(status) ? "job_cancelled"
           : absl::IsAborted(status)   ? "job_interrupted"
                                       : "job_failed",
           extra);
}

void JobManager::Shutdown(absl::Duration grace) {
  std::vector<std::shared_ptr<Job>> queued;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    accepting_ = false;
    queued.assign(queue_.begin(), queue_.end());
    queue_.clear();
  }
  for (auto& job : queued) {
    // With a job table, a path job that has not started keeps its place for the next start.
    if (store_ && !job->Snapshot().spec.streamed) continue;
    const std::string reason = InterruptReason(job->Snapshot(), true, store_ != nullptr);
    job->Interrupt(reason);
    job->Finish(absl::AbortedError(reason), absl::Now());
    LogEnd(job->Snapshot());
    Save(*job);
  }
  std::unique_lock lock(mutex_);
  // Jobs on the cluster go on without this server: they let go of it at once (the job table
  // keeps them running, for the next start to re-attach).
  for (auto& [id, job] : jobs_) {
    const JobSnapshot s = job->Snapshot();
    if (s.state == JobState::kRunning && s.execution.executor == Executor::kSlurm) {
      job->Interrupt(InterruptReason(s, true, store_ != nullptr));
    }
  }
  changed_.wait_until(lock, absl::ToChronoTime(absl::Now() + grace), [&] { return running_ == 0; });
  std::vector<std::shared_ptr<Job>> unfinished;
  for (auto& [id, job] : jobs_) {
    if (!IsTerminal(job->Snapshot().state)) unfinished.push_back(job);
  }
  stopping_ = true;
  changed_.notify_all();
  lock.unlock();
  for (auto& job : unfinished) {  // hooks run outside the lock
    job->Interrupt(InterruptReason(job->Snapshot(), true, store_ != nullptr));
  }
  for (std::thread& worker : workers_) worker.join();
  std::vector<OwnThread> threads;
  {
    std::lock_guard stopped(mutex_);
    threads.swap(own_threads_);
  }
  for (OwnThread& thread : threads) thread.thread.join();
  FlushStore();  // the table says what the jobs say
}

void JobManager::Save(const Job& job) {
  std::lock_guard lock(mutex_);
  Persist(job);
}

void JobManager::Persist(const Job& job) {
  if (store_writer_ == nullptr || !jobs_.contains(job.id())) return;
  store_writer_->Put(job.Snapshot());
}

void JobManager::LogStoreFailure(const std::string& id, const absl::Status& error) {
  // The job itself is fine; only its record may be stale after a restart.
  JobSnapshot s;
  if (absl::StatusOr<std::shared_ptr<Job>> job = Get(id); job.ok()) s = (*job)->Snapshot();
  s.id = id;
  LogEvent(s, "job_store_failed", absl::StrCat(" reason=", Quote(error.message())));
}

void JobManager::LogEvent(const JobSnapshot& s, const std::string& event,
                          const std::string& extra) {
  std::string line =
      absl::StrCat("ts=", absl::FormatTime(absl::RFC3339_full, absl::Now(), absl::UTCTimeZone()),
                   " event=", event, " job=", s.id, " state=", JobStateName(s.state), extra, "\n");
  std::fputs(line.c_str(), stderr);
  if (options_.metrics == nullptr) return;
  if (event == "job_submitted") options_.metrics->JobSubmitted();
  if (event == "job_store_failed") options_.metrics->JobStoreFailed();
  if (event == "job_finished" || event == "job_failed" || event == "job_cancelled" ||
      event == "job_interrupted") {
    options_.metrics->JobEnded(s);
  }
}

}  // namespace stackproc::server
