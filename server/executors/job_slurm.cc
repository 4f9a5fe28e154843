// JobManager on a cluster (--executor slurm): a path job cut in z-ranges, each a task of one
// SLURM job array that runs stackproc-local on a compute node over the shared filesystem,
// watched through the files the tasks write beside the output, and put together when all are
// done (core::AssembleTiff: the shards' strips copied as they are).
//
// The job's work folder, ".NAME.tmp-JOB-slurm" beside the output (a temporary name, so what a
// server that cannot re-attach leaves is swept like any writer's), holds
//   run.sh               what every task runs
//   shard-I.tif          shard I's TIFF, renamed into place by its task when complete: done
//   shard-I.progress     its progress line, replaced as it goes
//   shard-I.ARRAY.log    its output, one log per attempt (ARRAY: the SLURM job id)
#include <fcntl.h>
#include <sys/stat.h>
#include <tbb/task_arena.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "core/base/status_macros.h"
#include "core/io/formats.h"
#include "core/process/shards.h"
#include "core/io/stack_io.h"
#include "core/pipeline/pipeline.h"
#include "server/jobs/job_manager.h"
#include "server/jobs/job_manager_util.h"
#include "server/executors/slurm_work_folder.h"

namespace stackproc::server {
namespace {

// SLURM's default MaxArraySize is 1001: task indices 0-1000.
constexpr int kMaxShards = 1000;
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

}  // namespace

absl::Status JobManager::PlanExecution(JobSnapshot& job, core::ProcessPlan& plan) const {
  const JobSpec& spec = job.spec;
  job.execution = {};
  if (options_.executor == Executor::kLocal) {
    if (spec.shards > 1) {
      return absl::FailedPreconditionError(
          "shards: this server runs jobs on its own threads (--executor local); a job cut in "
          "shards needs a server started with --executor slurm");
    }
    return absl::OkStatus();
  }
  const int64_t depth = job.input_shape.depth;
  int64_t shards = spec.shards;
  if (shards == 0) {
    // One per shard_bytes of input, or more when the pipeline's cost (one slice, timed) would
    // keep a shard busier than shard_seconds on its CPUs: a small, cheap job runs here.
    const SlurmOptions& o = options_.slurm;
    const int64_t by_size =
        static_cast<int64_t>(job.progress.bytes_total / std::max<uint64_t>(o.shard_bytes, 1));
    const double seconds = SliceSeconds(plan) * static_cast<double>(depth) /
                           std::max(o.cpus_per_shard, 1) /
                           std::max(absl::ToDoubleSeconds(o.shard_seconds), 1e-3);
    shards = std::min<int64_t>(
        {depth, kMaxShards, std::max(by_size, static_cast<int64_t>(std::ceil(seconds)))});
  }
  if (shards <= 1) return absl::OkStatus();
  // Why this job runs here whatever it asked for; empty: it can be cut.
  std::string why;
  STACKPROC_ASSIGN_OR_RETURN(core::Pipeline pipeline, core::Pipeline::Create(spec.ops));
  if (!spec.output_path) {
    why = "its result is kept in memory";
  } else if (core::ParseOutputName(*spec.output_path)->format != core::Format::kTiff) {
    why = "only TIFF outputs are put together from shards";
  } else if (pipeline.NeedsWholeStack()) {
    // Its statistics gathered range by range first, when they add up (integer pixels, one step).
    const core::SliceFormat input{static_cast<int>(job.input_shape.height),
                                  static_cast<int>(job.input_shape.width), job.input_type};
    absl::StatusOr<std::vector<core::SliceFormat>> formats = pipeline.Plan(input);
    absl::Status cut =
        formats.ok() ? core::StatsStep(pipeline, *formats).status() : formats.status();
    if (!cut.ok()) why = std::string(cut.message());
  }
  if (!why.empty()) {
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

// One job's shards on the cluster: what was submitted, what each shard has come to.
class ShardRun {
 public:
  ShardRun(const SlurmOptions& options, WorkFolder work, const JobSnapshot& s)
      : slurm_(options), work_(std::move(work)), job_id_(s.id), execution_(s.execution) {
    const int n = execution_.shards;
    for (int i = 0; i < n; ++i) {
      ranges_.push_back(*core::ShardRange(s.input_shape.depth, n, i));
    }
    attempts_ = AttemptsFromLogs(work_, n);
  }
  const Execution& execution() const { return execution_; }
  const WorkFolder& work() const { return work_; }

  // Makes the work folder and its script, and submits the array.
  absl::Status Submit(const core::OutputTarget& output, const std::string& input,
                      const JobSnapshot& s) {
    if (::mkdirat(output.dir(), work_.name.c_str(), 0777) != 0 && errno != EEXIST) {
      return absl::PermissionDeniedError(
          absl::StrCat(output.display(), ": cannot make the shards' folder beside it (",
                       std::strerror(errno), ")"));
    }
    {
      std::ofstream script(work_.Script(), std::ios::trunc);
      script << TaskScript(slurm_.options().worker, input, work_, s);
      if (!script.flush()) {
        return absl::InternalError(absl::StrCat("cannot write ", work_.Script()));
      }
    }
    ::chmod(work_.Script().c_str(), 0755);
    return SubmitTasks(0, execution_.shards - 1);
  }

  // One look at the cluster and at the work folder: the shards' counts and slices done. A shard
  // that ended without its TIFF is submitted again, alone, while it has attempts left; then the
  // job fails, naming the shard, its slices, its node and the tail of its log.
  absl::StatusOr<int64_t> Poll(int retries) {
    STACKPROC_ASSIGN_OR_RETURN(auto tasks, slurm_.Tasks(execution_.slurm_job_ids));
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
        slices += std::min(SlicesDone(work_.Progress(i)), ranges_[i].size());
      } else {
        ++e.shards_failed;
        const TaskInfo info = task == tasks.end() ? TaskInfo{} : task->second;
        const std::string log = work_.Log(i, LastArrayOf(i));
        const std::string node = !info.node.empty() ? info.node : NodeOf(log);
        const std::string failure = absl::StrCat(
            work_.phase == "stats" ? "the statistics of shard " : "shard ", i, " of ", e.shards,
            " (slices ", ranges_[i].begin, "-", ranges_[i].end - 1, ") failed on ",
            node.empty() ? "an unknown node" : node,
            info.slurm_state.empty() ? "" : " (" + info.slurm_state + ")", ": ", LogTail(log));
        if (attempts_[i] > retries) {
          return absl::UnknownError(absl::StrCat(failure, "; ", attempts_[i], " attempts"));
        }
        last_failure_ = failure;
        STACKPROC_RETURN_IF_ERROR(SubmitTasks(i, i));
        ++e.shards_pending;
      }
    }
    return slices;
  }

  // What Poll last retried, for the log; cleared as it is read.
  std::string TakeRetried() { return std::exchange(last_failure_, ""); }

  // Cancels the tasks, gives them kCancelWait to stop, and removes the work folder.
  void CancelAndSweep(const core::OutputTarget& output) {
    (void)slurm_.Cancel(execution_.slurm_job_ids);  // best effort: the sweep follows anyway
    const absl::Time give_up = absl::Now() + kCancelWait;
    while (absl::Now() < give_up) {
      absl::StatusOr<std::map<int, TaskInfo>> tasks = slurm_.Tasks(execution_.slurm_job_ids);
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
  // Submits shards first..last as one array.
  absl::Status SubmitTasks(int first, int last) {
    const std::string indices =
        first == last ? std::to_string(first) : absl::StrCat(first, "-", last);
    STACKPROC_ASSIGN_OR_RETURN(
        std::string id, slurm_.Submit(work_.Script(), indices, "stackproc-" + job_id_,
                                      absl::StrCat(work_.path, "/", work_.phase, "-%a.%A.log")));
    execution_.slurm_job_ids.push_back(id);
    for (int i = first; i <= last; ++i) {
      ++attempts_[i];
      array_of_[i] = id;
    }
    return absl::OkStatus();
  }
  // The job id of shard i's latest attempt (the first array's when none since, or unknown).
  std::string LastArrayOf(int i) const {
    auto it = array_of_.find(i);
    if (it != array_of_.end()) return it->second;
    // Re-attached: the last array whose log the shard has.
    for (auto id = execution_.slurm_job_ids.rbegin(); id != execution_.slurm_job_ids.rend(); ++id) {
      if (::access(work_.Log(i, *id).c_str(), F_OK) == 0) return *id;
    }
    return execution_.slurm_job_ids.empty() ? "" : execution_.slurm_job_ids.front();
  }

  const Slurm slurm_;
  const WorkFolder work_;
  const std::string job_id_;
  Execution execution_;
  std::vector<core::ZRange> ranges_;
  std::vector<int> attempts_;            // per shard
  std::map<int, std::string> array_of_;  // shard -> the array of its latest attempt (this run)
  std::string last_failure_;
};

}  // namespace

std::optional<absl::Status> JobManager::RunSlurm(Job& job, const JobSnapshot& s) {
  absl::StatusOr<core::OutputTarget> output = resolver_.Output(*s.spec.output_path);
  if (!output.ok()) return output.status();
  const std::string root = resolver_.root();
  const std::string input = absl::StrCat(root, "/", s.spec.input_path);
  // A whole-stack step first gathers its statistics range by range ("stats"), summed into one
  // file that every task of the pieces' phase ("shard") takes.
  const bool gathered = core::Pipeline::Create(s.spec.ops)->NeedsWholeStack();
  std::vector<std::string> phases = {"shard"};
  if (gathered) phases.insert(phases.begin(), "stats");
  const WorkFolder pieces = WorkFolderOf(root, s, "shard", gathered);
  const int64_t depth = s.input_shape.depth;
  const uint64_t slice_bytes = s.progress.bytes_total / std::max<int64_t>(depth, 1);
  const absl::Time started = job.Snapshot().start_time;
  Execution execution = s.execution;
  job.SetStage("cluster");

  for (size_t phase = 0; phase < phases.size(); ++phase) {
    const WorkFolder work = WorkFolderOf(root, s, phases[phase], gathered);
    if (phases[phase] == "stats" && ::access(pieces.StackStats().c_str(), F_OK) == 0) continue;
    JobSnapshot current = s;
    current.execution = execution;
    ShardRun run(options_.slurm, work, current);
    // Submitted unless its script is there (then it was, or the server stopped just before:
    // its tasks are found missing and submitted again one by one).
    const bool submit = ::access(work.Script().c_str(), F_OK) != 0;
    if (submit) {
      if (absl::Status submitted = run.Submit(*output, input, current); !submitted.ok()) {
        run.CancelAndSweep(*output);
        return submitted;
      }
      job.SetExecution(run.execution());
      Save(job);
    }
    LogEvent(job.Snapshot(), submit ? "shards_submitted" : "shards_reattached",
             absl::StrCat(" phase=", work.phase,
                          " slurm_jobs=", absl::StrJoin(run.execution().slurm_job_ids, ","),
                          " shards=", s.execution.shards, " work=", Quote(work.path)));
    bool unreachable = false;
    while (true) {
      // Wait out the poll interval, hearing a cancel at once.
      const absl::Time next = absl::Now() + options_.slurm.poll;
      while (absl::Now() < next && !job.cancel_token().IsCancelled()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      if (job.interrupted()) return std::nullopt;  // the server stops: the cluster goes on
      if (job.cancel_token().IsCancelled()) {
        run.CancelAndSweep(*output);
        return absl::CancelledError(
            absl::StrCat("cancelled: its shards were cancelled on the cluster (SLURM jobs ",
                         absl::StrJoin(run.execution().slurm_job_ids, ","), ")"));
      }
      absl::StatusOr<int64_t> slices = run.Poll(options_.slurm.retries);
      if (absl::IsUnavailable(slices.status())) {  // the controller did not answer: ask again
        if (!std::exchange(unreachable, true)) {
          LogEvent(job.Snapshot(), "slurm_unreachable",
                   " error=" + Quote(slices.status().message()));
        }
        continue;
      }
      unreachable = false;
      if (!slices.ok()) {  // its message names files as the caller does, beneath the data root
        run.CancelAndSweep(*output);
        return absl::Status(slices.status().code(),
                            absl::StrReplaceAll(slices.status().message(), {{root + "/", ""}}));
      }
      if (std::string retried = run.TakeRetried(); !retried.empty()) {
        LogEvent(job.Snapshot(), "shard_retried", " reason=" + Quote(retried));
      }
      // A whole-stack step adds a pass, as it does on the server.
      const int64_t done = static_cast<int64_t>(phase) * depth + *slices;
      core::Progress p;
      p.slices_total = static_cast<int64_t>(phases.size()) * depth;
      p.slices_done = done;
      p.bytes_total = s.progress.bytes_total;
      p.bytes_done = std::min<uint64_t>(done * slice_bytes, p.bytes_total);
      p.elapsed = absl::Now() - started;
      if (done > 0) p.eta = p.elapsed * (static_cast<double>(p.slices_total - done) / done);
      job.SetExecution(run.execution());
      job.SetProgress(p);
      Save(job);
      if (run.execution().shards_done == run.execution().shards) break;
    }
    execution = run.execution();
    if (work.phase == "stats") {
      std::vector<std::string> stats;
      for (int i = 0; i < s.execution.shards; ++i) stats.push_back(work.Piece(i));
      absl::StatusOr<std::vector<uint64_t>> sum = core::SumStatsFiles(stats);
      absl::Status written =
          sum.ok() ? core::WriteStatsFile(pieces.StackStats(), *sum) : sum.status();
      if (!written.ok()) {
        run.CancelAndSweep(*output);
        return written;
      }
    }
  }

  job.SetStage("assembling");
  std::vector<std::string> shards;
  for (int i = 0; i < s.execution.shards; ++i) shards.push_back(pieces.Piece(i));
  core::WriteOptions write;
  write.overwrite = s.spec.overwrite;
  write.cancel = &job.cancel_token();
  write.temp_tag = s.id;
  absl::Status assembled = core::AssembleTiff(core::LocalFiles(), shards, *output, write);
  if (job.interrupted()) return std::nullopt;  // the next start assembles them again
  core::RemoveEntry(output->dir(), pieces.name);
  return assembled;
}

}  // namespace stackproc::server
