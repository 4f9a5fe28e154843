// The whole job on files: read a TIFF stack, run a pipeline over it, write the result.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/executor.h"
#include "core/tiff_reader.h"
#include "core/tiff_writer.h"

namespace stackproc::core {

struct ProcessRequest {
  std::string input_path;
  std::string output_path;       // empty: keep the result in ProcessSummary::result
  std::vector<std::string> ops;  // text form, e.g. {"gaussian:ksize=5", "clahe"}
  WriteOptions write;            // compression, overwrite, sync
  TiffLimits limits;
  tbb::task_arena* arena = nullptr;
  const CancelToken* cancel = nullptr;
  ProgressCallback on_progress;
  // Called as each stage starts: "reading", "processing", "writing".
  std::function<void(absl::string_view stage)> on_stage;
};

struct ProcessSummary {
  std::string pipeline;
  StackShape input_shape;
  StackShape output_shape;
  PixelType input_type = PixelType::kUint8;
  PixelType output_type = PixelType::kUint8;
  uint64_t input_bytes = 0;
  uint64_t output_bytes = 0;
  absl::Duration read_time;
  absl::Duration process_time;
  absl::Duration write_time;
  std::optional<Stack> result;  // when no output path was given
};

// Validates the pipeline and the file (and that the pipeline takes the file's slices) before
// allocating anything, then reads, processes and writes atomically (or keeps the result). Any
// failure leaves no output file. Blocks until done.
absl::StatusOr<ProcessSummary> ProcessFile(const ProcessRequest& request);

}  // namespace stackproc::core
