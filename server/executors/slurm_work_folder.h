// A job's work folder on the cluster's shared filesystem and what its SLURM tasks write in it:
// the script every task of a phase runs, each shard's piece, progress line and logs (one per
// attempt). Written by the tasks (stackproc-local), read by the server (job_slurm.cc).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "server/jobs/job.h"

namespace stackproc::server {

// `text` in single quotes for sh.
std::string ShellQuote(absl::string_view text);

// A job's work folder, as one phase of it sees it: "stats" (a whole-stack step's statistics,
// gathered range by range) or "shard" (the pieces of the output).
struct WorkFolder {
  std::string name;             // in the output's directory
  std::string path;             // absolute, as the compute nodes see it too
  std::string phase = "shard";  // "stats" or "shard": its files' prefix
  bool gathered = false;        // the job has a "stats" phase, whose sum "shard" tasks take

  std::string Script() const { return absl::StrCat(path, "/", phase, ".sh"); }
  std::string Piece(int i) const {
    return absl::StrCat(path, "/", phase, "-", i, phase == "stats" ? ".stats" : ".tif");
  }
  std::string Progress(int i) const { return absl::StrCat(path, "/", phase, "-", i, ".progress"); }
  std::string Log(int i, absl::string_view array) const {
    return absl::StrCat(path, "/", phase, "-", i, ".", array, ".log");
  }
  // The statistics of every range summed: what the "shard" phase's tasks take.
  std::string StackStats() const { return path + "/stack.stats"; }
};

// The work folder of job `s`'s `phase`: ".NAME.tmp-JOB-slurm" beside its output, under `root`
// (the data root as the compute nodes see it).
WorkFolder WorkFolderOf(const std::string& root, const JobSnapshot& s, const std::string& phase,
                        bool gathered);

// What every task of a phase runs: its range (SLURM_ARRAY_TASK_ID) of the job, with its CPUs.
std::string TaskScript(const std::string& worker, const std::string& input, const WorkFolder& w,
                       const JobSnapshot& s);

// Slices done by a running shard, from its progress file (0 before it writes one).
int64_t SlicesDone(const std::string& progress_file);
// The last `count` lines of a log, " | " between them.
std::string LogTail(const std::string& log, size_t count = 5);
// The node a task ran on, from its log's first line ("... on NODE").
std::string NodeOf(const std::string& log);
// Attempts made per shard, counted from their logs (SLURM makes a task's log when it starts).
std::vector<int> AttemptsFromLogs(const WorkFolder& w, int shards);

}  // namespace stackproc::server
