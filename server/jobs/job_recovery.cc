// JobManager, across restarts: the stored jobs listed again at start, interrupted ones resumed.
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/io/formats.h"
#include "server/jobs/job_manager.h"
#include "server/jobs/job_manager_util.h"

namespace stackproc::server {

absl::StatusOr<std::shared_ptr<Job>> JobManager::Resume(const std::string& id) {
  STACKPROC_ASSIGN_OR_RETURN(std::shared_ptr<Job> interrupted, Get(id));
  const JobSnapshot old = interrupted->Snapshot();
  if (old.state != JobState::kInterrupted) {
    return absl::FailedPreconditionError(absl::StrCat("job ", id, " is ", JobStateName(old.state),
                                                      ": only an interrupted job resumes"));
  }
  if (old.spec.streamed) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id, " was streamed: its stack came over its call, send it again"));
  }
  STACKPROC_ASSIGN_OR_RETURN(JobSnapshot fresh, Replan(old));

  std::lock_guard lock(mutex_);
  if (!accepting_) return absl::UnavailableError("server is shutting down");
  auto it = jobs_.find(id);
  if (it == jobs_.end() || it->second != interrupted) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id, " was resumed or deleted meanwhile"));
  }
  STACKPROC_RETURN_IF_ERROR(CheckCallerLimits(fresh.spec));
  auto job = std::make_shared<Job>(std::move(fresh));
  Enqueue(job, absl::StrCat(" input=", Quote(old.spec.input_path)));
  return job;
}

absl::Status JobManager::Restore() {
  STACKPROC_ASSIGN_OR_RETURN(std::vector<JobSnapshot> stored, store_->Load());
  const absl::Time now = absl::Now();
  std::lock_guard lock(mutex_);
  int requeued = 0, reattached = 0;
  for (JobSnapshot& s : stored) {
    s.memory_bytes = 0;  // in-memory results do not outlive the process
    s.result_available = false;
    const bool ended = IsTerminal(s.state);
    std::shared_ptr<Job> job;
    if (s.state == JobState::kQueued && !s.spec.streamed) {
      // It never started: it waits again, validated and planned again (the files may have
      // changed meanwhile); one that no longer can run fails saying why.
      absl::StatusOr<JobSnapshot> planned = Replan(s);
      if (planned.ok()) {
        job = std::make_shared<Job>(*std::move(planned));
        queue_.push_back(job);
        ++requeued;
      } else {
        s.state = JobState::kFailed;
        s.error = absl::Status(planned.status().code(), absl::StrCat("when the server restarted: ",
                                                                     planned.status().message()));
        s.stage = "done";
        s.end_time = now;
      }
    } else if (s.state == JobState::kRunning && s.execution.executor == Executor::kSlurm) {
      // Its shards run on the cluster whether this server runs or not: watch them again (its
      // executor finds what it submitted, recorded or not).
      job = std::make_shared<Job>(s);
      queue_.push_front(job);
      ++reattached;
    } else if (!ended) {
      s.error = absl::AbortedError(InterruptReason(s, false, true));
      s.state = JobState::kInterrupted;
      s.stage = "done";
      s.end_time = now;
      if (s.spec.output_path) {
        // What its writer left: the final name was never written (the rename is the last step).
        // (Planes and OME-Zarr stores are written into a temporary folder beside their own.)
        absl::StatusOr<core::OutputName> output = core::ParseOutputName(*s.spec.output_path);
        absl::StatusOr<core::OutputTarget> target =
            output.ok() ? resolver_.Output(output->target, output->format != core::Format::kTiff)
                        : resolver_.Output(*s.spec.output_path);
        if (target.ok()) core::RemoveTempFiles(*target, s.id);
      }
    }
    if (!job) job = std::make_shared<Job>(s);
    jobs_.emplace(s.id, job);
    order_.push_back(s.id);
    if (!s.request_id.empty())
      by_request_id_[absl::StrCat(s.spec.owner, "\n", s.request_id)] = s.id;
    if (!ended) {  // requeued, failed or interrupted just now
      Persist(*job);
      if (IsTerminal(job->Snapshot().state)) LogEnd(job->Snapshot());
    }
  }
  if (!stored.empty()) {
    std::fputs(absl::StrCat("ts=", absl::FormatTime(absl::RFC3339_full, now, absl::UTCTimeZone()),
                            " event=jobs_restored count=", stored.size(), " queued=", requeued,
                            " reattached=", reattached, " path=", Quote(store_->path()), "\n")
                   .c_str(),
               stderr);
  }
  return absl::OkStatus();
}

}  // namespace stackproc::server
