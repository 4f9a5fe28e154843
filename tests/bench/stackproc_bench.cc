// stackproc-bench: throughput of the core on a generated stack, each figure beside the
// machine's memcpy bandwidth measured in the same run. Medians over --reps repetitions.
//
//   stackproc-bench [--shape 32x2048x2048] [--type uint16] [--reps 5] [--dir /tmp]
//                   [--ops all|none]
#include <tbb/info.h>
#include <tbb/task_arena.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "core/io/stack_io.h"
#include "core/io/tiff_io.h"
#include "core/pipeline/operation_registry.h"
#include "core/tiff/tiff_reader.h"
#include "core/tiff/tiff_writer.h"
#include "core/tools/synthetic.h"

namespace stackproc::core {
namespace {

struct Options {
  StackShape shape{32, 2048, 2048};
  PixelType type = PixelType::kUint16;
  int reps = 5;
  std::string dir = "/tmp";
  bool ops = true;
};

void Die(const absl::Status& status) {
  std::fprintf(stderr, "stackproc-bench: %s\n", status.ToString().c_str());
  std::exit(1);
}

template <typename T>
T Check(absl::StatusOr<T> value) {
  if (!value.ok()) Die(value.status());
  return std::move(value).value();
}

// Median seconds of `reps` runs of `fn` (each run may prepare untimed state via `setup`).
double MedianSeconds(int reps, const std::function<void()>& setup,
                     const std::function<void()>& fn) {
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    if (setup) setup();
    absl::Time t0 = absl::Now();
    fn();
    times.push_back(absl::ToDoubleSeconds(absl::Now() - t0));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void Row(const std::string& what, double bytes, double seconds, double memcpy_mbps,
         const std::string& note = "") {
  const double mbps = bytes / 1e6 / seconds;
  absl::PrintF("%-44s %9.0f MB/s  %5.1f%% of memcpy  %s\n", what, mbps, 100 * mbps / memcpy_mbps,
               note);
}

Options ParseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--shape") {
      std::vector<std::string> p = absl::StrSplit(value, 'x');
      if (p.size() != 3 || !absl::SimpleAtoi(p[0], &o.shape.depth) ||
          !absl::SimpleAtoi(p[1], &o.shape.height) || !absl::SimpleAtoi(p[2], &o.shape.width)) {
        Die(absl::InvalidArgumentError("--shape is DxHxW"));
      }
    } else if (flag == "--type") {
      o.type = Check(ParsePixelType(value));
    } else if (flag == "--reps") {
      if (!absl::SimpleAtoi(value, &o.reps) || o.reps < 1)
        Die(absl::InvalidArgumentError("--reps"));
    } else if (flag == "--dir") {
      o.dir = value;
    } else if (flag == "--ops") {
      o.ops = value != "none";
    } else {
      Die(absl::InvalidArgumentError(absl::StrCat("unknown flag ", flag)));
    }
  }
  return o;
}

// The first touch of memory this VM has never used costs a host page fault per page
// (~300-600 MB/s here). A long-running server reuses warm memory, so warm it up first and
// report the cold rate separately.
void WarmUp(const Options& o) {
  const size_t warm =
      size_t(3) * static_cast<size_t>(o.shape.depth * o.shape.height * o.shape.width) * 4;
  absl::Time t0 = absl::Now();
  auto* p = static_cast<char*>(std::malloc(warm));
  if (p == nullptr) Die(absl::ResourceExhaustedError("warm-up allocation"));
  std::memset(p, 1, warm);
  const double cold = absl::ToDoubleSeconds(absl::Now() - t0);
  std::free(p);
  absl::PrintF("first touch of fresh memory: %.0f MB/s (warmed %.0f MB)\n", warm / 1e6 / cold,
               warm / 1e6);
}

// TIFF writes (libtiff's codec, parallel strips) and reads (into a new stack, into one reused).
void BenchTiff(const Options& o, const Stack& stack, int cores, double memcpy_mbps) {
  const double bytes = static_cast<double>(stack.size_bytes());
  // TIFF I/O through the page cache (no fsync: that measures the disk, not our code).
  for (Compression c : {Compression::kNone, Compression::kDeflate, Compression::kZstd}) {
    const std::string path =
        absl::StrCat(o.dir, "/stackproc-bench-", ::getpid(), "-", CompressionName(c), ".tif");
    WriteOptions write;
    write.compression = c;
    write.sync = false;
    if (c != Compression::kNone) {
      // libtiff's codec on the writing thread: the reference for the parallel strips below.
      write.parallel_compression = false;
      const double serial = MedianSeconds(o.reps, nullptr, [&] {
        if (absl::Status s = WriteTiff(path, stack, write); !s.ok()) Die(s);
      });
      Row(absl::StrCat("TIFF write ", CompressionName(c), ", libtiff codec (1 thr)"), bytes, serial,
          memcpy_mbps);
      write.parallel_compression = true;
    }
    const double w = MedianSeconds(o.reps, nullptr, [&] {
      if (absl::Status s = WriteTiff(path, stack, write); !s.ok()) Die(s);
    });
    const double file_mb = static_cast<double>(std::filesystem::file_size(path)) / 1e6;
    Row(absl::StrCat(
            "TIFF write ", CompressionName(c),
            c == Compression::kNone ? "" : absl::StrCat(", parallel strips (", cores, " thr)")),
        bytes, w, memcpy_mbps, absl::StrFormat("(file %.0f MB)", file_mb));
    const double fresh = MedianSeconds(o.reps, nullptr, [&] { Check(ReadTiff(path)); });
    Row(absl::StrCat("TIFF read ", CompressionName(c), ", new stack (", cores, " thr)"), bytes,
        fresh, memcpy_mbps);
    // Into a stack already written once: what a server that reuses buffers gets.
    const InputFile file = Check(InputFile::Open(path));
    const TiffInfo info = Check(ProbeTiff(file));
    Stack reused = Check(Stack::Allocate(info.shape, info.pixel_type));
    std::memset(reused.data(), 0, reused.size_bytes());
    const double warm = MedianSeconds(o.reps, nullptr, [&] {
      // The engine's TIFF source into a stack sink that adopts the stack: decoded in place.
      std::unique_ptr<TiffSource> source = Check(TiffSource::Open(file, info));
      Pipeline none;
      StackSink sink;
      sink.Adopt(reused);
      if (absl::Status s = Run(*source, none, sink); !s.ok()) Die(s);
      reused = sink.Take();
    });
    Row(absl::StrCat("TIFF read ", CompressionName(c), ", reused stack (", cores, " thr)"), bytes,
        warm, memcpy_mbps);
    std::filesystem::remove(path);
  }
}

// Each operation, and a pipeline of three, on one thread and on every core.
void BenchPipelines(const Options& o, const Stack& stack, int cores) {
  const double bytes = static_cast<double>(stack.size_bytes());
  auto run_pipeline = [&](const std::vector<std::string>& specs, int threads) {
    tbb::task_arena arena(threads);
    Stack input;
    return MedianSeconds(
        o.reps,
        [&] {
          input = Check(Stack::Allocate(stack.shape(), stack.pixel_type()));
          std::memcpy(input.data(), stack.data(), stack.size_bytes());
        },
        [&] {
          Pipeline pipeline = Check(Pipeline::Parse(specs));
          RunOptions options;
          options.arena = &arena;
          Check(Execute(std::move(input), pipeline, options));
        });
  };
  std::vector<std::vector<std::string>> pipelines;
  if (o.ops) {
    for (const char* spec :
         {"gaussian:ksize=5", "median:ksize=3", "box:ksize=5", "bilateral", "unsharp", "clahe",
          "normalize", "gamma:gamma=0.7", "invert", "threshold:method=otsu", "resize:scale=0.5",
          "crop:x=16,y=16", "flip", "rotate90", "convert:to=float32", "morphology:op=tophat"}) {
      pipelines.push_back({spec});
    }
  }
  pipelines.push_back({"gaussian:ksize=5", "clahe", "resize:scale=0.5"});
  absl::PrintF("%-44s %9s %9s %7s\n", "pipeline (MB/s of input)", "1 thread",
               absl::StrCat(cores, " threads"), "ratio");
  for (const auto& specs : pipelines) {
    Pipeline check = Check(Pipeline::Parse(specs));
    if (!check.Plan(SliceFormat::Of(o.shape, o.type)).ok()) {
      absl::PrintF("%-44s (not for %s)\n", check.ToString(), PixelTypeName(o.type));
      continue;
    }
    const double one = bytes / 1e6 / run_pipeline(specs, 1);
    const double all = bytes / 1e6 / run_pipeline(specs, cores);
    absl::PrintF("%-44s %9.0f %9.0f %6.2fx\n", check.ToString(), one, all, all / one);
  }
}

int Main(int argc, char** argv) {
  const Options o = ParseOptions(argc, argv);
  const int cores = tbb::info::default_concurrency();
  UseOnlyTheEnginesThreads();
  WarmUp(o);
  Stack stack = Check(MakeSyntheticStack(o.shape, o.type, 1));
  const double bytes = static_cast<double>(stack.size_bytes());
  absl::PrintF("stackproc-bench: %s %s stack, %.0f MB, %d cores, median of %d\n",
               ShapeString(o.shape), PixelTypeName(o.type), bytes / 1e6, cores, o.reps);

  std::vector<uint8_t> copy(stack.size_bytes());
  std::memset(copy.data(), 0, copy.size());  // fault the pages in before timing
  const double memcpy_s = MedianSeconds(
      o.reps, nullptr, [&] { std::memcpy(copy.data(), stack.data(), stack.size_bytes()); });
  const double memcpy_mbps = bytes / 1e6 / memcpy_s;
  Row("memcpy (1 thread)", bytes, memcpy_s, memcpy_mbps);
  copy = {};

  BenchTiff(o, stack, cores, memcpy_mbps);
  BenchPipelines(o, stack, cores);
  return 0;
}

}  // namespace
}  // namespace stackproc::core

int main(int argc, char** argv) { return stackproc::core::Main(argc, argv); }
