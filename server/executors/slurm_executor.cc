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
#include "core/io/zarr_sink.h"
#include "core/pipeline/pipeline.h"
#include "core/process/shards.h"
#include "server/executors/local_executor.h"
#include "server/executors/slurm_shard_run.h"
#include "server/executors/slurm_work_folder.h"
#include "server/jobs/job_manager_util.h"

namespace stackproc::server {
namespace {

// Seconds one core takes to read and process one slice of the job: the slices in its middle
// timed (as many as its z-neighbourhoods reach, which it reads around them), per slice; 0 when
// that fails (the job's own run will say why), or cannot be timed (3-D steps beside a
// whole-stack step: a z-range of it runs only with the step's statistics).
// Whether the job's pipeline has a whole-stack step, whose statistics its first phase gathers.
// (A pipeline that cannot be made now, a flat file gone since the job was planned, is the
// tasks' to report.)
bool GathersStats(const std::vector<core::OpSpec>& ops, const PathResolver& resolver) {
  absl::StatusOr<core::Pipeline> pipeline =
      core::Pipeline::Create(ops, core::OperationRegistry::Builtin(), core::ImagesIn(resolver));
  return pipeline.ok() && pipeline->NeedsWholeStack();
}

double SliceSeconds(core::ProcessPlan& plan) {
  const int64_t depth = plan.input.shape.depth;
  if (!plan.pipeline.Bind(plan.input).ok()) return 0;
  const int64_t halo = plan.pipeline.HaloOf(0, plan.pipeline.size());
  if (halo > 0 && plan.pipeline.NeedsWholeStack()) return 0;
  const int64_t count = std::min(depth, 2 * halo + 1);
  const int64_t middle = (depth - count) / 2;
  absl::StatusOr<std::unique_ptr<core::ZRangeSource>> one =
      core::ZRangeSource::Create(plan.source, {middle, middle + count}, &plan.pipeline);
  if (!one.ok()) return 0;
  core::StackSink sink;
  tbb::task_arena arena(1);
  core::RunOptions run;
  run.arena = &arena;
  const absl::Time start = absl::Now();
  if (!core::Run(**one, plan.pipeline, sink, run).ok()) return 0;
  return absl::ToDoubleSeconds(absl::Now() - start) / static_cast<double>(count);
}

// Why `job` (planned as `plan`) must run on the server whatever it asked for; empty when it can
// be cut.
std::string WhyNotCut(const JobSnapshot& job, const core::ProcessPlan& plan) {
  if (!job.spec.output_path) return "its result is kept in memory";
  if (core::ParseOutputName(*job.spec.output_path)->format == core::Format::kPlanes) {
    return "only TIFF outputs (put together from shards) and OME-Zarr stores (filled by them) "
           "are cut";
  }
  if (!plan.pipeline.NeedsWholeStack()) return "";
  // Its statistics gathered range by range first, when they add up (integer pixels, one step).
  return std::string(core::StatsStep(plan.pipeline, plan.formats).status().message());
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
  if (const std::string why = WhyNotCut(job, plan); !why.empty()) {
    if (spec.shards <= 1) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("shards: ", why, "; submit it with shards 0 or 1 to run it on the server"));
  }
  // A store's shards fill whole files of it: ranges of `align` slices.
  int64_t align = 1;
  if (core::ParseOutputName(*spec.output_path)->format == core::Format::kOmeZarr) {
    STACKPROC_ASSIGN_OR_RETURN(core::StackInfo out, core::OutputInfoOf(plan.input, plan.pipeline));
    STACKPROC_ASSIGN_OR_RETURN(align, core::ZarrSink::RangeAlignment(WriteOptionsOf(spec), out));
    const int64_t pieces = (depth + align - 1) / align;
    if (spec.shards == 0) shards = std::min(shards, pieces);
    if (shards <= 1) return absl::OkStatus();
    if (shards > pieces) {
      return absl::InvalidArgumentError(
          absl::StrCat("shards: ", shards, " shards of a store whose files hold ", align,
                       " slices each (of every pyramid level): at most ", pieces,
                       " (--zarr-shards with fewer slices allows more)"));
    }
  }
  if (shards > depth || shards > kMaxShards) {
    return absl::InvalidArgumentError(absl::StrCat("shards: ", shards, " shards for a stack of ",
                                                   depth, " slices; at most one per slice and ",
                                                   kMaxShards, " in all"));
  }
  job.execution.executor = Executor::kSlurm;
  job.execution.shards = static_cast<int>(shards);
  job.execution.shards_pending = job.execution.shards;
  job.execution.align = align;
  job.memory_bytes = 0;  // the cluster's; the assembly copies strips through a small buffer
  job.mode = core::ProcessMode::kStreaming;
  return absl::OkStatus();
}

namespace {

// A job's run on the cluster: its phases, one after the other, then the assembly. Each step
// returns nullopt when the server stops meanwhile (the job detaches, as the job table says).
class ShardedJob {
 public:
  ShardedJob(const SlurmOptions& options, SlurmCommands& slurm, const PathResolver& resolver,
             const core::OutputTarget& output, Job& job, const JobSnapshot& s,
             JobRecorder& recorder)
      : options_(options),
        slurm_(slurm),
        resolver_(resolver),
        root_(resolver.root()),
        output_(output),
        job_(job),
        s_(s),
        recorder_(recorder),
        gathered_(GathersStats(s.spec.ops, resolver)),
        pieces_(WorkFolderOf(root_, s, std::string(core::worker::kShardPhase), gathered_)),
        execution_(s.execution) {
    if (gathered_) phases_.emplace_back(core::worker::kStatsPhase);
    phases_.emplace_back(core::worker::kShardPhase);
  }

  std::optional<absl::Status> Run() {
    // Stopped while it put the filled store in place: that, and nothing else, is left to do.
    if (pieces_.fills_store() && ::access(pieces_.Committed().c_str(), F_OK) == 0) {
      return CommitStore();
    }
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
          run.Prepare(output_, TaskScript(options_.worker, root_, input, work, Current())));
    }
    if (work.fills_store()) STACKPROC_RETURN_IF_ERROR(MakeStore(work));
    if (!fresh) {
      // The arrays the job table recorded, and those the controller lists under the phase's
      // name: its answer is needed, or what runs would be submitted twice.
      run.Follow(s_.execution.slurm_job_ids);
      absl::Status adopted;
      bool said = false;
      while (absl::IsUnavailable(adopted = run.Adopt())) {
        if (!std::exchange(said, true)) {
          recorder_.Log(job_.Snapshot(), "slurm_unreachable", " error=" + Quote(adopted.message()));
          job_.SetStage(absl::StrCat("re-attaching: ", adopted.message()));
        }
        if (!Wait(job_, options_.poll)) return absl::CancelledError("cancelled");
      }
      if (!adopted.ok()) return adopted;
    }
    if (fresh || run.untouched()) {
      STACKPROC_RETURN_IF_ERROR(SubmitWaiting(run));
      job_.SetStage("cluster");
    }
    job_.SetExecution(run.execution());
    recorder_.Save(job_);
    recorder_.Log(
        job_.Snapshot(), fresh ? "shards_submitted" : "shards_reattached",
        absl::StrCat(" phase=", work.phase, " slurm_jobs=", absl::StrJoin(run.arrays(), ","),
                     " shards=", s_.execution.shards, " work=", Quote(work.path)));
    return std::nullopt;
  }

  // Submits every shard of the phase as one array; a refusal that may pass (a submit limit) is
  // tried again after a growing wait, the job's stage saying why. An sbatch that failed after
  // all may have submitted the array (it timed out, or printed no id): the phase's name is looked
  // up before each new try.
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
      wait = std::min(wait * 2, options_.poll * 16);
      if (run.Adopt().ok() && run.named()) return absl::OkStatus();
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
      for (const std::string& retried : run.TakeRetried()) {
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

  // The store the shard tasks fill, in the work folder: its metadata (what made it, as a local
  // run of the job records it), no chunks. Made once: a server that re-attaches finds it.
  absl::Status MakeStore(const WorkFolder& work) const {
    core::UniqueFd dir(::open(work.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) return absl::InternalError(absl::StrCat(work.path, ": ", std::strerror(errno)));
    core::OutputTarget store = core::OutputTarget::In(std::move(dir), work.store, work.Store());
    if (store.Exists()) return absl::OkStatus();
    STACKPROC_ASSIGN_OR_RETURN(core::ProcessRequest request,
                               PathRequest(s_.spec, resolver_, {}, 0));
    request.output_target = std::move(store);
    request.executor = absl::StrCat("stackprocd job ", s_.id, " on SLURM");
    request.started = s_.create_time;
    request.write.temp_tag = s_.id;
    return core::CreateOutputStore(request);
  }

  // The filled store, renamed into place (over an existing store only with overwrite); the
  // work folder goes either way, as a TIFF job's pieces do. The mark made first names the
  // store: a server that stops meanwhile finishes the rename (the store is still in the work
  // folder), or only sweeps (it is in place), and never makes the store again.
  absl::Status CommitStore() {
    job_.SetStage("committing");
    absl::Status status = MoveStore();
    SweepWork();
    return status;
  }

  absl::Status MoveStore() {
    core::UniqueFd dir(::open(pieces_.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) return absl::InternalError(absl::StrCat(pieces_.path, ": ", std::strerror(errno)));
    const auto identity = [](int at, const std::string& name) -> std::string {
      struct stat st;
      if (::fstatat(at, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return "";
      return absl::StrCat(st.st_dev, ":", st.st_ino);
    };
    const char* mark = WorkFolder::kCommitted;
    if (::faccessat(dir.get(), mark, F_OK, AT_SYMLINK_NOFOLLOW) != 0) {
      const std::string store = identity(dir.get(), pieces_.store);
      if (store.empty()) return absl::InternalError(absl::StrCat(pieces_.Store(), ": gone"));
      STACKPROC_RETURN_IF_ERROR(
          core::WriteFileAt(dir.get(), mark, store.data(), store.size(), pieces_.Committed()));
      ::fsync(dir.get());
    }
    std::ifstream in(pieces_.Committed());
    std::string marked;
    std::getline(in, marked);
    if (!marked.empty() && identity(output_.dir(), output_.name()) == marked) {
      return absl::OkStatus();  // in place before the server stopped
    }
    if (marked.empty() || identity(dir.get(), pieces_.store) != marked) {
      return absl::DataLossError(absl::StrCat(
          output_.display(), ": its filled store is neither in place nor in ", pieces_.path));
    }
    const bool replace = s_.spec.overwrite && output_.Exists();
    if (replace) {
      STACKPROC_RETURN_IF_ERROR(core::CheckReplaceable(core::Format::kOmeZarr, output_));
    }
    return core::MoveIntoPlace(dir.get(), pieces_.store, output_, replace, /*sync=*/true);
  }

  // Removes the work folder, its commit mark last: a server stopped meanwhile finds the mark
  // and sweeps again, rather than running the job anew into an empty store.
  void SweepWork() {
    core::UniqueFd dir(::open(pieces_.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir) {
      for (const std::string& name :
           core::ListDirectory(dir.get()).value_or(std::vector<std::string>{})) {
        if (name != WorkFolder::kCommitted) core::RemoveEntry(dir.get(), name);
      }
      ::unlinkat(dir.get(), WorkFolder::kCommitted, 0);
    }
    core::RemoveEntry(output_.dir(), pieces_.name);
  }

  std::optional<absl::Status> Assemble() {
    if (pieces_.fills_store()) return CommitStore();
    job_.SetStage("assembling");
    std::vector<std::string> shards;
    for (int i = 0; i < s_.execution.shards; ++i) shards.push_back(pieces_.Piece(i));
    core::WriteOptions write;
    write.overwrite = s_.spec.overwrite;
    write.cancel = &job_.cancel_token();
    write.temp_tag = s_.id;
    absl::Status assembled = core::AssembleTiff(core::LocalFiles(), shards, output_, write);
    // Interrupted before the output was whole: the next start assembles the pieces again.
    if (job_.interrupted() && !assembled.ok()) return std::nullopt;
    core::RemoveEntry(output_.dir(), pieces_.name);
    return assembled;
  }

  // How a phase that did not finish ends: detached when the server stops (the cluster goes
  // on), else its tasks cancelled and its work folder swept.
  std::optional<absl::Status> Ended(ShardRun& run, const absl::Status& status) {
    if (job_.interrupted()) return std::nullopt;
    run.CancelAndSweep(output_);
    if (absl::IsCancelled(status)) {
      const std::vector<std::string>& ids = run.execution().slurm_job_ids;
      return absl::CancelledError(
          ids.empty() ? "cancelled before its shards were submitted"
                      : absl::StrCat("cancelled: its shards were cancelled on the cluster (SLURM "
                                     "jobs ",
                                     absl::StrJoin(ids, ","), ")"));
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
  const PathResolver& resolver_;
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
  ShardedJob sharded(options_, *commands_, resolver_, *output, job, s, recorder);
  std::optional<absl::Status> ended = sharded.Run();
  outcome.detached = !ended.has_value();
  if (ended) outcome.status = *ended;
  return outcome;
}

}  // namespace stackproc::server
