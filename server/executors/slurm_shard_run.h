// One phase of a job's shards on a SLURM cluster (SlurmExecutor): its arrays, submitted or found
// again by their name, and what each shard has come to, from the scheduler and the work folder.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/io/formats.h"
#include "core/process/shards.h"
#include "server/executors/slurm.h"
#include "server/executors/slurm_work_folder.h"
#include "server/jobs/job.h"

namespace stackproc::server {

class ShardRun {
 public:
  // Phase `work` of job `s`, as the job's `execution` stands.
  ShardRun(SlurmCommands& slurm, WorkFolder work, const JobSnapshot& s, Execution execution);
  const Execution& execution() const { return execution_; }
  const WorkFolder& work() const { return work_; }
  const std::vector<std::string>& arrays() const { return arrays_; }
  // Whether Adopt found an array under the phase's name.
  bool named() const { return named_; }
  // Re-attached: no array of this phase found by its name and no task of it ever started (the
  // server stopped between writing the script and sbatch): it is submitted whole.
  bool untouched() const;

  // Makes the work folder and the phase's script.
  absl::Status Prepare(const core::OutputTarget& output, const std::string& script);

  // Re-attached: the arrays the job table recorded for the job, polled with this phase's (where
  // two list a task index, the later wins).
  void Follow(const std::vector<std::string>& recorded);
  // The phase's arrays the controller lists under its name (those the job table has, and any
  // submitted just before the server stopped, before it could record them; and a previous
  // version's, named "stackproc-JOB").
  absl::Status Adopt();

  // Submits shards first..last as one array.
  absl::Status Submit(int first, int last);

  // One look at the cluster and at the work folder: the shards' counts and slices done. A shard
  // that ended without its piece is submitted again, alone, while it has attempts left; then the
  // job fails, naming the shard, its slices, its node and the tail of its log.
  absl::StatusOr<int64_t> Poll(int retries);

  // Why each shard Poll last retried failed, and why a retry waits to be submitted; cleared as
  // they are read.
  std::vector<std::string> TakeRetried() { return std::exchange(retried_, {}); }
  std::string TakeRefused() { return std::exchange(refused_, ""); }

  // Cancels the tasks, gives them kCancelWait to stop, and removes the work folder.
  void CancelAndSweep(const core::OutputTarget& output);

 private:
  // Shard i ended without its piece: submitted again while it has attempts left.
  absl::Status Retry(int i, const TaskInfo& info, int retries);
  // Array `id` is this phase's (and the job's).
  void Record(const std::string& id);
  // The job id of shard i's latest attempt (the newest array with its log, when re-attached).
  std::string LastArrayOf(int i) const;

  SlurmCommands& slurm_;
  const WorkFolder work_;
  const std::string name_;         // the arrays' SLURM job name: "stackproc-JOB-PHASE"
  const std::string legacy_name_;  // before phases had names of their own: "stackproc-JOB"
  Execution execution_;
  std::vector<std::string> arrays_;  // polled: this phase's (and recorded ones), oldest first
  bool named_ = false;               // Adopt found an array under the phase's name
  std::vector<core::ZRange> ranges_;
  std::vector<int> attempts_;            // per shard
  std::map<int, std::string> array_of_;  // shard -> the array of its latest attempt (this run)
  std::vector<std::string> retried_;
  std::string refused_;
  bool look_up_ = false;  // a submission was refused: it may have gone through all the same
};

}  // namespace stackproc::server
