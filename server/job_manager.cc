#include "server/job_manager.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/pipeline.h"
#include "core/process_file.h"
#include "core/status_macros.h"
#include "core/tiff_reader.h"

namespace stackproc::server {
namespace {

std::string Gib(uint64_t bytes) {
  return absl::StrFormat("%.2f GiB", static_cast<double>(bytes) / (uint64_t{1} << 30));
}

// The memory this process may use: physical memory, or the container's limit when a cgroup
// sets one (v2 memory.max, v1 memory.limit_in_bytes). In a container the host's physical
// memory is not ours: a budget from it would get the server OOM-killed.
uint64_t AvailableMemory() {
  const auto pages = static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES));
  const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  uint64_t memory = pages * page;
  for (const char* path :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream file(path);
    std::string text;
    uint64_t limit = 0;
    if (file >> text && absl::SimpleAtoi(text, &limit) && limit > 0) {
      memory = std::min(memory, limit);  // "max" (no limit) does not parse
    }
  }
  return memory;
}

uint64_t DefaultBudget() { return AvailableMemory() / 4 * 3; }

// How often a running job's progress is written to the job store.
constexpr absl::Duration kStoreProgressEvery = absl::Seconds(2);

// Why `s`, not ended, ends INTERRUPTED: the server shuts down, or was found to have stopped
// (crashed, killed) when it starts again.
std::string InterruptReason(const JobSnapshot& s, bool shutdown) {
  return absl::StrCat(
      shutdown ? "the server shut down " : "the server stopped ",
      s.state == JobState::kQueued ? "before the job started" : "while the job was running",
      s.spec.streamed ? " (its stack came over its call: send it again)"
                      : " (ResumeJob runs it again)");
}

// A quoted value for key=value logs.
std::string Quote(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out + "\"";
}

}  // namespace

absl::StatusOr<std::unique_ptr<JobManager>> JobManager::Create(JobManagerOptions options) {
  if (options.data_root.empty()) {
    return absl::InvalidArgumentError("a data root is required (--data-root)");
  }
  STACKPROC_ASSIGN_OR_RETURN(PathResolver resolver, PathResolver::Create(options.data_root));
  if (options.memory_budget == 0) options.memory_budget = DefaultBudget();
  if (options.max_running_jobs < 1) {
    return absl::InvalidArgumentError("max running jobs must be at least 1");
  }
  auto manager = std::unique_ptr<JobManager>(new JobManager(options, std::move(resolver)));
  if (!options.state_dir.empty()) {
    // Under the data root, a job could write over the job table.
    std::error_code error;
    const std::string root = std::filesystem::weakly_canonical(options.data_root, error).string();
    const std::string state = std::filesystem::weakly_canonical(options.state_dir, error).string();
    if (!error && absl::StartsWith(state + "/", root + "/")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the state directory ", options.state_dir, " is inside the data root ", options.data_root,
          ": jobs could overwrite the job table (--state-dir elsewhere)"));
    }
    STACKPROC_ASSIGN_OR_RETURN(manager->store_, JobStore::Open(options.state_dir));
    STACKPROC_RETURN_IF_ERROR(manager->Restore());
  }
  for (int i = 0; i < options.max_running_jobs; ++i) {
    manager->workers_.emplace_back([m = manager.get()] { m->WorkerLoop(); });
  }
  return manager;
}

JobManager::JobManager(JobManagerOptions options, PathResolver resolver)
    : options_(std::move(options)),
      resolver_(std::move(resolver)),
      arena_(options_.threads > 0 ? options_.threads : tbb::task_arena::automatic),
      quick_arena_(arena_.max_concurrency(), 1, tbb::task_arena::priority::high) {}

JobManager::~JobManager() { Shutdown(absl::ZeroDuration()); }

absl::StatusOr<std::shared_ptr<Job>> JobManager::Submit(const JobSpec& spec,
                                                        const std::string& request_id) {
  absl::StatusOr<std::shared_ptr<Job>> job = Admit(spec, request_id);
  if (!job.ok() && options_.metrics != nullptr) {
    options_.metrics->JobRejected(job.status());
    if (core::IsTiffValidationError(job.status())) options_.metrics->TiffValidationFailed();
  }
  return job;
}

absl::StatusOr<std::shared_ptr<Job>> JobManager::SubmitStream(const JobSpec& spec,
                                                              const core::StackInfo& input,
                                                              JobIo io) {
  absl::StatusOr<std::shared_ptr<Job>> job = [&]() -> absl::StatusOr<std::shared_ptr<Job>> {
    STACKPROC_ASSIGN_OR_RETURN(JobSnapshot initial, PlanStream(spec, input));
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

Metrics::JobCounts JobManager::Counts() const {
  std::lock_guard lock(mutex_);
  Metrics::JobCounts counts;
  for (const auto& [id, job] : jobs_) ++counts.by_state[job->Snapshot().state];
  counts.queued = static_cast<int>(queue_.size());
  return counts;
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
  STACKPROC_ASSIGN_OR_RETURN(core::ProcessRequest request, RequestFor(spec));
  if (request.output_target && !spec.overwrite && request.output_target->Exists()) {
    return absl::AlreadyExistsError(
        absl::StrCat(*spec.output_path, ": exists (ask for overwrite to replace it)"));
  }
  STACKPROC_ASSIGN_OR_RETURN(core::ProcessPlan plan,
                             core::PlanProcess(request, arena_.max_concurrency()));
  if (plan.memory_bytes > options_.memory_budget) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the job needs ", Gib(plan.memory_bytes), " of memory (", core::ProcessModeName(plan.mode),
        plan.mode == core::ProcessMode::kInMemory
            ? (request.output_path.empty() ? ": the result is kept in memory"
                                           : ": the pipeline needs the whole stack")
            : "",
        ") and the server's memory budget is ", Gib(options_.memory_budget), " (--memory-budget)"));
  }
  JobSnapshot job;
  job.spec = spec;
  job.create_time = absl::Now();
  job.input_shape = plan.info.shape;
  job.input_type = plan.info.pixel_type;
  job.output_shape = plan.output_shape;
  job.output_type = plan.output_type;
  job.memory_bytes = plan.memory_bytes;
  job.mode = plan.mode;
  job.progress.slices_total = plan.info.shape.depth;  // a whole-stack step adds a pass later
  job.progress.bytes_total = core::StackBytes(plan.info.shape, plan.info.pixel_type).value_or(0);
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

absl::StatusOr<JobSnapshot> JobManager::PlanStream(const JobSpec& spec,
                                                   const core::StackInfo& input) const {
  const core::StackShape& shape = input.shape;
  if (shape.depth <= 0 || shape.height <= 0 || shape.width <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("header: shape ", core::ShapeString(shape),
                                                   " must be positive in every dimension"));
  }
  const core::TiffLimits& limits = options_.limits;
  if (shape.depth > limits.max_pages) {
    return absl::ResourceExhaustedError(
        absl::StrCat("header: ", shape.depth, " slices exceed the limit of ", limits.max_pages,
                     " slices per stack (--max-slices)"));
  }
  if (shape.height > limits.max_side || shape.width > limits.max_side) {
    return absl::ResourceExhaustedError(
        absl::StrCat("header: slices of ", shape.height, "x", shape.width, " exceed the limit of ",
                     limits.max_side, " pixels per side (--max-side)"));
  }
  STACKPROC_ASSIGN_OR_RETURN(size_t stack_bytes, core::StackBytes(shape, input.type));
  if (stack_bytes > limits.max_stack_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("header: a stack of ", stack_bytes, " bytes exceeds the limit of ",
                     limits.max_stack_bytes, " bytes (--max-stack-bytes)"));
  }
  STACKPROC_ASSIGN_OR_RETURN(core::Pipeline pipeline, core::Pipeline::Parse(spec.ops));
  const core::SliceFormat format{static_cast<int>(shape.height), static_cast<int>(shape.width),
                                 input.type};
  STACKPROC_ASSIGN_OR_RETURN(std::vector<core::SliceFormat> formats, pipeline.Plan(format));
  STACKPROC_ASSIGN_OR_RETURN(
      uint64_t memory,
      core::PlanRunMemory(pipeline, formats, shape.depth, options_.stream_window_bytes,
                          arena_.max_concurrency(), {.fed = true}, {.lends = true}));
  const bool whole = pipeline.NeedsWholeStack();
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
  job.input_type = input.type;
  job.output_shape = {shape.depth, formats.back().height, formats.back().width};
  job.output_type = formats.back().type;
  job.memory_bytes = memory;
  job.mode = whole ? core::ProcessMode::kInMemory : core::ProcessMode::kStreaming;
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

void JobManager::Enqueue(std::shared_ptr<Job> job, const std::string& log_extra) {
  static thread_local std::mt19937_64 random(std::random_device{}());
  const bool resumed = !job->id().empty();
  if (!resumed) {
    std::string id;
    do {  // unique among the jobs listed, which a restart may have brought back
      id = absl::StrFormat("%06x%04x", random() & 0xffffff, next_id_++ & 0xffff);
    } while (jobs_.contains(id));
    job->AssignId(id);
    order_.push_back(id);
  }
  jobs_[job->id()] = job;
  queue_.push_back(job);
  Persist(*job);
  const JobSnapshot s = job->Snapshot();
  LogEvent(s, resumed ? "job_resumed" : "job_submitted",
           absl::StrCat(log_extra, " ops=", Quote(absl::StrJoin(s.spec.ops, " -> ")),
                        " memory_bytes=", s.memory_bytes,
                        s.spec.owner.empty() ? "" : " owner=" + Quote(s.spec.owner)));
  changed_.notify_all();
}

bool JobManager::Dequeue(Job& job, const absl::Status& status) {
  {
    std::lock_guard lock(mutex_);
    auto queued = std::find_if(queue_.begin(), queue_.end(),
                               [&](const std::shared_ptr<Job>& j) { return j.get() == &job; });
    if (queued == queue_.end()) return false;
    queue_.erase(queued);
  }
  job.Finish(status, absl::Now());
  Save(job);
  LogEnd(job.Snapshot());
  return true;
}

absl::StatusOr<std::shared_ptr<Job>> JobManager::Get(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job ", id));
  return it->second;
}

std::vector<std::shared_ptr<Job>> JobManager::List() const {
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<Job>> jobs;
  for (const std::string& id : order_) jobs.push_back(jobs_.at(id));
  return jobs;
}

absl::StatusOr<std::shared_ptr<Job>> JobManager::Cancel(const std::string& id) {
  STACKPROC_ASSIGN_OR_RETURN(std::shared_ptr<Job> job, Get(id));
  job->RequestCancel();
  Dequeue(*job, absl::CancelledError("cancelled while queued"));
  return job;
}

absl::Status JobManager::Delete(const std::string& id) {
  STACKPROC_ASSIGN_OR_RETURN(std::shared_ptr<Job> job, Get(id));
  if (!IsTerminal(job->Snapshot().state)) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id, " has not finished (cancel it first)"));
  }
  std::lock_guard lock(mutex_);
  if (store_) {
    if (absl::Status s = store_->Remove(id); !s.ok()) return s;
  }
  memory_in_use_ -= job->DropResult();
  jobs_.erase(id);
  order_.erase(std::find(order_.begin(), order_.end(), id));
  for (auto it = by_request_id_.begin(); it != by_request_id_.end();) {
    it = it->second == id ? by_request_id_.erase(it) : std::next(it);
  }
  changed_.notify_all();
  return absl::OkStatus();
}

uint64_t JobManager::memory_in_use() const {
  std::lock_guard lock(mutex_);
  return memory_in_use_;
}

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
      if (store_) {
        if (absl::Status s = store_->Remove(id); !s.ok()) {
          LogEvent(job->Snapshot(), "job_store_failed",
                   absl::StrCat(" reason=", Quote(s.message())));
        }
      }
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
      JoinEndedStreams();
      last_sweep_ = now;
    }
    const bool fits = !queue_.empty() && memory_in_use_ + queue_.front()->Snapshot().memory_bytes <=
                                             options_.memory_budget;
    if (stopping_ && queue_.empty()) return;
    if (!fits) {
      changed_.wait_for(lock, std::chrono::seconds(1));
      continue;
    }
    std::shared_ptr<Job> job = queue_.front();
    queue_.pop_front();
    const uint64_t memory = job->Snapshot().memory_bytes;
    memory_in_use_ += memory;
    ++running_;
    if (job->Snapshot().spec.streamed) {
      auto ended = std::make_shared<std::atomic<bool>>(false);
      stream_threads_.push_back({std::thread([this, job, memory, ended] {
                                   Run(*job, memory);
                                   ended->store(true);
                                 }),
                                 ended});
      continue;
    }
    lock.unlock();
    Run(*job, memory);
    lock.lock();
  }
}

void JobManager::JoinEndedStreams() {
  std::erase_if(stream_threads_, [](StreamThread& t) {
    if (!t.ended->load()) return false;
    t.thread.join();
    return true;
  });
}

absl::StatusOr<core::ProcessRequest> JobManager::RequestFor(const JobSpec& spec) const {
  core::ProcessRequest request;
  STACKPROC_ASSIGN_OR_RETURN(request.input_file, resolver_.Input(spec.input_path));
  request.input_path = spec.input_path;
  if (spec.output_path) {
    STACKPROC_ASSIGN_OR_RETURN(request.output_target, resolver_.Output(*spec.output_path));
    request.output_path = *spec.output_path;
  }
  request.ops = spec.ops;
  request.write.compression = spec.compression;
  request.write.overwrite = spec.overwrite;
  request.limits = options_.limits;
  request.window_bytes = options_.stream_window_bytes;
  return request;
}

void JobManager::Run(Job& job, uint64_t memory) {
  const JobSnapshot snapshot = job.Snapshot();
  const absl::Time start = absl::Now();
  job.Start(start);
  LogEvent(job.Snapshot(), "job_started");
  Save(job);

  core::RunOptions run;
  run.arena = &ArenaFor(snapshot.progress.bytes_total);
  run.cancel = &job.cancel_token();
  run.window_bytes = options_.stream_window_bytes;
  // The store hears of progress now and then: an interrupted job shows how far it got.
  absl::Time stored = start;
  run.on_progress = [this, &job, &stored](const core::Progress& p) {
    job.SetProgress(p);
    if (store_ == nullptr || absl::Now() - stored < kStoreProgressEvery) return;
    stored = absl::Now();
    Save(job);
  };
  std::shared_ptr<const core::Stack> kept;
  absl::Status status = snapshot.spec.streamed ? RunStream(job, snapshot, run)
                                              : RunFile(job, snapshot, run, kept);
  const absl::Time end = absl::Now();
  if (!status.ok()) kept.reset();
  {
    // Account before the final state is published: whoever sees it finished finds its memory
    // released (and the result's held).
    std::lock_guard lock(mutex_);
    --running_;
    memory_in_use_ -= memory;
    if (kept) memory_in_use_ += kept->size_bytes();
    changed_.notify_all();
  }
  job.Finish(status, end, kept);
  Save(job);
  core::ReturnFreeMemory();

  LogEnd(job.Snapshot());
}

absl::Status JobManager::RunFile(Job& job, const JobSnapshot& s, const core::RunOptions& run,
                                 std::shared_ptr<const core::Stack>& kept) {
  STACKPROC_ASSIGN_OR_RETURN(core::ProcessRequest request, RequestFor(s.spec));
  // The mode admission reserved memory for, even if the file changed since.
  request.mode = s.mode;
  request.arena = run.arena;
  request.cancel = run.cancel;
  request.on_progress = run.on_progress;
  // A crash leaves the temporary output tagged with the job, for Restore to find.
  request.write.temp_tag = job.id();
  request.on_stage = [&job](absl::string_view stage) { job.SetStage(std::string(stage)); };
  STACKPROC_ASSIGN_OR_RETURN(core::ProcessSummary summary, core::ProcessFile(request));
  if (summary.result) kept = std::make_shared<const core::Stack>(*std::move(summary.result));
  return absl::OkStatus();
}

absl::Status JobManager::RunStream(Job& job, const JobSnapshot& s, const core::RunOptions& run) {
  STACKPROC_ASSIGN_OR_RETURN(core::Pipeline pipeline, core::Pipeline::Parse(s.spec.ops));
  const JobIo io = job.io();  // held for the run; the job drops its own when it ends
  if (!io.source || !io.sink) return absl::CancelledError("the job's call has ended");
  return core::Run(*io.source, pipeline, *io.sink, run);
}

void JobManager::LogEnd(const JobSnapshot& s) {
  const absl::Status& status = s.error;
  const double seconds =
      s.start_time == absl::InfinitePast() ? 0 : absl::ToDoubleSeconds(s.end_time - s.start_time);
  std::string extra = absl::StrFormat(" duration_s=%.3f", seconds);
  if (status.ok()) {
    uint64_t in_bytes = core::StackBytes(s.input_shape, s.input_type).value_or(0);
    absl::StrAppendFormat(&extra, " mb_per_s=%.1f", in_bytes / 1e6 / std::max(seconds, 1e-9));
  } else {
    absl::StrAppend(&extra, " code=", absl::StatusCodeToString(status.code()),
                    " reason=", Quote(status.message()));
  }
  LogEvent(s,
           status.ok()                 ? "job_finished"
           : absl::IsCancelled(status) ? "job_cancelled"
           : absl::IsAborted(status)   ? "job_interrupted"
                                       : "job_failed",
           extra);
}

void JobManager::Shutdown(absl::Duration grace) {
  std::vector<std::shared_ptr<Job>> queued;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    accepting_ = false;
    queued.assign(queue_.begin(), queue_.end());
    queue_.clear();
  }
  for (auto& job : queued) {
    // With a job table, a path job that has not started keeps its place for the next start.
    if (store_ && !job->Snapshot().spec.streamed) continue;
    const std::string reason = InterruptReason(job->Snapshot(), true);
    job->Interrupt(reason);
    job->Finish(absl::AbortedError(reason), absl::Now());
    LogEnd(job->Snapshot());
    Save(*job);
  }
  std::unique_lock lock(mutex_);
  changed_.wait_until(lock, absl::ToChronoTime(absl::Now() + grace), [&] { return running_ == 0; });
  std::vector<std::shared_ptr<Job>> unfinished;
  for (auto& [id, job] : jobs_) {
    if (!IsTerminal(job->Snapshot().state)) unfinished.push_back(job);
  }
  stopping_ = true;
  changed_.notify_all();
  lock.unlock();
  for (auto& job : unfinished) {  // hooks run outside the lock
    job->Interrupt(InterruptReason(job->Snapshot(), true));
  }
  for (std::thread& worker : workers_) worker.join();
  std::vector<StreamThread> streams;
  {
    std::lock_guard stopped(mutex_);
    streams.swap(stream_threads_);
  }
  for (StreamThread& stream : streams) stream.thread.join();
}

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
  int requeued = 0;
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
    } else if (!ended) {
      s.error = absl::AbortedError(InterruptReason(s, false));
      s.state = JobState::kInterrupted;
      s.stage = "done";
      s.end_time = now;
      if (s.spec.output_path) {
        // What its writer left: the final name was never written (the rename is the last step).
        absl::StatusOr<core::OutputTarget> target = resolver_.Output(*s.spec.output_path);
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
                            " path=", Quote(store_->path()), "\n")
                   .c_str(),
               stderr);
  }
  return absl::OkStatus();
}

void JobManager::Save(const Job& job) {
  std::lock_guard lock(mutex_);
  Persist(job);
}

void JobManager::Persist(const Job& job) {
  if (store_ == nullptr || !jobs_.contains(job.id())) return;
  if (absl::Status s = store_->Put(job.Snapshot()); !s.ok()) {
    // The job itself is fine; only its record may be stale after a restart.
    LogEvent(job.Snapshot(), "job_store_failed", absl::StrCat(" reason=", Quote(s.message())));
  }
}

void JobManager::LogEvent(const JobSnapshot& s, const std::string& event,
                          const std::string& extra) {
  std::string line =
      absl::StrCat("ts=", absl::FormatTime(absl::RFC3339_full, absl::Now(), absl::UTCTimeZone()),
                   " event=", event, " job=", s.id, " state=", JobStateName(s.state), extra, "\n");
  std::fputs(line.c_str(), stderr);
  if (options_.metrics == nullptr) return;
  if (event == "job_submitted") options_.metrics->JobSubmitted();
  if (event == "job_store_failed") options_.metrics->JobStoreFailed();
  if (event == "job_finished" || event == "job_failed" || event == "job_cancelled" ||
      event == "job_interrupted") {
    options_.metrics->JobEnded(s);
  }
}

}  // namespace stackproc::server
