// Path jobs on a SLURM cluster (--executor slurm): a job cut in z-ranges, each a task of a job
// array that runs stackproc-local on a compute node over the shared filesystem, followed through
// the files its tasks write (core/process/worker_protocol.h) and the scheduler's own commands
// (SlurmCommands), and put together when all are done (core::AssembleTiff: the shards' strips
// copied as they are). A whole-stack step first gathers its statistics range by range (phase
// "stats"), then the pieces are made (phase "shard").
//
// What can go wrong, and what it does:
//   a task fails or its node dies      the shard is submitted again, alone, up to --slurm-retries
//                                      times; then the job fails naming the shard, its slices, its
//                                      node and the tail of its log
//   sbatch refuses for now             (a submit limit, a busy controller) submitted again with
//                                      a growing wait, the job's stage saying why; refused for
//                                      good (a partition or account unknown): the job fails
//   squeue does not answer             asked again at the next poll (logged once)
//   the controller forgets an array    its tasks count as ended: their pieces say which are done
//   the server stops                   the job detaches; the next start re-attaches: the arrays
//                                      recorded, and those named for the job that the controller
//                                      lists (submitted just before a crash, not yet recorded)
//   the caller cancels                 scancel, then the work folder is removed
#pragma once

#include <memory>
#include <string>

#include "server/executors/executor.h"
#include "server/executors/slurm.h"
#include "server/jobs/path_resolver.h"

namespace stackproc::server {

class SlurmExecutor final : public JobExecutor {
 public:
  // `commands`: the cluster's (Slurm) or a fake's; `resolver` outlives the executor.
  SlurmExecutor(SlurmOptions options, std::shared_ptr<SlurmCommands> commands,
                const PathResolver& resolver)
      : options_(std::move(options)), commands_(std::move(commands)), resolver_(resolver) {}

  // Cuts the job in shards (the spec's count, or one per --slurm-shard-bytes of input and
  // enough for the pipeline's cost on one slice: a small job stays local), or leaves it local;
  // InvalidArgument for shards a job cannot have (no TIFF output, in memory, too many).
  absl::Status Plan(JobSnapshot& job, core::ProcessPlan& plan) const override;
  RunOutcome Run(Job& job, const JobSnapshot& s, JobRecorder& recorder) override;

  // SLURM's default MaxArraySize is 1001: task indices 0-1000.
  static constexpr int kMaxShards = 1000;

 private:
  const SlurmOptions options_;
  const std::shared_ptr<SlurmCommands> commands_;
  const PathResolver& resolver_;
};

}  // namespace stackproc::server
