// The SLURM cluster a server hands large path jobs to (--executor slurm): job arrays submitted
// with sbatch, their tasks looked up with squeue, cancelled with scancel. Only the commands the
// cluster's users run themselves; the controller is asked no more often than the caller polls.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace stackproc::server {

struct SlurmOptions {
  std::string partition;           // sbatch --partition; empty: the cluster's default
  std::string account;             // sbatch --account; empty: the user's default
  int max_parallel = 0;            // tasks of one array running at once (--array=...%P); 0: no cap
  int cpus_per_shard = 0;          // sbatch --cpus-per-task; 0: the cluster's default
  std::string mem_per_shard;       // sbatch --mem, e.g. "4G"; empty: the cluster's default
  std::vector<std::string> extra;  // more sbatch arguments, as given
  absl::Duration poll = absl::Seconds(10);
  int retries = 2;  // a failed shard is submitted again, alone, this many times
  // A job whose spec leaves the shards to the server (0) gets one per this much input; one
  // that would get fewer than 2 (by size and by cost, below) runs on the server.
  uint64_t shard_bytes = uint64_t{1} << 30;
  // Likewise, a job gets at least one shard per this much work for one shard's CPUs (the
  // pipeline timed on one slice, times the slices).
  absl::Duration shard_seconds = absl::Minutes(5);
  std::string worker;  // the stackproc-local the shards run (compute nodes see the same path)
};

// Where a task of an array is.
enum class TaskState { kPending, kRunning, kEnded };

struct TaskInfo {
  TaskState state = TaskState::kPending;
  std::string slurm_state;  // as squeue says it: "PENDING", "RUNNING", "NODE_FAIL"...
  std::string node;         // where it runs or ran; empty while pending
};

// The SLURM commands the executor runs, behind an interface: Slurm runs the real ones, tests
// run a fake cluster (tests/server/fake_slurm.h).
class SlurmCommands {
 public:
  virtual ~SlurmCommands() = default;

  // sbatch: submits `script` as the array `indices` ("0-15", or "3" for one task again) named
  // `name`, each task's output to `log` (sbatch patterns: %a the index, %A the array's id);
  // returns the array's job id. Unavailable when the cluster may take it later (a submit limit,
  // a controller that does not answer), FailedPrecondition when it never will (an unknown
  // partition or account); either names sbatch's own message.
  virtual absl::StatusOr<std::string> Submit(const std::string& script, const std::string& indices,
                                             const std::string& name, const std::string& log) = 0;
  // squeue: the tasks of the arrays `job_ids` the controller still lists, by task index (an
  // ended task is listed for a while, then not at all: both mean it ended; of two arrays that
  // list an index, the later in `job_ids` wins). Unavailable when squeue fails.
  virtual absl::StatusOr<std::map<int, TaskInfo>> Tasks(
      const std::vector<std::string>& job_ids) = 0;
  // squeue: the arrays named `name` the controller lists (this user's), oldest first: how a
  // restarted server finds what it submitted but had not recorded yet.
  virtual absl::StatusOr<std::vector<std::string>> ArraysNamed(const std::string& name) = 0;
  // scancel: cancels the arrays (their running tasks get SIGTERM).
  virtual absl::Status Cancel(const std::vector<std::string>& job_ids) = 0;
};

// The real commands, with the options' sbatch arguments.
class Slurm final : public SlurmCommands {
 public:
  explicit Slurm(SlurmOptions options) : options_(std::move(options)) {}

  absl::StatusOr<std::string> Submit(const std::string& script, const std::string& indices,
                                     const std::string& name, const std::string& log) override;
  absl::StatusOr<std::map<int, TaskInfo>> Tasks(const std::vector<std::string>& job_ids) override;
  absl::StatusOr<std::vector<std::string>> ArraysNamed(const std::string& name) override;
  absl::Status Cancel(const std::vector<std::string>& job_ids) override;

 private:
  const SlurmOptions options_;
};

// Whether sbatch's refusal `message` may pass (a submit limit reached, a controller busy or
// unreachable: submit again later) rather than last (an unknown partition or account).
bool SubmitMayPass(absl::string_view message);

// sbatch's states by what they mean for a task: PENDING, REQUEUED... wait; RUNNING, COMPLETING,
// SUSPENDED... run; COMPLETED, FAILED, CANCELLED, NODE_FAIL, TIMEOUT, OUT_OF_MEMORY... ended.
TaskState TaskStateOf(const std::string& slurm_state);

}  // namespace stackproc::server
