// Where a job's work is done. The job manager knows jobs (admission, the queue, the job table);
// an executor knows where they run and how to follow them there:
//
//   LocalExecutor   on this server's threads (its TBB arenas): path jobs and streamed jobs
//   SlurmExecutor   as z-range shards, the tasks of SLURM job arrays (--executor slurm)
//
// An executor plans a path job (whether and how it can run there), runs it to its end, stops it
// when the job's cancel token fires (Job::RequestCancel), and lets go of it when the server
// stops (Job::Interrupt): a job that goes on elsewhere is then detached, and the next start runs
// it again through the same executor, which re-attaches to it from what the job table recorded.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "core/process/process_file.h"
#include "core/stack/stack.h"
#include "server/jobs/job.h"

namespace stackproc::server {

// What an executor tells the job manager while a job runs.
class JobRecorder {
 public:
  virtual ~JobRecorder() = default;
  // Writes `job`'s state to the job table (queued: the table's writer applies it in order).
  virtual void Save(const Job& job) = 0;
  // One line of the server's log: `event` and its " key=value" pairs.
  virtual void Log(const JobSnapshot& s, const std::string& event, const std::string& extra) = 0;
};

// How a run ended.
struct RunOutcome {
  absl::Status status;
  std::shared_ptr<const core::Stack> result;  // a result kept in memory
  // The server stops and the job goes on without it (a cluster's shards): the job table keeps
  // it running, and the next start re-attaches.
  bool detached = false;
};

class JobExecutor {
 public:
  virtual ~JobExecutor() = default;
  // Whether and how path job `job`, planned as `plan`, runs here: sets job.execution and the
  // server memory it holds (job.memory_bytes). FailedPrecondition or InvalidArgument, naming
  // the flag or the spec's field, for what this executor cannot run.
  virtual absl::Status Plan(JobSnapshot& job, core::ProcessPlan& plan) const = 0;
  // Runs `job` (its snapshot when it was taken from the queue: `s`) to its end; re-attaches
  // when `s.execution` says it already runs elsewhere.
  virtual RunOutcome Run(Job& job, const JobSnapshot& s, JobRecorder& recorder) = 0;
};

}  // namespace stackproc::server
