// Queues, admits and runs jobs, each through its executor (server/executors/: the server's
// threads, or a SLURM cluster), and records them in the job table. Thread-safe.
//
// Admission: a job's memory (input stack, plus the output stack when the pipeline changes the
// format) must fit the memory budget. A job that can never fit is rejected at submit; one that
// does not fit now waits in the queue (FIFO) until running jobs and held results free enough.
#pragma once

#include <tbb/task_arena.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/process/process_file.h"
#include "core/tiff/tiff_reader.h"
#include "server/api/auth.h"
#include "server/api/metrics.h"
#include "server/executors/executor.h"
#include "server/executors/local_executor.h"
#include "server/executors/slurm.h"
#include "server/jobs/job.h"
#include "server/jobs/job_store.h"
#include "server/jobs/path_resolver.h"
#include "server/jobs/store_writer.h"

namespace stackproc::server {

// A resumable streamed job's tail: the results it sent last, kept for a resumed call, since
// gRPC lets go of a chunk once the kernel has it, not once the client has: about this many
// bytes (a 1 Gbit/s link's send and receive buffers and window), in whole slices, at least one.
inline constexpr uint64_t kStreamTailBytes = uint64_t{16} << 20;
inline size_t StreamTailSlices(size_t slice_bytes) {
  return slice_bytes == 0 ? 0
                          : std::max<size_t>(1, (kStreamTailBytes + slice_bytes - 1) / slice_bytes);
}

struct JobManagerOptions {
  std::string data_root;  // required
  int threads = 0;        // arena concurrency; 0: all cores
  int max_running_jobs = 1;
  uint64_t memory_budget = 0;  // bytes; 0: 3/4 of physical memory or of the cgroup limit
  absl::Duration result_ttl = absl::Hours(1);  // default retention of in-memory results
  // Ended jobs kept listed (and stored); beyond that the oldest are forgotten, with their
  // in-memory results, so that a server taking job after job keeps its memory bounded.
  int job_history = 10000;
  // Slices in flight per streaming job (streamed jobs, and path jobs run page by page).
  uint64_t stream_window_bytes = core::kDefaultWindowBytes;
  // How long a streamed job whose call broke waits for a call to resume it (0: none, it is
  // cancelled at once). While it may, the job keeps the last kStreamTailBytes of results sent
  // (whole slices), counted in its memory.
  absl::Duration stream_grace = absl::Seconds(60);
  core::StackLimits limits;
  // Jobs one caller may have queued or running at once, and streamed jobs open at once (over
  // either: ResourceExhausted naming the flag).
  int max_jobs_per_caller = 32;
  int max_streams = 16;
  Metrics* metrics = nullptr;  // optional; told of every job event
  // Where the job table is kept (JobStore), so that jobs outlive the process; empty: in memory
  // only. At start the jobs found there are listed again (Restore).
  std::string state_dir;
  // Where path jobs run: kSlurm hands large per-slice jobs with a TIFF output to `slurm`'s
  // cluster as z-range shards (SlurmExecutor); the others still run here (LocalExecutor).
  Executor executor = Executor::kLocal;
  SlurmOptions slurm;
  // The cluster's commands; null: the real ones (Slurm); tests give a fake.
  std::shared_ptr<SlurmCommands> slurm_commands;
};

class JobManager final : private JobRecorder {
 public:
  static absl::StatusOr<std::unique_ptr<JobManager>> Create(JobManagerOptions options);
  ~JobManager();  // cancels everything and joins the workers

  // Validates and queues. See service.proto SubmitJob for the error codes.
  absl::StatusOr<std::shared_ptr<Job>> Submit(const JobSpec& spec, const std::string& request_id);
  // Jobs by state and the queue's length, for the metrics.
  Metrics::JobCounts Counts() const;
  // Queues a streamed job (ProcessStream): `io` is the source its call feeds (its info: what the
  // call announced) and the sink it drains. Validated like any job (limits, pipeline, memory),
  // admitted and run like any job; it ends when its run does.
  absl::StatusOr<std::shared_ptr<Job>> SubmitStream(const JobSpec& spec, JobIo io);
  // Ends `job` with `status` if it is still queued; false when it runs or has ended.
  bool Dequeue(Job& job, const absl::Status& status);

  absl::StatusOr<std::shared_ptr<Job>> Get(const std::string& id) const;
  // Job `id` when `caller` may see it; NotFound as for an unknown id otherwise.
  absl::StatusOr<std::shared_ptr<Job>> Get(const std::string& id, const Caller& caller) const;
  std::vector<std::shared_ptr<Job>> List() const;
  absl::StatusOr<std::shared_ptr<Job>> Cancel(const std::string& id);
  absl::Status Delete(const std::string& id);
  // Queues an INTERRUPTED path job again (same id and spec, validated and planned again).
  absl::StatusOr<std::shared_ptr<Job>> Resume(const std::string& id);

  // Stops accepting jobs, lets running ones finish for up to `grace`, then interrupts them
  // (they end INTERRUPTED: ResumeJob runs them again); returns when no job runs. Queued jobs are
  // interrupted at once, except path jobs with a state directory: those stay queued there for
  // the next start.
  void Shutdown(absl::Duration grace);
  // Returns when the job table holds every change made so far (its writes are queued to a
  // thread of their own: StoreWriter). Shutdown does this too.
  void FlushStore() {
    if (store_writer_) store_writer_->Flush();
  }

  uint64_t memory_budget() const { return options_.memory_budget; }
  uint64_t memory_in_use() const;
  const JobManagerOptions& options() const { return options_; }
  // Paths under the data root, as jobs resolve them (for previews).
  const PathResolver& resolver() const { return resolver_; }
  // Logs an event of `job`'s that the job manager does not see (a streamed job's call broke,
  // was resumed), as its own are: "ts=... event=EVENT job=ID state=STATE EXTRA".
  void LogJobEvent(const Job& job, const std::string& event, const std::string& extra) {
    LogEvent(job.Snapshot(), event, extra);
  }
  // Where a job that reads `input_bytes` runs on this server (LocalExecutor::ArenaFor).
  tbb::task_arena& ArenaFor(uint64_t input_bytes) { return local_->ArenaFor(input_bytes); }

 private:
  explicit JobManager(JobManagerOptions options, PathResolver resolver);
  void WorkerLoop();
  // A path job validated and planned: what it reads and makes, the memory it needs (over the
  // budget: ResourceExhausted).
  absl::StatusOr<JobSnapshot> Plan(const JobSpec& spec) const;
  // `old` planned again, to run again: the same id, request id and creation time.
  absl::StatusOr<JobSnapshot> Replan(const JobSnapshot& old) const;
  // Lists the stored jobs again: queued path jobs are queued again (FAILED when they can no
  // longer run), the others that had not ended are INTERRUPTED and the temporary files of their
  // outputs removed. Before the workers start.
  absl::Status Restore();
  // Queues `job`'s record for the store, unless it was deleted (mutex_ held).
  void Persist(const Job& job);
  // Persist, taking mutex_ (JobRecorder, for the executors).
  void Save(const Job& job) override;
  void Log(const JobSnapshot& s, const std::string& event, const std::string& extra) override {
    LogEvent(s, event, extra);
  }
  // Where planned jobs go (--executor), and where job `s` runs (nullptr: a cluster this server
  // was not started for).
  const JobExecutor& PlannerOf() const;
  JobExecutor* ExecutorOf(const JobSnapshot& s);
  // Runs `job`, which holds `memory` bytes of the budget, and releases them.
  void Run(Job& job, uint64_t memory);
  // Drops in-memory results past their retention and forgets the oldest ended jobs beyond
  // job_history (mutex_ held).
  void ExpireResults(absl::Time now);
  void ForgetOldJobs();
  absl::StatusOr<std::shared_ptr<Job>> Admit(const JobSpec& spec, const std::string& request_id);
  // A streamed job validated and planned by core's one planner, PlanSource (over the budget:
  // ResourceExhausted).
  absl::StatusOr<JobSnapshot> PlanStream(const JobSpec& spec, const JobIo& io) const;
  // Says in each queued job's stage why it waits: for a worker (all `max_running_jobs` busy),
  // for memory (the first; what holds the budget), or behind the first (mutex_ held).
  void ExplainQueue(bool free_worker);
  // Joins the threads of their own of jobs that have ended (mutex_ held).
  void JoinEndedThreads();
  // ResourceExhausted when `spec`'s owner has max_jobs_per_caller jobs queued or running, or a
  // streamed spec would open more than max_streams (mutex_ held).
  absl::Status CheckCallerLimits(const JobSpec& spec) const;
  // Queues `job` and logs it (mutex_ held).
  void Enqueue(std::shared_ptr<Job> job, const std::string& log_extra);
  void LogEvent(const JobSnapshot& s, const std::string& event, const std::string& extra = "");
  void LogEnd(const JobSnapshot& s);
  // A record the store could not write (the StoreWriter's thread).
  void LogStoreFailure(const std::string& id, const absl::Status& error);

  const JobManagerOptions options_;
  const PathResolver resolver_;
  std::unique_ptr<LocalExecutor> local_;       // this server's threads
  std::unique_ptr<JobExecutor> cluster_;       // --executor slurm: the cluster's
  std::unique_ptr<JobStore> store_;            // with a state directory: read at start
  std::unique_ptr<StoreWriter> store_writer_;  // and written through this, in order

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, std::shared_ptr<Job>> jobs_;  // by id
  std::vector<std::string> order_;                    // ids, oldest first
  std::map<std::string, std::string> by_request_id_;  // owner "\n" request id -> job id
  std::deque<std::shared_ptr<Job>> queue_;
  uint64_t memory_in_use_ = 0;  // running jobs and held results
  int running_ = 0;       // jobs running: path jobs on the workers, streamed jobs on their threads
  int busy_workers_ = 0;  // workers running a path job
  // A streamed job goes at its client's pace, a job on a cluster at the cluster's: each runs
  // on a thread of its own (at most --max-streams streamed ones) rather than holding a worker
  // that path jobs wait for.
  struct OwnThread {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> ended;
  };
  std::vector<OwnThread> own_threads_;
  bool accepting_ = true;
  bool stopping_ = false;
  uint64_t next_id_ = 1;
  absl::Time last_sweep_ = absl::InfinitePast();  // ExpireResults' last run
  std::vector<std::thread> workers_;
};

}  // namespace stackproc::server
