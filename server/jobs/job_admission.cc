// JobManager, admission: a job validated, planned and checked against the budget and the
// caller's quotas before it is queued.
#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/io/formats.h"
#include "core/pipeline/pipeline.h"
#include "core/process/process_file.h"
#include "core/tiff/tiff_reader.h"
#include "server/jobs/job_manager.h"
#include "server/jobs/job_manager_util.h"

namespace stackproc::server {

absl::StatusOr<std::shared_ptr<Job>> JobManager::Submit(const JobSpec& spec,
                                                        const std::string& request_id) {
  absl::StatusOr<std::shared_ptr<Job>> job = Admit(spec, request_id);
  if (!job.ok() && options_.metrics != nullptr) {
    options_.metrics->JobRejected(job.status());
    if (core::IsTiffValidationError(job.status())) options_.metrics->TiffValidationFailed();
  }
  return job;
}

absl::StatusOr<std::shared_ptr<Job>> JobManager::SubmitStream(const JobSpec& spec, JobIo io) {
  absl::StatusOr<std::shared_ptr<Job>> job = [&]() -> absl::StatusOr<std::shared_ptr<Job>> {
    STACKPROC_ASSIGN_OR_RETURN(JobSnapshot initial, PlanStream(spec, io));
    std::lock_guard lock(mutex_);
    if (!accepting_) return absl::UnavailableError("server is shutting down");
    STACKPROC_RETURN_IF_ERROR(CheckCallerLimits(initial.spec));
    auto queued = std::make_shared<Job>(std::move(initial), std::move(io));
    Enqueue(queued, " input=stream");
    return queued;
  }();
  if (!job.ok() && options_.metrics != nullptr) options_.metrics->JobRejected(job.status());
  return job;
}

absl::StatusOr<std::shared_ptr<Job>> JobManager::Admit(const JobSpec& spec,
                                                       const std::string& request_id) {
  // Request ids are the caller's own: two callers may pick the same one.
  const std::string request_key = absl::StrCat(spec.owner, "\n", request_id);
  auto same_request = [&]() -> absl::StatusOr<std::shared_ptr<Job>> {
    auto it = by_request_id_.find(request_key);
    if (request_id.empty() || it == by_request_id_.end()) return nullptr;
    std::shared_ptr<Job> job = jobs_.at(it->second);
    if (job->Snapshot().spec == spec) return job;
    return absl::AlreadyExistsError(absl::StrCat("request id ", request_id, " was used for job ",
                                                 job->id(), " with a different spec"));
  };
  {
    std::lock_guard lock(mutex_);
    if (!accepting_) return absl::UnavailableError("server is shutting down");
    STACKPROC_ASSIGN_OR_RETURN(std::shared_ptr<Job> existing, same_request());
    if (existing) return existing;
  }

  // Validate everything the job will need, before it is queued.
  STACKPROC_ASSIGN_OR_RETURN(JobSnapshot initial, Plan(spec));
  initial.request_id = request_id;

  std::lock_guard lock(mutex_);
  if (!accepting_) return absl::UnavailableError("server is shutting down");
  STACKPROC_ASSIGN_OR_RETURN(std::shared_ptr<Job> existing, same_request());
  if (existing) return existing;
  STACKPROC_RETURN_IF_ERROR(CheckCallerLimits(spec));
  auto job = std::make_shared<Job>(std::move(initial));
  Enqueue(job, absl::StrCat(" input=", Quote(spec.input_path)));
  if (!request_id.empty()) by_request_id_[request_key] = job->id();
  return job;
}

absl::StatusOr<JobSnapshot> JobManager::Plan(const JobSpec& spec) const {
  STACKPROC_ASSIGN_OR_RETURN(
      core::ProcessRequest request,
      PathRequest(spec, resolver_, options_.limits, options_.stream_window_bytes));
  if (request.output_target && !spec.overwrite && request.output_target->Exists()) {
    return absl::AlreadyExistsError(
        absl::StrCat(*spec.output_path, ": exists (ask for overwrite to replace it)"));
  }
  STACKPROC_ASSIGN_OR_RETURN(core::ProcessPlan plan,
                             core::PlanProcess(request, local_->concurrency()));
  JobSnapshot job;
  job.spec = spec;
  job.create_time = absl::Now();
  job.input_shape = plan.input.shape;
  job.input_dims = plan.input.metadata.dims;
  job.input_type = plan.input.type;
  job.output_shape = plan.output_shape;
  job.output_type = plan.output_type;
  job.memory_bytes = plan.memory_bytes;
  job.mode = plan.mode;
  job.progress.slices_total = plan.input.shape.depth;  // a whole-stack step adds a pass later
  job.progress.bytes_total = core::StackBytes(plan.input.shape, plan.input.type).value_or(0);
  // Where it runs; on a cluster it holds none of the server's memory.
  STACKPROC_RETURN_IF_ERROR(PlannerOf().Plan(job, plan));
  if (job.memory_bytes > options_.memory_budget) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the job needs ", Gib(plan.memory_bytes), " of memory (", core::ProcessModeName(plan.mode),
        plan.mode == core::ProcessMode::kInMemory
            ? (request.output_path.empty() ? ": the result is kept in memory"
                                           : ": the pipeline needs the whole stack")
            : "",
        ") and the server's memory budget is ", Gib(options_.memory_budget), " (--memory-budget)"));
  }
  return job;
}

absl::StatusOr<JobSnapshot> JobManager::Replan(const JobSnapshot& old) const {
  STACKPROC_ASSIGN_OR_RETURN(JobSnapshot fresh, Plan(old.spec));
  fresh.id = old.id;
  fresh.request_id = old.request_id;
  fresh.create_time = old.create_time;
  fresh.version = old.version + 1;
  return fresh;
}

absl::StatusOr<JobSnapshot> JobManager::PlanStream(const JobSpec& spec, const JobIo& io) const {
  const core::StackInfo& input = io.source->info();
  const core::StackShape& shape = input.shape;
  STACKPROC_RETURN_IF_ERROR(options_.limits.Check("header", shape, input.type));
  STACKPROC_ASSIGN_OR_RETURN(size_t stack_bytes, core::StackBytes(shape, input.type));
  core::ProcessRequest request;
  request.ops = spec.ops;
  request.files = &resolver_;  // where its steps' files are (flatfield:flat=)
  request.window_bytes = options_.stream_window_bytes;
  STACKPROC_ASSIGN_OR_RETURN(
      core::ProcessPlan plan,
      core::PlanSource(io.source, request, io.sink->traits(), local_->concurrency()));
  // A resumable job keeps its tail of results sent (StreamSession) beside its window.
  const size_t out_slice = core::SliceBytes(plan.output_shape, plan.output_type).value_or(0);
  const uint64_t tail =
      options_.stream_grace > absl::ZeroDuration()
          ? std::min<uint64_t>(StreamTailSlices(out_slice), shape.depth) * out_slice
          : 0;
  const uint64_t memory = plan.memory_bytes + tail;
  const bool whole = plan.pipeline.NeedsWholeStack();
  if (memory > options_.memory_budget) {
    return absl::ResourceExhaustedError(
        whole ? absl::StrCat("the pipeline has a whole-stack step (normalize:scope=stack), so the "
                             "streamed job must hold the whole stack: ",
                             Gib(memory), ", more than the server's memory budget of ",
                             Gib(options_.memory_budget),
                             " (--memory-budget); use a per-slice "
                             "pipeline")
              : absl::StrCat("the streamed job's window needs ", Gib(memory),
                             ", more than the server's memory budget of ",
                             Gib(options_.memory_budget), " (--memory-budget)"));
  }
  JobSnapshot job;
  job.spec = spec;
  job.spec.streamed = true;
  job.create_time = absl::Now();
  job.input_shape = shape;
  job.input_dims = input.metadata.dims;
  job.input_type = input.type;
  job.output_shape = plan.output_shape;
  job.output_type = plan.output_type;
  job.memory_bytes = memory;
  job.mode = plan.mode;
  job.progress.slices_total = shape.depth;
  job.progress.bytes_total = stack_bytes;
  return job;
}

absl::Status JobManager::CheckCallerLimits(const JobSpec& spec) const {
  int mine = 0, streams = 0;
  for (const auto& [id, job] : jobs_) {
    const JobSnapshot s = job->Snapshot();
    if (IsTerminal(s.state)) continue;
    mine += s.spec.owner == spec.owner;
    streams += s.spec.streamed;
  }
  const std::string who = spec.owner.empty() ? "the server" : spec.owner;
  if (mine >= options_.max_jobs_per_caller) {
    return absl::ResourceExhaustedError(absl::StrCat(
        who, " has ", mine, " jobs queued or running, the most a caller may have at once (",
        options_.max_jobs_per_caller, ", --max-jobs-per-caller)"));
  }
  if (spec.streamed && streams >= options_.max_streams) {
    return absl::ResourceExhaustedError(
        absl::StrCat(streams, " streamed jobs are open, the most the server takes at once (",
                     options_.max_streams, ", --max-streams)"));
  }
  return absl::OkStatus();
}

}  // namespace stackproc::server
