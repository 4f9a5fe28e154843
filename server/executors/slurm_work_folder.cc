#include "server/executors/slurm_work_folder.h"

#include <fcntl.h>

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/base/file.h"
#include "core/pipeline/operation_registry.h"

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
  return {name, absl::StrCat(root, "/", dir, name), phase, gathered};
}

std::string TaskScript(const std::string& worker, const std::string& input, const WorkFolder& w,
                       const JobSnapshot& s) {
  const std::string task = "\"${SLURM_ARRAY_TASK_ID}\"";
  const bool stats = w.phase == "stats";
  std::string ops;
  for (const core::OpSpec& op : s.spec.ops) {
    absl::StrAppend(&ops, " --op ", ShellQuote(FormatOpSpec(op)));
  }
  const std::string writes =
      stats ? ""
            : absl::StrCat(" --compression ",
                           core::CompressionText(s.spec.compression, s.spec.compression_level,
                                                 s.spec.predictor),
                           " --overwrite");
  const std::string takes = stats || !w.gathered ? "" : " --stats " + ShellQuote(w.StackStats());
  const std::string piece = absl::StrCat(ShellQuote(w.path), "/", w.phase, "-", task);
  return absl::StrCat(
      "#!/bin/sh\n# stackprocd job ", s.id, ", phase ", w.phase, ": range $SLURM_ARRAY_TASK_ID of ",
      s.execution.shards, ", slices cut as stackproc-local --shards cuts them\n",
      "echo \"stackproc job ", s.id, " ", w.phase, " ${SLURM_ARRAY_TASK_ID} of ",
      s.execution.shards, " on $(hostname)\"\n", "exec ", ShellQuote(worker),
      stats ? " stats" : " run", " --input ", ShellQuote(input), ops, writes, takes, " --shards ",
      s.execution.shards, " --output ", piece, stats ? ".stats" : ".tif", " --progress-file ",
      piece, ".progress", " ${SLURM_CPUS_PER_TASK:+--threads \"$SLURM_CPUS_PER_TASK\"}\n");
}

int64_t SlicesDone(const std::string& progress_file) {
  for (absl::string_view field : absl::StrSplit(ReadText(progress_file), ' ')) {
    int64_t value = 0;
    if (absl::ConsumePrefix(&field, "slices_done=") && absl::SimpleAtoi(field, &value))
      return value;
  }
  return 0;
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
    std::vector<absl::string_view> parts = absl::StrSplit(name, '.');
    int shard = 0;
    if (parts.size() == 3 && parts[2] == "log" && absl::ConsumePrefix(&parts[0], w.phase) &&
        absl::ConsumePrefix(&parts[0], "-") && absl::SimpleAtoi(parts[0], &shard) && shard >= 0 &&
        shard < shards) {
      ++attempts[shard];
    }
  }
  return attempts;
}

}  // namespace stackproc::server
