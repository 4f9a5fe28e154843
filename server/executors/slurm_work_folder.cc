#include "server/executors/slurm_work_folder.h"

#include <fcntl.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/base/file.h"
#include "core/io/formats.h"
#include "core/tiff/compression.h"
#include "server/executors/local_executor.h"

namespace stackproc::server {
namespace {

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

std::string ShellQuote(absl::string_view text) {
  return absl::StrCat("'", absl::StrReplaceAll(text, {{"'", "'\\''"}}), "'");
}

WorkFolder WorkFolderOf(const std::string& root, const JobSnapshot& s, const std::string& phase,
                        bool gathered) {
  const std::string& output = *s.spec.output_path;
  const size_t slash = output.rfind('/');
  const std::string dir = slash == std::string::npos ? "" : output.substr(0, slash + 1);
  const std::string name = core::TempPrefix(output.substr(dir.size()), s.id) + "slurm";
  const bool zarr = core::ParseOutputName(output)->format == core::Format::kOmeZarr;
  return {name, absl::StrCat(root, "/", dir, name), phase, gathered,
          zarr ? output.substr(dir.size()) : ""};
}

std::string TaskScript(const std::string& worker, const std::string& root, const std::string& input,
                       const WorkFolder& w, const JobSnapshot& s) {
  core::worker::WorkerTask task;
  task.worker = worker;
  task.input = input;
  task.ops = s.spec.ops;
  task.channels = s.spec.channels;
  task.write = WriteOptionsOf(s.spec);
  task.shards = s.execution.shards;
  // Each argument quoted, the task's index left to the shell: '...shard-'"${SLURM_...}"'.tif'.
  constexpr absl::string_view kIndex = "@INDEX@";
  std::vector<std::string> argv = core::worker::WorkerArgs(task, w, kIndex);
  for (std::string& arg : argv) {
    arg = absl::StrReplaceAll(ShellQuote(arg), {{kIndex, "'\"${SLURM_ARRAY_TASK_ID}\"'"}});
  }
  return absl::StrCat(
      "#!/bin/sh\n# stackprocd job ", s.id, ", phase ", w.phase, ": range $SLURM_ARRAY_TASK_ID of ",
      s.execution.shards, ", slices cut as stackproc-local --shards cuts them\n",
      "echo \"stackproc job ", s.id, " ", w.phase, " ${SLURM_ARRAY_TASK_ID} of ",
      s.execution.shards, " on $(hostname)\"\n", "cd ", ShellQuote(root), " || exit 1\n", "exec ",
      absl::StrJoin(argv, " "), " ${SLURM_CPUS_PER_TASK:+--threads \"$SLURM_CPUS_PER_TASK\"}\n");
}

std::string LogTail(const std::string& log, size_t count) {
  std::vector<std::string> lines =
      absl::StrSplit(ReadText(log), absl::ByAnyChar("\r\n"), absl::SkipWhitespace());
  if (lines.size() > count) lines.erase(lines.begin(), lines.end() - count);
  return lines.empty() ? "(empty)" : absl::StrJoin(lines, " | ");
}

std::string NodeOf(const std::string& log) {
  const std::string text = ReadText(log);
  absl::string_view first = absl::string_view(text).substr(0, text.find('\n'));
  const size_t on = first.rfind(" on ");
  return on == absl::string_view::npos ? "" : std::string(first.substr(on + 4));
}

std::vector<int> AttemptsFromLogs(const WorkFolder& w, int shards) {
  std::vector<int> attempts(shards, 0);
  core::UniqueFd dir(::open(w.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  absl::StatusOr<std::vector<std::string>> names =
      dir ? core::ListDirectory(dir.get()) : absl::NotFoundError(w.path);
  for (const std::string& name : names.value_or(std::vector<std::string>{})) {
    if (const int shard = w.LogIndex(name); shard >= 0 && shard < shards) ++attempts[shard];
  }
  return attempts;
}

}  // namespace stackproc::server
