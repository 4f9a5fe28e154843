// What a server and its workers agree on when a job runs as z-range shards elsewhere (the tasks
// of a SLURM job array running stackproc-local on compute nodes, over a shared filesystem): the
// job's work folder and the names of what the tasks write in it, the progress line, and the
// worker's command line. Both sides include this file; nothing else spells these names.
//
// The work folder, ".NAME.tmp-JOB-slurm" beside the output (a temporary name: what a server that
// cannot re-attach leaves is swept like any writer's), holds, per phase ("stats", then "shard"):
//   PHASE.sh                 what every task of the phase runs
//   PHASE-I.tif / .stats     task I's piece, renamed into place when complete: task I is done
//   NAME.zarr                a job to an OME-Zarr output: its store, made by the server before
//                            the "shard" tasks fill it (no pieces, no assembly: it is renamed
//                            into place), and
//   shard-I.done             made by task I once its slices are in the store
//   committed                made by the server before it renames the store into place, naming
//                            the store (its device and inode): a server that stops then finishes
//                            the rename, or only sweeps, and never remakes the store; swept last
//   PHASE-I.progress         its progress line, replaced as it goes (WriteProgressFile)
//   PHASE-I.ARRAY.log        its output, one log per attempt (ARRAY: the cluster's job id)
//   stack.stats              the "stats" phase's pieces summed: what the "shard" tasks take
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/exec/engine.h"
#include "core/pipeline/operation_registry.h"
#include "core/tiff/tiff_writer.h"

namespace stackproc::core::worker {

// The phases of a job cut in ranges: a whole-stack step's statistics gathered range by range
// ("stats"), then the output's pieces ("shard").
inline constexpr absl::string_view kStatsPhase = "stats";
inline constexpr absl::string_view kShardPhase = "shard";

// The worker's flags this protocol relies on (stackproc-local run / stats).
inline constexpr char kShardsFlag[] = "shards";           // N: cut in N ranges
inline constexpr char kProgressFlag[] = "progress-file";  // where the line goes
inline constexpr char kStatsFlag[] = "stats";             // the summed statistics
inline constexpr char kFillStoreFlag[] = "fill-store";    // the output: the job's store
inline constexpr char kDoneFlag[] = "done-file";          // made once the run succeeded

// One phase's files in a job's work folder. An index is a number, or a shell expression that
// gives one (a task script's "${SLURM_ARRAY_TASK_ID}").
struct WorkFolder {
  std::string name;  // in the output's directory
  std::string path;  // absolute, as the compute nodes see it too
  std::string phase = std::string(kShardPhase);
  bool gathered = false;  // the job has a "stats" phase, whose sum the "shard" tasks take
  std::string store;      // an OME-Zarr output's name: its store in the folder; else empty

  bool stats() const { return phase == kStatsPhase; }
  bool fills_store() const { return !store.empty() && !stats(); }
  std::string Script() const { return absl::StrCat(path, "/", phase, ".sh"); }
  // What task `index` makes when it is done: its piece, or its mark beside the store.
  std::string Piece(absl::string_view index) const {
    return absl::StrCat(path, "/", phase, "-", index,
                        stats()         ? ".stats"
                        : fills_store() ? ".done"
                                        : ".tif");
  }
  std::string Store() const { return absl::StrCat(path, "/", store); }
  static constexpr char kCommitted[] = "committed";
  std::string Committed() const { return absl::StrCat(path, "/", kCommitted); }
  std::string Piece(int index) const { return Piece(absl::StrCat(index)); }
  std::string Progress(absl::string_view index) const {
    return absl::StrCat(path, "/", phase, "-", index, ".progress");
  }
  std::string Progress(int index) const { return Progress(absl::StrCat(index)); }
  // Task `index`'s log of the attempt made by array `array` ("%a", "%A": the scheduler's own
  // patterns, for its --output).
  std::string Log(absl::string_view index, absl::string_view array) const {
    return absl::StrCat(path, "/", phase, "-", index, ".", array, ".log");
  }
  std::string Log(int index, absl::string_view array) const {
    return Log(absl::StrCat(index), array);
  }
  // The shard task of `index` from a file name in the folder that is one of its logs; -1 else.
  int LogIndex(absl::string_view file_name) const;
  std::string StackStats() const { return path + "/stack.stats"; }
};

// What one phase's tasks run: the worker program, over the input, cut in `shards` ranges.
struct WorkerTask {
  std::string worker;  // stackproc-local, as the compute nodes see it
  std::string input;   // absolute
  std::vector<OpSpec> ops;
  std::vector<int64_t> channels;  // only these (--channels); empty: all
  WriteOptions write;             // how the "shard" phase writes its pieces, or fills the store
  int shards = 0;
};

// The worker's command line (argv) for task `index` of `w`'s phase.
std::vector<std::string> WorkerArgs(const WorkerTask& task, const WorkFolder& w,
                                    absl::string_view index);

// The progress line: "slices_done=N slices_total=M bytes_done=B elapsed_s=S".
std::string FormatProgressLine(const Progress& p);
// The slices done a progress line says; 0 when it says none.
int64_t SlicesDoneOf(absl::string_view line);
// Replaces `path` with `p`'s line in one step (written beside it, then renamed), so that whoever
// watches it never reads half a line. Best effort: a run goes on if it cannot.
void WriteProgressFile(const std::string& path, const Progress& p);
// SlicesDoneOf the file at `path` (0 before a task writes one).
int64_t ReadSlicesDone(const std::string& path);
// Makes the mark at `path` that a task is done (written beside it, then renamed). Best effort:
// a task whose mark is missing is run again.
void MarkDone(const std::string& path);

}  // namespace stackproc::core::worker
