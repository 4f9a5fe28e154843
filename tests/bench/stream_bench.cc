// stackproc-stream-bench: a streamed job (ProcessStream) over loopback, from memory to memory,
// beside the core alone running the same pipeline on the same stack in this process. The two
// alternate, repetition by repetition; the figures are medians. The streamed result is checked
// bit for bit against the core's.
//
//   stackproc-stream-bench --server HOST:PORT [--shape 256x2048x1024] [--type uint16]
//                          [--op gaussian:ksize=5 ...] [--reps 3]
#include <tbb/task_arena.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "core/io/stack_io.h"
#include "core/pipeline/pipeline.h"
#include "core/tools/synthetic.h"

namespace stackproc {
namespace {

void Die(const absl::Status& status) {
  std::fprintf(stderr, "stackproc-stream-bench: %s\n", status.ToString().c_str());
  std::exit(1);
}

template <typename T>
T Check(absl::StatusOr<T> value) {
  if (!value.ok()) Die(value.status());
  return std::move(value).value();
}

// Receives the streamed result into a preallocated stack.
class StackSink final : public client::Client::StreamSink {
 public:
  explicit StackSink(core::Stack& stack) : stack_(stack) {}
  absl::Status Begin(const core::StackShape& shape, core::PixelType type,
                     const core::StackMetadata&) override {
    if (shape != stack_.shape() || type != stack_.pixel_type()) {
      return absl::DataLossError("the result is not the shape the core made");
    }
    return absl::OkStatus();
  }
  absl::Status Slice(int64_t z, const uint8_t* data) override {
    std::memcpy(stack_.slice_data(z), data, stack_.slice_bytes());
    return absl::OkStatus();
  }

 private:
  core::Stack& stack_;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Options {
  std::string server;
  core::StackShape shape{256, 2048, 1024};
  core::PixelType type = core::PixelType::kUint16;
  std::vector<std::string> ops;
  int reps = 3;
};

Options ParseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--server") {
      o.server = value;
    } else if (flag == "--shape") {
      std::vector<std::string> p = absl::StrSplit(value, 'x');
      if (p.size() != 3 || !absl::SimpleAtoi(p[0], &o.shape.depth) ||
          !absl::SimpleAtoi(p[1], &o.shape.height) || !absl::SimpleAtoi(p[2], &o.shape.width)) {
        Die(absl::InvalidArgumentError("--shape is DxHxW"));
      }
    } else if (flag == "--type") {
      o.type = Check(core::ParsePixelType(value));
    } else if (flag == "--op") {
      o.ops.push_back(value);
    } else if (flag == "--reps") {
      if (!absl::SimpleAtoi(value, &o.reps) || o.reps < 1)
        Die(absl::InvalidArgumentError("--reps"));
    } else {
      Die(absl::InvalidArgumentError(absl::StrCat("unknown flag ", flag)));
    }
  }
  if (o.server.empty()) Die(absl::InvalidArgumentError("--server HOST:PORT is required"));
  if (o.ops.empty()) o.ops.push_back("gaussian:ksize=5");
  return o;
}

int Main(int argc, char** argv) {
  const Options o = ParseOptions(argc, argv);
  const std::string& server = o.server;
  const core::StackShape& shape = o.shape;
  const core::PixelType type = o.type;
  const std::vector<std::string>& ops = o.ops;
  const int reps = o.reps;
  core::KeepMessageBuffersInTheHeap();  // as the CLI does

  const core::Stack input = Check(core::MakeSyntheticStack(shape, type, 7));
  const double bytes = static_cast<double>(input.size_bytes());
  std::vector<v1::OpSpec> specs;
  for (const std::string& text : ops) specs.push_back(Check(client::ParseOpText(text)));

  // The core alone: Execute on a copy of the stack (the copy is not timed).
  core::Stack work = Check(core::Stack::Allocate(shape, type));
  core::Stack core_result;
  auto run_core = [&] {
    std::memcpy(work.data(), input.data(), input.size_bytes());
    core::Pipeline pipeline = Check(core::Pipeline::Parse(ops));
    const absl::Time t0 = absl::Now();
    core_result = Check(core::Execute(std::move(work), pipeline));
    const double s = absl::ToDoubleSeconds(absl::Now() - t0);
    if (core_result.shape() == shape && core_result.pixel_type() == type) {
      work = std::move(core_result);  // in place: reuse the buffer next time
      core_result = Check(core::Stack::Allocate(work.shape(), work.pixel_type()));
      std::memcpy(core_result.data(), work.data(), work.size_bytes());
    } else {
      work = Check(core::Stack::Allocate(shape, type));
    }
    return s;
  };

  client::Client client(server);
  client::Client::StreamSource source;
  source.shape = shape;
  source.type = type;
  source.read_slice = [&](int64_t z, uint8_t* dst) {
    std::memcpy(dst, input.slice_data(z), input.slice_bytes());
    return absl::OkStatus();
  };
  core::Stack streamed;
  auto run_stream = [&] {
    if (streamed.empty()) {
      streamed = Check(core::Stack::Allocate(core_result.shape(), core_result.pixel_type()));
    }
    StackSink sink(streamed);
    const absl::Time t0 = absl::Now();
    Check(client.ProcessStream(source, specs, sink, nullptr));
    return absl::ToDoubleSeconds(absl::Now() - t0);
  };

  absl::PrintF("stackproc-stream-bench: %s %s, %.0f MB, %s, median of %d, alternating\n",
               core::ShapeString(shape), core::PixelTypeName(type), bytes / 1e6,
               absl::StrJoin(ops, " -> "), reps);
  std::vector<double> core_s, stream_s;
  for (int i = 0; i < reps; ++i) {
    core_s.push_back(run_core());
    stream_s.push_back(run_stream());
  }
  if (std::memcmp(streamed.data(), core_result.data(), core_result.size_bytes()) != 0) {
    Die(absl::DataLossError("the streamed result differs from the core's"));
  }
  const double core_mbps = bytes / 1e6 / Median(core_s);
  const double stream_mbps = bytes / 1e6 / Median(stream_s);
  absl::PrintF("core only (in memory)          %8.0f MB/s  (%.2fs)\n", core_mbps, Median(core_s));
  absl::PrintF("streamed over loopback         %8.0f MB/s  (%.2fs)  %.0f%% of core only\n",
               stream_mbps, Median(stream_s), 100 * stream_mbps / core_mbps);
  absl::PrintF("streamed result equals the core's, bit for bit\n");
  return 0;
}

}  // namespace
}  // namespace stackproc

int main(int argc, char** argv) { return stackproc::Main(argc, argv); }
