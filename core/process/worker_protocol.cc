#include "core/process/worker_protocol.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/tiff/compression.h"

namespace stackproc::core::worker {

int WorkFolder::LogIndex(absl::string_view file_name) const {
  // PHASE-I.ARRAY.log
  std::vector<absl::string_view> parts = absl::StrSplit(file_name, '.');
  int index = -1;
  if (parts.size() != 3 || parts[2] != "log" || !absl::ConsumePrefix(&parts[0], phase) ||
      !absl::ConsumePrefix(&parts[0], "-") || !absl::SimpleAtoi(parts[0], &index)) {
    return -1;
  }
  return index;
}

std::vector<std::string> WorkerArgs(const WorkerTask& task, const WorkFolder& w,
                                    absl::string_view index) {
  std::vector<std::string> argv = {task.worker, w.stats() ? "stats" : "run", "--input", task.input};
  for (const OpSpec& op : task.ops) {
    argv.push_back("--op");
    argv.push_back(FormatOpSpec(op));
  }
  if (!task.channels.empty()) {
    argv.insert(argv.end(), {"--channels", absl::StrJoin(task.channels, "+")});
  }
  std::string output = w.Piece(index);
  if (!w.stats()) {
    const WriteOptions& write = task.write;
    argv.insert(argv.end(),
                {"--compression",
                 CompressionText(write.compression, write.compression_level, write.predictor)});
    if (w.fills_store()) {  // the store's layout, which it was made with (ZarrRegion checks)
      argv.insert(argv.end(), {"--zarr-format", absl::StrCat(write.zarr_format), "--pyramid",
                               absl::StrCat(write.pyramid_levels)});
      if (write.chunks) argv.insert(argv.end(), {"--chunks", absl::StrJoin(*write.chunks, "x")});
      if (write.zarr_shards) {
        argv.insert(argv.end(), {"--zarr-shards", absl::StrJoin(*write.zarr_shards, "x")});
      }
      argv.insert(argv.end(),
                  {absl::StrCat("--", kFillStoreFlag), absl::StrCat("--", kDoneFlag), output});
      output = w.Store();
    } else {
      argv.push_back("--overwrite");
    }
    if (w.gathered) argv.insert(argv.end(), {absl::StrCat("--", kStatsFlag), w.StackStats()});
  }
  argv.insert(argv.end(), {absl::StrCat("--", kShardsFlag), absl::StrCat(task.shards), "--output",
                           output, absl::StrCat("--", kProgressFlag), w.Progress(index)});
  return argv;
}

std::string FormatProgressLine(const Progress& p) {
  return absl::StrCat("slices_done=", p.slices_done, " slices_total=", p.slices_total,
                      " bytes_done=", p.bytes_done, " elapsed_s=", absl::ToDoubleSeconds(p.elapsed),
                      "\n");
}

int64_t SlicesDoneOf(absl::string_view line) {
  for (absl::string_view field : absl::StrSplit(line, absl::ByAnyChar(" \n"))) {
    int64_t value = 0;
    if (absl::ConsumePrefix(&field, "slices_done=") && absl::SimpleAtoi(field, &value)) {
      return value;
    }
  }
  return 0;
}

void WriteProgressFile(const std::string& path, const Progress& p) {
  const std::string temp = absl::StrCat(path, ".part");
  {
    std::ofstream out(temp, std::ios::trunc);
    out << FormatProgressLine(p);
    if (!out.flush()) return;
  }
  std::rename(temp.c_str(), path.c_str());
}

void MarkDone(const std::string& path) {
  const std::string temp = absl::StrCat(path, ".part");
  {
    std::ofstream out(temp, std::ios::trunc);
    out << "done\n";
    if (!out.flush()) return;
  }
  std::rename(temp.c_str(), path.c_str());
}

int64_t ReadSlicesDone(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return SlicesDoneOf(text.str());
}

}  // namespace stackproc::core::worker
