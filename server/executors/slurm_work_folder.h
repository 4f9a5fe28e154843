// A job's work folder on the cluster's shared filesystem (core/process/worker_protocol.h names
// its files): where it is, the script every task of a phase runs, and what the server reads
// from the tasks' logs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/process/worker_protocol.h"
#include "server/jobs/job.h"

namespace stackproc::server {

// `text` in single quotes for sh.
std::string ShellQuote(absl::string_view text);

using core::worker::WorkFolder;

// The work folder of job `s`'s `phase`: ".NAME.tmp-JOB-slurm" beside its output, under `root`
// (the data root as the compute nodes see it).
WorkFolder WorkFolderOf(const std::string& root, const JobSnapshot& s, const std::string& phase,
                        bool gathered);

// What every task of a phase runs: its range (SLURM_ARRAY_TASK_ID) of the job, with its CPUs,
// in `root` (the data root, where the files its steps name are: flatfield:flat=).
std::string TaskScript(const std::string& worker, const std::string& root, const std::string& input,
                       const WorkFolder& w, const JobSnapshot& s);

// The last `count` lines of a log, " | " between them.
std::string LogTail(const std::string& log, size_t count = 5);
// The node a task ran on, from its log's first line ("... on NODE").
std::string NodeOf(const std::string& log);
// Attempts made per shard, counted from their logs (SLURM makes a task's log when it starts).
std::vector<int> AttemptsFromLogs(const WorkFolder& w, int shards);

}  // namespace stackproc::server
