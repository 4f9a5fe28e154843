#include "server/executors/slurm.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/executors/command.h"

namespace stackproc::server {

TaskState TaskStateOf(const std::string& s) {
  if (s == "PENDING" || s == "REQUEUED" || s == "REQUEUE_HOLD" || s == "REQUEUE_FED" ||
      s == "CONFIGURING" || s == "RESV_DEL_HOLD" || s == "SPECIAL_EXIT") {
    return TaskState::kPending;
  }
  if (s == "RUNNING" || s == "COMPLETING" || s == "SUSPENDED" || s == "STOPPED" ||
      s == "SIGNALING" || s == "STAGE_OUT" || s == "RESIZING") {
    return TaskState::kRunning;
  }
  return TaskState::kEnded;
}

bool SubmitMayPass(absl::string_view message) {
  // Limits on jobs queued ("QOSMaxSubmitJobPerUserLimit", "AssocMaxSubmitJobLimit", "Job
  // violates accounting/QOS policy (job submit limit, ...)": SLURM says the same of a size or
  // time policy, which then waits until cancelled), and a controller busy or out of reach.
  const std::string lower = absl::AsciiStrToLower(message);
  for (absl::string_view passing : {"maxsubmitjob", "submit limit", "temporarily", "timed out",
                                    "unable to contact", "connect failure", "try again", "busy"}) {
    if (absl::StrContains(lower, passing)) return true;
  }
  return false;
}

absl::StatusOr<std::string> Slurm::Submit(const std::string& script, const std::string& indices,
                                          const std::string& name, const std::string& log) {
  const SlurmOptions& o = options_;
  std::string array = absl::StrCat("--array=", indices);
  if (o.max_parallel > 0 && absl::StrContains(indices, '-')) {
    absl::StrAppend(&array, "%", o.max_parallel);
  }
  std::vector<std::string> argv = {
      "sbatch", "--parsable", array, "--job-name=" + name, "--output=" + log, "--open-mode=append"};
  if (!o.partition.empty()) argv.push_back("--partition=" + o.partition);
  if (!o.account.empty()) argv.push_back("--account=" + o.account);
  if (o.cpus_per_shard > 0) argv.push_back(absl::StrCat("--cpus-per-task=", o.cpus_per_shard));
  if (!o.mem_per_shard.empty()) argv.push_back("--mem=" + o.mem_per_shard);
  argv.insert(argv.end(), o.extra.begin(), o.extra.end());
  argv.push_back(script);
  absl::StatusOr<CommandResult> run = RunCommand(argv);
  if (!run.ok()) {  // not there (for good), or it hung (and may have submitted all the same)
    return absl::Status(absl::IsFailedPrecondition(run.status())
                            ? absl::StatusCode::kFailedPrecondition
                            : absl::StatusCode::kUnavailable,
                        absl::StrCat("sbatch: ", run.status().message()));
  }
  if (run->exit_code != 0) {
    const std::string failure = CommandFailure(argv, *run);
    const std::string message = absl::StrCat("sbatch refused the shards: ", failure);
    return SubmitMayPass(failure) ? absl::UnavailableError(message)
                                  : absl::FailedPreconditionError(message);
  }
  // "12345" or, on a federation, "12345;cluster".
  std::string id(absl::StripAsciiWhitespace(run->output));
  id = id.substr(0, id.find(';'));
  uint64_t number = 0;
  if (!absl::SimpleAtoi(id, &number)) {
    return absl::UnavailableError(
        absl::StrCat("sbatch printed no job id: \"", absl::CEscape(run->output), "\""));
  }
  return id;
}

absl::StatusOr<std::map<int, TaskInfo>> Slurm::Tasks(const std::vector<std::string>& job_ids) {
  std::map<int, TaskInfo> tasks;
  if (job_ids.empty()) return tasks;
  // One line per task (--array), ended ones too while the controller keeps them (--states=all):
  // "12345|3|RUNNING|node7". A task resubmitted alone is the only task of its own array; the
  // later array of an index wins.
  const std::vector<std::string> argv = {
      "squeue",       "--noheader",           "--array",
      "--states=all", "--format=%F|%K|%T|%N", "--jobs=" + absl::StrJoin(job_ids, ",")};
  absl::StatusOr<CommandResult> run = RunCommand(argv);
  if (!run.ok()) return absl::UnavailableError(absl::StrCat("squeue: ", run.status().message()));
  if (run->exit_code != 0) {
    // Every array long gone from the controller's memory: no task is listed.
    if (absl::StrContains(run->errors, "Invalid job id")) return tasks;
    return absl::UnavailableError(absl::StrCat("squeue failed: ", CommandFailure(argv, *run)));
  }
  std::map<int, size_t> array_of;  // index -> position of its array in job_ids
  for (absl::string_view line : absl::StrSplit(run->output, '\n', absl::SkipWhitespace())) {
    std::vector<std::string> fields = absl::StrSplit(absl::StripAsciiWhitespace(line), '|');
    int index = 0;
    if (fields.size() != 4 || !absl::SimpleAtoi(fields[1], &index)) continue;
    const size_t array = std::find(job_ids.begin(), job_ids.end(), fields[0]) - job_ids.begin();
    if (auto seen = array_of.find(index); seen != array_of.end() && seen->second > array) continue;
    array_of[index] = array;
    const std::string node = fields[3] == "(null)" ? "" : fields[3];
    tasks[index] = {TaskStateOf(fields[2]), fields[2], node};
  }
  return tasks;
}

absl::StatusOr<std::vector<std::string>> Slurm::ArraysNamed(const std::string& name) {
  // One line per array (no --array): "12345", pending or running, this user's.
  const std::vector<std::string> argv = {"squeue",       "--noheader",  "--me",
                                         "--states=all", "--format=%F", "--name=" + name};
  absl::StatusOr<CommandResult> run = RunCommand(argv);
  if (!run.ok()) return absl::UnavailableError(absl::StrCat("squeue: ", run.status().message()));
  if (run->exit_code != 0) {
    return absl::UnavailableError(absl::StrCat("squeue failed: ", CommandFailure(argv, *run)));
  }
  std::vector<std::pair<uint64_t, std::string>> arrays;
  for (absl::string_view line : absl::StrSplit(run->output, '\n', absl::SkipWhitespace())) {
    const std::string id(absl::StripAsciiWhitespace(line));
    uint64_t number = 0;
    if (absl::SimpleAtoi(id, &number)) arrays.emplace_back(number, id);
  }
  std::sort(arrays.begin(), arrays.end());  // job ids grow: oldest first
  arrays.erase(std::unique(arrays.begin(), arrays.end()), arrays.end());
  std::vector<std::string> ids;
  for (auto& [number, id] : arrays) ids.push_back(std::move(id));
  return ids;
}

absl::Status Slurm::Cancel(const std::vector<std::string>& job_ids) {
  if (job_ids.empty()) return absl::OkStatus();
  std::vector<std::string> argv = {"scancel"};
  argv.insert(argv.end(), job_ids.begin(), job_ids.end());
  absl::StatusOr<CommandResult> run = RunCommand(argv);
  if (!run.ok()) return absl::UnavailableError(absl::StrCat("scancel: ", run.status().message()));
  if (run->exit_code != 0) {
    return absl::UnavailableError(absl::StrCat("scancel failed: ", CommandFailure(argv, *run)));
  }
  return absl::OkStatus();
}

}  // namespace stackproc::server
