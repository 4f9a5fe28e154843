#include "server/executors/slurm_shard_run.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/process/worker_protocol.h"

namespace stackproc::server {
namespace {

// After scancel, how long the tasks get to stop (they remove their temporary files on SIGTERM).
constexpr absl::Duration kCancelWait = absl::Seconds(60);

}  // namespace

ShardRun::ShardRun(SlurmCommands& slurm, WorkFolder work, const JobSnapshot& s, Execution execution)
    : slurm_(slurm),
      work_(std::move(work)),
      name_(absl::StrCat("stackproc-", s.id, "-", work_.phase)),
      legacy_name_(absl::StrCat("stackproc-", s.id)),
      execution_(std::move(execution)) {
  const int n = execution_.shards;
  // A store's shards start on its files; statistics' ranges on any slice (as stats cuts them).
  const int64_t align = work_.stats() ? 1 : execution_.align;
  for (int i = 0; i < n; ++i) ranges_.push_back(*core::ShardRange(s.input_shape.depth, n, i, align));
  attempts_ = AttemptsFromLogs(work_, n);
}

bool ShardRun::untouched() const {
  return !named_ && std::all_of(attempts_.begin(), attempts_.end(),
                                [](int attempts) { return attempts == 0; });
}

void ShardRun::Follow(const std::vector<std::string>& recorded) {
  for (const std::string& id : recorded) Record(id);
}

absl::Status ShardRun::Adopt() {
  for (const std::string& name : {name_, legacy_name_}) {
    STACKPROC_ASSIGN_OR_RETURN(std::vector<std::string> named, slurm_.ArraysNamed(name));
    for (const std::string& id : named) Record(id);
    named_ = named_ || !named.empty();
  }
  return absl::OkStatus();
}

void ShardRun::Record(const std::string& id) {
  if (std::find(arrays_.begin(), arrays_.end(), id) == arrays_.end()) arrays_.push_back(id);
  std::vector<std::string>& all = execution_.slurm_job_ids;
  if (std::find(all.begin(), all.end(), id) == all.end()) all.push_back(id);
}

absl::Status ShardRun::Prepare(const core::OutputTarget& output, const std::string& script) {
  if (::mkdirat(output.dir(), work_.name.c_str(), 0777) != 0 && errno != EEXIST) {
    return absl::Status(
        absl::ErrnoToStatusCode(errno),
        absl::StrCat(output.display(), ": cannot make the shards' folder beside it (",
                     std::strerror(errno), ")"));
  }
  std::ofstream file(work_.Script(), std::ios::trunc);
  file << script;
  if (!file.flush()) return absl::InternalError(absl::StrCat("cannot write ", work_.Script()));
  ::chmod(work_.Script().c_str(), 0755);
  return absl::OkStatus();
}

absl::Status ShardRun::Submit(int first, int last) {
  const std::string indices =
      first == last ? std::to_string(first) : absl::StrCat(first, "-", last);
  STACKPROC_ASSIGN_OR_RETURN(std::string id,
                             slurm_.Submit(work_.Script(), indices, name_, work_.Log("%a", "%A")));
  Record(id);
  for (int i = first; i <= last; ++i) {
    ++attempts_[i];
    array_of_[i] = id;
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ShardRun::Poll(int retries) {
  // A refused sbatch may have submitted all the same (it timed out, or printed no id).
  if (std::exchange(look_up_, false)) STACKPROC_RETURN_IF_ERROR(Adopt());
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

void ShardRun::CancelAndSweep(const core::OutputTarget& output) {
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

absl::Status ShardRun::Retry(int i, const TaskInfo& info, int retries) {
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
  absl::Status submitted = Submit(i, i);
  if (absl::IsUnavailable(submitted)) {  // a submit limit: the next poll tries again
    --execution_.shards_failed;          // counted once, when it is submitted
    refused_ = std::string(submitted.message());
    look_up_ = true;
    return absl::OkStatus();
  }
  if (submitted.ok()) retried_.push_back(failure);
  return submitted;
}

std::string ShardRun::LastArrayOf(int i) const {
  if (auto it = array_of_.find(i); it != array_of_.end()) return it->second;
  for (auto id = arrays_.rbegin(); id != arrays_.rend(); ++id) {
    if (::access(work_.Log(i, *id).c_str(), F_OK) == 0) return *id;
  }
  return arrays_.empty() ? "" : arrays_.front();
}

}  // namespace stackproc::server
