#include "server/executors/slurm_executor.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <tbb/task_arena.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "core/base/status_macros.h"
#include "core/io/formats.h"
#include "core/io/stack_io.h"
#include "core/pipeline/pipeline.h"
#include "core/process/shards.h"
#include "server/executors/slurm_work_folder.h"
#include "server/jobs/job_manager_util.h"

namespace stackproc::server {
namespace {

// After scancel, how long the tasks get to stop (they remove their temporary files on SIGTERM).
constexpr absl::Duration kCancelWait = absl::Seconds(60);

// Seconds one core takes to read and process one slice of the job: its middle slice, timed
// (0 when that fails: the job's own run will say why).
double SliceSeconds(core::ProcessPlan& plan) {
  const int64_t middle = plan.input.shape.depth / 2;
  absl::StatusOr<std::unique_ptr<core::ZRangeSource>> one =
      core::ZRangeSource::Create(plan.source, {middle, middle + 1});
  if (!one.ok()) return 0;
  core::StackSink sink;
  tbb::task_arena arena(1);
  core::RunOptions run;
  run.arena = &arena;
  const absl::Time start = absl::Now();
  if (!core::Run(**one, plan.pipeline, sink, run).ok()) return 0;
  return absl::ToDoubleSeconds(absl::Now() - start);
}

// Why `job` must run on the server whatever it asked for; empty when it can be cut.
std::string WhyNotCut(const JobSnapshot& job) {
  absl::StatusOr<core::Pipeline> pipeline = core::Pipeline::Create(job.spec.ops);
  if (!pipeline.ok()) return std::string(pipeline.status().message());
  if (!job.spec.output_path) return "its result is kept in memory";
  if (core::ParseOutputName(*job.spec.output_path)->format != core::Format::kTiff) {
    return "only TIFF outputs are put together from shards";
  }
  if (!pipeline->NeedsWholeStack()) return "";
  // Its statistics gathered range by range first, when they add up (integer pixels, one step).
  const core::SliceFormat input = core::SliceFormat::Of(job.input_shape, job.input_type);
  absl::StatusOr<std::vector<core::SliceFormat>> formats = pipeline->Plan(input);
  const absl::Status cut =
      formats.ok() ? core::StatsStep(*pipeline, *formats).status() : formats.status();
  return std::string(cut.message());
}

// Waits `wait`, hearing the job's cancel token at once; false when it fired.
bool Wait(Job& job, absl::Duration wait) {
  const absl::Time until = absl::Now() + wait;
  while (absl::Now() < until && !job.cancel_token().IsCancelled()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(
        std::clamp<int64_t>(absl::ToInt64Milliseconds(until - absl::Now()), 1, 100)));
  }
  return !job.cancel_token().IsCancelled();
}

}  // namespace

absl::Status SlurmExecutor::Plan(JobSnapshot& job, core::ProcessPlan& plan) const {
  const JobSpec& spec = job.spec;
  job.execution = {};
  const int64_t depth = job.input_shape.depth;
  int64_t shards = spec.shards;
  if (shards == 0) {
    // One per shard_bytes of input, or more when the pipeline's cost (one slice, timed) would
    // keep a shard busier than shard_seconds on its CPUs: a small, cheap job runs here.
    const SlurmOptions& o = options_;
    const int64_t by_size =
        static_cast<int64_t>(job.progress.bytes_total / std::max<uint64_t>(o.shard_bytes, 1));
    const double seconds = SliceSeconds(plan) * static_cast<double>(depth) /
                           std::max(o.cpus_per_shard, 1) /
                           std::max(absl::ToDoubleSeconds(o.shard_seconds), 1e-3);
    shards = std::min<int64_t>(
        {depth, kMaxShards, std::max(by_size, static_cast<int64_t>(std::ceil(seconds)))});
  }
  if (shards <= 1) return absl::OkStatus();
  if (const std::string why = WhyNotCut(job); !why.empty()) {
    if (spec.shards <= 1) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("shards: ", why, "; submit it with shards 0 or 1 to run it on the server"));
  }
  if (shards > depth || shards > kMaxShards) {
    return absl::InvalidArgumentError(absl::StrCat("shards: ", shards, " shards for a stack of ",
                                                   depth, " slices; at most one per slice and ",
                                                   kMaxShards, " in all"));
  }
  job.execution.executor = Executor::kSlurm;
  job.execution.shards = static_cast<int>(shards);
  job.execution.shards_pending = job.execution.shards;
  job.memory_bytes = 0;  // the cluster's; the assembly copies strips through a small buffer
  job.mode = core::ProcessMode::kStreaming;
  return absl::OkStatus();
}

namespace {

// One phase of a job's shards on the cluster: its arrays, what each shard has come to.
class ShardRun {
 public:
  ShardRun(SlurmCommands& slurm, WorkFolder work, const JobSnapshot& s, Execution execution)
      : slurm_(slurm),
        work_(std::move(work)),
        name_(absl::StrCat("stackproc-", s.id, "-", work_.phase)),
        execution_(std::move(execution)) {
    const int n = execution_.shards;
    for (int i = 0; i < n; ++i) ranges_.push_back(*core::ShardRange(s.input_shape.depth, n, i));
    attempts_ = AttemptsFromLogs(work_, n);
  }
  const Execution& execution() const { return execution_; }
  const WorkFolder& work() const { return work_; }
  const std::vector<std::string>& arrays() const { return arrays_; }
  // No array of this phase known and no task of it ever started: it is submitted whole.
  bool untouched() const {
    return arrays_.empty() && std::all_of(attempts_.begin(), attempts_.end(),
                                          [](int attempts) { return attempts == 0; });
  }

  // Makes the work folder and the phase's script.
  absl::Status Prepare(const core::OutputTarget& output, const std::string& script) {
    if (::mkdirat(output.dir(), work_.name.c_str(), 0777) != 0 && errno != EEXIST) {
      return absl::Status(absl::ErrnoToStatusCode(errno),
                          absl::StrCat(output.display(), ": cannot make the shards' folder beside it (",
                                       std::strerror(errno), ")"));
    }
    std::ofstream file(work_.Script(), std::ios::trunc);
    file << script;
    if (!file.flush()) return absl::InternalError(absl::StrCat("cannot write ", work_.Script()));
    ::chmod(work_.Script().c_str(), 0755);
    return absl::OkStatus();
  }

  // Re-attached: the phase's arrays the controller lists under its name (those the job table
  // has, and any submitted just before the server stopped, before it could record them).
  absl::Status Adopt() {
    STACKPROC_ASSIGN_OR_RETURN(std::vector<std::string> named, slurm_.ArraysNamed(name_));
    for (const std::string& id : named) Record(id);
    return absl::OkStatus();
  }

  // Submits shards first..last as one array.
  absl::Status Submit(int first, int last) {
    const std::string indices =
        first == last ? std::to_string(first) : absl::StrCat(first, "-", last);
    STACKPROC_ASSIGN_OR_RETURN(
        std::string id, slurm_.Submit(work_.Script(), indices, name_, work_.Log("%a", "%A")));
    Record(id);
    for (int i = first; i <= last; ++i) {
      ++attempts_[i];
      array_of_[i] = id;
    }
    return absl::OkStatus();
  }

  // One look at the cluster and at the work folder: the shards' counts and slices done. A shard
  // that ended without its piece is submitted again, alone, while it has attempts left; then the
  // job fails, naming the shard, its slices, its node and the tail of its log.
  absl::StatusOr<int64_t> Poll(int retries) {
    STACKPROC_ASSIGN_OR_RETURN(auto tasks, slurm_.Tasks(arrays_));
    Execution& e = execution_;
    e.shards_done = e.shards_running = e.shards_pending = 0;
    int64_t slices = 0;
    for (int i = 0; i < e.shards; ++i) {
      auto task = tasks.find(i);
      const TaskState state = task == tasks.end() ? TaskState::kEnded : task->second.state;
      if (::access(work_.Piece(i).c_str(), F_OK) == 0) {
        ++e.shards_done;
        slices += ranges_[i].size();
      } else if (state == TaskState::kPending) {
        ++e.shards_pending;
      } else if (state == TaskState::kRunning) {
        ++e.shards_running;
        slices += std::min(core::worker::ReadSlicesDone(work_.Progress(i)), ranges_[i].size());
      } else {
        STACKPROC_RETURN_IF_ERROR(Retry(i, task == tasks.end() ? TaskInfo{} : task->second, retries));
        ++e.shards_pending;
      }
    }
    return slices;
  }

  // What Poll last retried, and why a retry waits to be submitted; cleared as they are read.
  std::string TakeRetried() { return std::exchange(retried_, ""); }
  std::string TakeRefused() { return std::exchange(refused_, ""); }

  // Cancels the tasks, gives them kCancelWait to stop, and removes the work folder.
  void CancelAndSweep(const core::OutputTarget& output) {
    (void)Adopt();  // best effort, as all of this: the sweep follows anyway
    (void)slurm_.Cancel(arrays_);
    const absl::Time give_up = absl::Now() + kCancelWait;
    while (absl::Now() < give_up) {
      absl::StatusOr<std::map<int, TaskInfo>> tasks = slurm_.Tasks(arrays_);
      if (tasks.ok() && std::all_of(tasks->begin(), tasks->end(), [](const auto& t) {
            return t.second.state == TaskState::kEnded;
          })) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    core::RemoveEntry(output.dir(), work_.name);
  }

 private:
  // Shard i ended without its piece: submitted again while it has attempts left.
  absl::Status Retry(int i, const TaskInfo& info, int retries) {
    ++execution_.shards_failed;
    const std::string log = work_.Log(i, LastArrayOf(i));
    const std::string node = !info.node.empty() ? info.node : NodeOf(log);
    const std::string failure = absl::StrCat(
        work_.stats() ? "the statistics of shard " : "shard ", i, " of ", execution_.shards,
        " (slices ", ranges_[i].begin, "-", ranges_[i].end - 1, ") failed on ",
        node.empty() ? "an unknown node" : node,
        info.slurm_state.empty() ? "" : " (" + info.slurm_state + ")", ": ", LogTail(log));
    if (attempts_[i] > retries) {
      return absl::InternalError(absl::StrCat(failure, "; ", attempts_[i], " attempts"));
    }
    retried_ = failure;
    absl::Status submitted = Submit(i, i);
    if (absl::IsUnavailable(submitted)) {  // a submit limit: the next poll tries again
      --execution_.shards_failed;         // counted once, when it is submitted
      refused_ = std::string(submitted.message());
      return absl::OkStatus();
    }
    return submitted;
  }
  void Record(const std::string& id) {
    if (std::find(arrays_.begin(), arrays_.end(), id) == arrays_.end()) arrays_.push_back(id);
    std::vector<std::string>& all = execution_.slurm_job_ids;
    if (std::find(all.begin(), all.end(), id) == all.end()) all.push_back(id);
  }
  // The job id of shard i's latest attempt (the newest array with its log, when re-attached).
  std::string LastArrayOf(int i) const {
    if (auto it = array_of_.find(i); it != array_of_.end()) return it->second;
    for (auto id = arrays_.rbegin(); id != arrays_.rend(); ++id) {
      if (::access(work_.Log(i, *id).c_str(), F_OK) == 0) return *id;
    }
    return arrays_.empty() ? "" : arrays_.front();
  }

  SlurmCommands& slurm_;
  const WorkFolder work_;
  const std::string name_;  // the arrays' SLURM job name: "stackproc-JOB-PHASE"
  Execution execution_;
  std::vector<std::string> arrays_;  // this phase's, oldest first
  std::vector<core::ZRange> ranges_;
  std::vector<int> attempts_;            // per shard
  std::map<int, std::string> array_of_;  // shard -> the array of its latest attempt (this run)
  std::string retried_, refused_;
};

}  // namespace

namespace {

// A job's run on the cluster: its phases, one after the other, then the assembly. Each step
// returns nullopt when the server stops meanwhile (the job detaches, as the job table says).
class ShardedJob {
 public:
  ShardedJob(const SlurmOptions& options, SlurmCommands& slurm, const std::string& root,
             const core::OutputTarget& output, Job& job, const JobSnapshot& s,
             JobRecorder& recorder)
      : options_(options),
        slurm_(slurm),
        root_(root),
        output_(output),
        job_(job),
        s_(s),
        recorder_(recorder),
        gathered_(core::Pipeline::Create(s.spec.ops)->NeedsWholeStack()),
        pieces_(WorkFolderOf(root, s, std::string(core::worker::kShardPhase), gathered_)),
        execution_(s.execution) {
    if (gathered_) phases_.emplace_back(core::worker::kStatsPhase);
    phases_.emplace_back(core::worker::kShardPhase);
  }

  std::optional<absl::Status> Run() {
    job_.SetStage("cluster");
    for (size_t phase = 0; phase < phases_.size(); ++phase) {
      const WorkFolder work = WorkFolderOf(root_, s_, phases_[phase], gathered_);
      // The statistics summed: that phase is over.
      if (work.stats() && ::access(pieces_.StackStats().c_str(), F_OK) == 0) continue;
      ShardRun run(slurm_, work, s_, execution_);
      std::optional<absl::Status> ended = Start(run);
      if (ended) return Ended(run, *ended);
      ended = Watch(run, phase);
      if (ended) return Ended(run, *ended);
      execution_ = run.execution();
      if (work.stats()) {
        if (absl::Status summed = SumStats(work); !summed.ok()) return Ended(run, summed);
      }
    }
    return Assemble();
  }

 private:
  // Submits the phase, or re-attaches to it (its script there: submitted before, or the server
  // stopped just before). nullopt once its arrays are on the cluster.
  std::optional<absl::Status> Start(ShardRun& run) {
    const WorkFolder& work = run.work();
    const bool fresh = ::access(work.Script().c_str(), F_OK) != 0;
    if (fresh) {
      const std::string input = absl::StrCat(root_, "/", s_.spec.input_path);
      STACKPROC_RETURN_IF_ERROR(
          run.Prepare(output_, TaskScript(options_.worker, input, work, Current())));
    } else {
      // The controller's answer is needed: without it, what runs would be submitted twice.
      absl::Status adopted;
      while (absl::IsUnavailable(adopted = run.Adopt())) {
        if (!Wait(job_, options_.poll)) return absl::CancelledError("cancelled");
      }
      if (!adopted.ok()) return adopted;
    }
    if (run.untouched()) {
      STACKPROC_RETURN_IF_ERROR(SubmitWaiting(run));
      job_.SetStage("cluster");
    }
    job_.SetExecution(run.execution());
    recorder_.Save(job_);
    recorder_.Log(job_.Snapshot(), fresh ? "shards_submitted" : "shards_reattached",
                  absl::StrCat(" phase=", work.phase, " slurm_jobs=",
                               absl::StrJoin(run.arrays(), ","), " shards=", s_.execution.shards,
                               " work=", Quote(work.path)));
    return std::nullopt;
  }

  // Submits every shard of the phase as one array; a refusal that may pass (a submit limit) is
  // tried again after a growing wait, the job's stage saying why.
  absl::Status SubmitWaiting(ShardRun& run) {
    absl::Duration wait = options_.poll;
    for (int attempt = 1;; ++attempt) {
      absl::Status submitted = run.Submit(0, s_.execution.shards - 1);
      if (!absl::IsUnavailable(submitted)) return submitted;
      if (attempt == 1) {
        recorder_.Log(job_.Snapshot(), "sbatch_refused", " error=" + Quote(submitted.message()));
      }
      job_.SetStage(absl::StrCat("waiting to submit its shards: ", submitted.message(),
                                 "; trying again in ", absl::FormatDuration(wait), " (attempt ",
                                 attempt + 1, ")"));
      if (!Wait(job_, wait)) return absl::CancelledError("cancelled");
      wait = std::min(wait * 2, std::max(options_.poll * 16, options_.poll));
    }
  }

  // Polls the phase until every shard is done. nullopt then.
  std::optional<absl::Status> Watch(ShardRun& run, size_t phase) {
    bool unreachable = false;
    while (true) {
      if (!Wait(job_, options_.poll)) return absl::CancelledError("cancelled");
      absl::StatusOr<int64_t> slices = run.Poll(options_.retries);
      if (absl::IsUnavailable(slices.status())) {  // the controller did not answer: ask again
        if (!std::exchange(unreachable, true)) {
          recorder_.Log(job_.Snapshot(), "slurm_unreachable",
                        " error=" + Quote(slices.status().message()));
        }
        continue;
      }
      unreachable = false;
      if (!slices.ok()) return slices.status();
      if (std::string retried = run.TakeRetried(); !retried.empty()) {
        recorder_.Log(job_.Snapshot(), "shard_retried", " reason=" + Quote(retried));
      }
      const std::string refused = run.TakeRefused();
      job_.SetStage(refused.empty() ? "cluster"
                                    : "cluster; a shard waits to be submitted again: " + refused);
      ShowProgress(run.execution(), static_cast<int64_t>(phase) * s_.input_shape.depth + *slices);
      if (run.execution().shards_done == run.execution().shards) return std::nullopt;
    }
  }

  // A whole-stack step adds a pass, as it does on the server.
  void ShowProgress(const Execution& execution, int64_t done) {
    const int64_t depth = s_.input_shape.depth;
    const uint64_t slice_bytes = s_.progress.bytes_total / std::max<int64_t>(depth, 1);
    core::Progress p;
    p.slices_total = static_cast<int64_t>(phases_.size()) * depth;
    p.slices_done = done;
    p.bytes_total = s_.progress.bytes_total;
    p.bytes_done = std::min<uint64_t>(done * slice_bytes, p.bytes_total);
    p.elapsed = absl::Now() - job_.Snapshot().start_time;
    if (done > 0) p.eta = p.elapsed * (static_cast<double>(p.slices_total - done) / done);
    job_.SetExecution(execution);
    job_.SetProgress(p);
    recorder_.Save(job_);
  }

  absl::Status SumStats(const WorkFolder& work) const {
    std::vector<std::string> stats;
    for (int i = 0; i < s_.execution.shards; ++i) stats.push_back(work.Piece(i));
    STACKPROC_ASSIGN_OR_RETURN(std::vector<uint64_t> sum, core::SumStatsFiles(stats));
    return core::WriteStatsFile(pieces_.StackStats(), sum);
  }

  std::optional<absl::Status> Assemble() {
    job_.SetStage("assembling");
    std::vector<std::string> shards;
    for (int i = 0; i < s_.execution.shards; ++i) shards.push_back(pieces_.Piece(i));
    core::WriteOptions write;
    write.overwrite = s_.spec.overwrite;
    write.cancel = &job_.cancel_token();
    write.temp_tag = s_.id;
    absl::Status assembled = core::AssembleTiff(core::LocalFiles(), shards, output_, write);
    if (job_.interrupted()) return std::nullopt;  // the next start assembles them again
    core::RemoveEntry(output_.dir(), pieces_.name);
    return assembled;
  }

  // How a phase that did not finish ends: detached when the server stops (the cluster goes
  // on), else its tasks cancelled and its work folder swept.
  std::optional<absl::Status> Ended(ShardRun& run, const absl::Status& status) {
    if (job_.interrupted()) return std::nullopt;
    run.CancelAndSweep(output_);
    if (absl::IsCancelled(status)) {
      return absl::CancelledError(
          absl::StrCat("cancelled: its shards were cancelled on the cluster (SLURM jobs ",
                       absl::StrJoin(run.execution().slurm_job_ids, ","), ")"));
    }
    // Its message names files as the caller does, beneath the data root.
    return absl::Status(status.code(), absl::StrReplaceAll(status.message(), {{root_ + "/", ""}}));
  }

  JobSnapshot Current() const {
    JobSnapshot current = s_;
    current.execution = execution_;
    return current;
  }

  const SlurmOptions& options_;
  SlurmCommands& slurm_;
  const std::string root_;
  const core::OutputTarget& output_;
  Job& job_;
  const JobSnapshot& s_;
  JobRecorder& recorder_;
  const bool gathered_;
  const WorkFolder pieces_;
  std::vector<std::string> phases_;
  Execution execution_;
};

}  // namespace

RunOutcome SlurmExecutor::Run(Job& job, const JobSnapshot& s, JobRecorder& recorder) {
  RunOutcome outcome;
  absl::StatusOr<core::OutputTarget> output = resolver_.Output(*s.spec.output_path);
  if (!output.ok()) {
    outcome.status = output.status();
    return outcome;
  }
  ShardedJob sharded(options_, *commands_, resolver_.root(), *output, job, s, recorder);
  std::optional<absl::Status> ended = sharded.Run();
  outcome.detached = !ended.has_value();
  if (ended) outcome.status = *ended;
  return outcome;
}

}  // namespace stackproc::server
