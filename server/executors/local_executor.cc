#include "server/executors/local_executor.h"

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/io/formats.h"
#include "core/pipeline/pipeline.h"
#include "server/jobs/job_manager_util.h"

namespace stackproc::server {

core::WriteOptions WriteOptionsOf(const JobSpec& spec) {
  core::WriteOptions write;
  write.compression = spec.compression;
  write.compression_level = spec.compression_level;
  write.predictor = spec.predictor;
  write.overwrite = spec.overwrite;
  write.chunks = spec.chunks;
  write.pyramid_levels = spec.pyramid_levels;
  write.zarr_format = spec.zarr_format;
  write.zarr_shards = spec.zarr_shards;
  return write;
}

absl::StatusOr<core::ProcessRequest> PathRequest(const JobSpec& spec, const PathResolver& resolver,
                                                 const core::StackLimits& limits,
                                                 uint64_t window_bytes) {
  core::ProcessRequest request;
  request.input_path = spec.input_path;  // a file or a sequence, each file beneath the root
  request.files = &resolver;
  if (spec.output_path) {
    // A file, or a folder of planes or an OME-Zarr store: then the target is that folder (an
    // existing one needs overwrite, checked at admission, and must hold what the format writes).
    STACKPROC_RETURN_IF_ERROR(core::CheckPathText(*spec.output_path, /*output=*/true));
    STACKPROC_ASSIGN_OR_RETURN(core::OutputName output, core::ParseOutputName(*spec.output_path));
    STACKPROC_ASSIGN_OR_RETURN(
        request.output_target,
        resolver.Output(output.target, output.format != core::Format::kTiff));
    if (spec.overwrite && request.output_target->Exists()) {
      STACKPROC_RETURN_IF_ERROR(core::CheckReplaceable(output.format, *request.output_target));
    }
    request.output_path = *spec.output_path;
  }
  request.ops = spec.ops;
  request.channels = spec.channels;
  request.write = WriteOptionsOf(spec);
  request.limits = limits;
  request.window_bytes = window_bytes;
  return request;
}

LocalExecutor::LocalExecutor(int threads, const PathResolver& resolver,
                             const core::StackLimits& limits, uint64_t window_bytes)
    : resolver_(resolver),
      limits_(limits),
      window_bytes_(window_bytes),
      arena_(threads > 0 ? threads : tbb::task_arena::automatic),
      quick_arena_(arena_.max_concurrency(), 1, tbb::task_arena::priority::high) {}

absl::Status LocalExecutor::Plan(JobSnapshot& job, core::ProcessPlan& /*plan*/) const {
  job.execution = {};
  if (job.spec.shards > 1) {
    return absl::FailedPreconditionError(
        "shards: this server runs jobs on its own threads (--executor local); a job cut in "
        "shards needs a server started with --executor slurm");
  }
  return absl::OkStatus();
}

RunOutcome LocalExecutor::Run(Job& job, const JobSnapshot& s, JobRecorder& recorder) {
  core::RunOptions run;
  run.arena = &ArenaFor(s.progress.bytes_total);
  run.cancel = &job.cancel_token();
  run.window_bytes = window_bytes_;
  // The job table hears of progress now and then: an interrupted job shows how far it got.
  absl::Time stored = absl::Now();
  run.on_progress = [&job, &recorder, &stored](const core::Progress& p) {
    job.SetProgress(p);
    if (absl::Now() - stored < kStoreProgressEvery) return;
    stored = absl::Now();
    recorder.Save(job);
  };
  RunOutcome outcome;
  outcome.status = s.spec.streamed ? RunStream(job, s, run) : RunFile(job, s, run, outcome.result);
  if (!outcome.status.ok()) outcome.result.reset();
  return outcome;
}

absl::Status LocalExecutor::RunFile(Job& job, const JobSnapshot& s, const core::RunOptions& run,
                                    std::shared_ptr<const core::Stack>& kept) const {
  STACKPROC_ASSIGN_OR_RETURN(core::ProcessRequest request,
                             PathRequest(s.spec, resolver_, limits_, window_bytes_));
  // The mode admission reserved memory for, even if the file changed since.
  request.mode = s.mode;
  request.arena = run.arena;
  request.cancel = run.cancel;
  request.on_progress = run.on_progress;
  // A crash leaves the temporary output tagged with the job, for the next start to find.
  request.write.temp_tag = job.id();
  request.on_stage = [&job](absl::string_view stage) { job.SetStage(std::string(stage)); };
  request.executor = absl::StrCat("stackprocd job ", job.id());
  request.started = s.create_time;
  STACKPROC_ASSIGN_OR_RETURN(core::ProcessSummary summary, core::ProcessFile(request));
  if (summary.result) kept = std::make_shared<const core::Stack>(*std::move(summary.result));
  return absl::OkStatus();
}

absl::Status LocalExecutor::RunStream(Job& job, const JobSnapshot& s, core::RunOptions run) const {
  const JobIo io = job.io();  // held for the run; the job drops its own when it ends
  if (!io.source || !io.sink) return absl::CancelledError("the job's call has ended");
  core::ProcessRequest request;  // what the result records of the job
  request.ops = s.spec.ops;
  request.input_name = s.spec.input_name.empty()
                           ? absl::StrCat("(streamed from ", s.spec.uploaded_from, ")")
                           : s.spec.input_name;
  request.executor = absl::StrCat("stackprocd job ", job.id());
  request.started = s.create_time;
  request.files = &resolver_;  // where its steps' files are (flatfield:flat=)
  STACKPROC_ASSIGN_OR_RETURN(core::Pipeline pipeline, core::RequestPipeline(request));
  run.provenance = core::RunProvenance(request, pipeline, io.source->info());  // as uploaded
  return core::Run(*io.source, pipeline, *io.sink, run);
}

}  // namespace stackproc::server
