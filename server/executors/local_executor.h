// Jobs on this server's own threads: a path job's files through core::ProcessFile, a streamed
// job's source and sink (its call's) through core::Run, on one of two TBB arenas.
#pragma once

#include <tbb/task_arena.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "core/tiff/tiff_reader.h"
#include "server/executors/executor.h"
#include "server/jobs/path_resolver.h"

namespace stackproc::server {

// How the job's output is written (its codec and OME-Zarr layout), as it asked.
core::WriteOptions WriteOptionsOf(const JobSpec& spec);

// A path job as core runs it: its paths resolved beneath the data root, the server's limits,
// its window of slices in flight.
absl::StatusOr<core::ProcessRequest> PathRequest(const JobSpec& spec, const PathResolver& resolver,
                                                 const core::StackLimits& limits,
                                                 uint64_t window_bytes);

class LocalExecutor final : public JobExecutor {
 public:
  // `threads`: the arenas' concurrency (0: every core). `resolver` outlives the executor.
  LocalExecutor(int threads, const PathResolver& resolver, const core::StackLimits& limits,
                uint64_t window_bytes);

  // A job cut in shards needs a cluster: FailedPrecondition naming --executor.
  absl::Status Plan(JobSnapshot& job, core::ProcessPlan& plan) const override;
  RunOutcome Run(Job& job, const JobSnapshot& s, JobRecorder& recorder) override;

  int concurrency() const { return arena_.max_concurrency(); }
  // Where a job that reads `input_bytes` runs: small jobs in an arena of higher priority, so
  // that TBB hands them the threads as soon as the tasks running finish and they do not wait
  // out a large job.
  tbb::task_arena& ArenaFor(uint64_t input_bytes) {
    return input_bytes <= kQuickJobBytes ? quick_arena_ : arena_;
  }
  static constexpr uint64_t kQuickJobBytes = uint64_t{64} << 20;

 private:
  absl::Status RunFile(Job& job, const JobSnapshot& s, const core::RunOptions& run,
                       std::shared_ptr<const core::Stack>& kept) const;
  absl::Status RunStream(Job& job, const JobSnapshot& s, core::RunOptions run) const;

  const PathResolver& resolver_;
  const core::StackLimits limits_;
  const uint64_t window_bytes_;
  tbb::task_arena arena_;
  tbb::task_arena quick_arena_;  // small jobs, at a higher priority (ArenaFor)
};

}  // namespace stackproc::server
