// JobManager, the workers: the queue taken in order as memory allows, each job run through the
// engine (a path job's files, or a streamed job's source and sink), ended results expired and
// old jobs forgotten.
#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "core/process/process_file.h"
#include "server/jobs/job_manager.h"
#include "server/jobs/job_manager_util.h"

namespace stackproc::server {

void JobManager::ExpireResults(absl::Time now) {
  for (auto& [id, job] : jobs_) {
    JobSnapshot s = job->Snapshot();
    if (!s.result_available) continue;
    absl::Duration keep =
        s.spec.retention > absl::ZeroDuration() ? s.spec.retention : options_.result_ttl;
    if (now - s.end_time >= keep) {
      memory_in_use_ -= job->DropResult();
      LogEvent(s, "result_expired");
    }
  }
  ForgetOldJobs();
}

void JobManager::ForgetOldJobs() {
  size_t ended = 0;
  for (const auto& [id, job] : jobs_) ended += IsTerminal(job->Snapshot().state);
  if (ended <= static_cast<size_t>(std::max(options_.job_history, 0))) return;
  size_t excess = ended - options_.job_history;
  std::set<std::string> forgotten;
  std::vector<std::string> kept;
  for (const std::string& id : order_) {
    std::shared_ptr<Job>& job = jobs_.at(id);
    if (excess > 0 && IsTerminal(job->Snapshot().state)) {
      memory_in_use_ -= job->DropResult();
      if (store_writer_) store_writer_->Remove(id);
      jobs_.erase(id);
      forgotten.insert(id);
      --excess;
    } else {
      kept.push_back(id);
    }
  }
  order_ = std::move(kept);
  std::erase_if(by_request_id_,
                [&](const auto& entry) { return forgotten.contains(entry.second); });
}

void JobManager::WorkerLoop() {
  std::unique_lock lock(mutex_);
  while (true) {
    // A sweep reads every job: at most a few times a second, however busy the server.
    if (const absl::Time now = absl::Now(); now - last_sweep_ >= absl::Milliseconds(250)) {
      ExpireResults(now);
      JoinEndedThreads();
      last_sweep_ = now;
    }
    const bool fits = !queue_.empty() && memory_in_use_ + queue_.front()->Snapshot().memory_bytes <=
                                             options_.memory_budget;
    if (stopping_ && queue_.empty()) return;
    if (!fits) {
      ExplainQueue(/*free_worker=*/true);
      changed_.wait_for(lock, std::chrono::seconds(1));
      continue;
    }
    std::shared_ptr<Job> job = queue_.front();
    queue_.pop_front();
    const uint64_t memory = job->Snapshot().memory_bytes;
    memory_in_use_ += memory;
    ++running_;
    // A streamed job goes at its client's pace, a job on the cluster at the cluster's: each
    // runs on a thread of its own rather than holding a worker that path jobs wait for.
    if (const JobSnapshot s = job->Snapshot();
        s.spec.streamed || s.execution.executor == Executor::kSlurm) {
      auto ended = std::make_shared<std::atomic<bool>>(false);
      own_threads_.push_back({std::thread([this, job, memory, ended] {
                                Run(*job, memory);
                                ended->store(true);
                              }),
                              ended});
      continue;
    }
    ++busy_workers_;
    if (busy_workers_ >= options_.max_running_jobs) ExplainQueue(/*free_worker=*/false);
    lock.unlock();
    Run(*job, memory);
    lock.lock();
    --busy_workers_;
  }
}

void JobManager::ExplainQueue(bool free_worker) {
  int kept = 0;
  for (const auto& [id, job] : jobs_) kept += job->Snapshot().result_available;
  for (size_t i = 0; i < queue_.size(); ++i) {
    const JobSnapshot s = queue_[i]->Snapshot();
    std::string why;
    if (!free_worker) {
      why = absl::StrCat("waiting for a worker: ", busy_workers_,
                         " jobs run, the most at once (--max-running-jobs)",
                         i == 0 ? "" : absl::StrCat("; ", i, " queued ahead"));
    } else if (i == 0) {
      why = absl::StrCat("waiting for memory: it needs ", Gib(s.memory_bytes), ", and ",
                         Gib(memory_in_use_), " of the ", Gib(options_.memory_budget),
                         " budget (--memory-budget) is held by ", running_, " running jobs and ",
                         kept, " results kept in memory (stackproc delete frees one)");
    } else {
      why = absl::StrCat("waiting behind job ", queue_[0]->id(), " (first in, first out)");
    }
    if (s.stage != why) queue_[i]->SetStage(why);
  }
}

void JobManager::JoinEndedThreads() {
  std::erase_if(own_threads_, [](OwnThread& t) {
    if (!t.ended->load()) return false;
    t.thread.join();
    return true;
  });
}

void JobManager::Run(Job& job, uint64_t memory) {
  const JobSnapshot snapshot = job.Snapshot();
  job.Start(absl::Now());
  LogEvent(job.Snapshot(), "job_started");
  Save(job);

  RunOutcome outcome;
  if (JobExecutor* executor = ExecutorOf(snapshot)) {
    outcome = executor->Run(job, snapshot, *this);
  } else {
    // Restored from the job table of a server that ran it on a cluster.
    outcome.status = absl::FailedPreconditionError(absl::StrCat(
        "its shards ran on a SLURM cluster (SLURM jobs ",
        absl::StrJoin(snapshot.execution.slurm_job_ids, ","),
        "), and this server was started with --executor local, which cannot follow them: they "
        "were left as they are, with the shards' folder beside the output (scancel them and "
        "remove it, or submit the job again)"));
  }
  if (outcome.detached) {  // the job goes on elsewhere; the job table says it runs
    std::lock_guard lock(mutex_);
    --running_;
    memory_in_use_ -= memory;
    changed_.notify_all();
    LogEvent(job.Snapshot(), "job_detached");
    return;
  }
  const absl::Time end = absl::Now();
  {
    // Account before the final state is published: whoever sees it finished finds its memory
    // released (and the result's held).
    std::lock_guard lock(mutex_);
    --running_;
    memory_in_use_ -= memory;
    if (outcome.result) memory_in_use_ += outcome.result->size_bytes();
    changed_.notify_all();
  }
  job.Finish(outcome.status, end, outcome.result);
  Save(job);
  core::ReturnFreeMemory();

  LogEnd(job.Snapshot());
}

}  // namespace stackproc::server
