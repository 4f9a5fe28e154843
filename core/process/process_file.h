// The whole job on files: read a TIFF stack, run a pipeline over it, write the result.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/exec/engine.h"
#include "core/pipeline/pipeline.h"
#include "core/process/shards.h"
#include "core/tiff/tiff_reader.h"
#include "core/tiff/tiff_writer.h"

namespace stackproc::core {

// How a file job holds its stack.
enum class ProcessMode {
  kAuto,      // streaming when the job allows it, else in memory
  kInMemory,  // the whole stack in one buffer shared by the slice tasks: needed by whole-stack
              // steps (normalize:scope=stack) and by results kept in memory
  kStreaming  // page by page through the engine's window of slices: memory bounded by the
              // window, reading, processing and writing overlapped; per-slice pipelines with
              // an output file
};
// "in-memory", "streaming" ("auto" for kAuto).
absl::string_view ProcessModeName(ProcessMode mode);

struct ProcessRequest {
  // A TIFF file, a sequence of them (a folder, a pattern or a glob) or an OME-Zarr image: what
  // formats.h reads.
  std::string input_path;
  // How input_path is found and opened (the server's: beneath its data root); nullptr:
  // LocalFiles.
  const Files* files = nullptr;
  std::string output_path;  // empty: keep the result in ProcessSummary::result
  // Where the output goes, its directory already open (e.g. resolved beneath a data root);
  // output_path then only names it in messages. Unset: output_path's directory is opened.
  std::optional<OutputTarget> output_target;
  // Only these channels of the input, in this order (numbered from 0); empty: all of them.
  std::vector<int64_t> channels;
  // Only these slices of the input (a shard of a job cut in z-ranges: shards.h), after its
  // channels were chosen.
  std::optional<ZRange> z_range;
  // The output is an OME-Zarr store made for the whole stack (CreateZarrStore, as a cluster
  // job's server does), and this run's z_range fills its files of those slices (ZarrRegion):
  // ranges of ShardAlignment's slices fill one store with no assembly.
  bool fill_store = false;
  // A pipeline with a whole-stack step: its statistics, gathered over the whole stack apart
  // (GatherStats of each range, summed; a cut job's first phase). The run then streams, and may
  // take a z-range. Unset: the run takes them itself, holding the stack in memory.
  std::optional<std::vector<uint64_t>> stack_stats;
  std::vector<OpSpec> ops;  // ParseOpSpecs reads the text form ("gaussian:ksize=5")
  // What the output records of its run (RunProvenance): the input's name there (empty:
  // input_path), what runs the job ("local", "stackprocd job 12", "slurm array 3456"), and
  // when the job began (unset: when the run does).
  std::string input_name;
  std::string executor = "local";
  std::optional<absl::Time> started;
  WriteOptions write;  // compression, overwrite, sync; OME-Zarr chunks and pyramid
  StackLimits limits;
  ProcessMode mode = ProcessMode::kAuto;
  uint64_t window_bytes = kDefaultWindowBytes;  // streaming: memory for the slices in flight
  tbb::task_arena* arena = nullptr;
  const CancelToken* cancel = nullptr;
  ProgressCallback on_progress;
  // Called as the run starts: "processing" (in memory) or "streaming".
  std::function<void(absl::string_view stage)> on_stage;
};

// The request's pipeline, its operations reading the files they name (flatfield:flat=) as
// the request reads its input: through its Files.
absl::StatusOr<Pipeline> RequestPipeline(const ProcessRequest& request);

// The input `request` reads: input_path opened, only its `channels` when given, its planes in
// t, c, z order when the output is an OME-Zarr store (which holds them so). No z-range.
absl::StatusOr<std::shared_ptr<SliceSource>> OpenRequestInput(const ProcessRequest& request);

// What a request will do, worked out before anything is allocated.
struct ProcessPlan {
  std::shared_ptr<SliceSource> source;  // open: what was validated is what is read
  StackInfo input;                      // the source's
  // The input as it is, every channel (what a record states): PlanProcess's before its z-range;
  // PlanSource's is what `source` reads from.
  StackInfo file;
  int64_t source_depth = 0;             // the input's, before a z-range
  Pipeline pipeline;
  std::vector<SliceFormat> formats;           // Pipeline::Plan of the input's slices
  ProcessMode mode = ProcessMode::kInMemory;  // never kAuto
  uint64_t memory_bytes = 0;                  // the most stack memory the run holds
  StackShape output_shape;
  PixelType output_type = PixelType::kUint8;
};

// The one planner of a run: `request`'s pipeline over `source` (a file's, a streamed upload's),
// into a sink with `sink`'s traits (nullopt: the result kept in memory). Checks that the pipeline
// takes the source's slices, works out the output and picks the mode and the memory: streaming
// whenever the job allows; in memory, a source fed from outside runs as it comes (PlanRunMemory),
// any other is read whole first (StackPeakBytes). `concurrency`: the threads the run will use
// (per-thread scratch counts in memory_bytes). InvalidArgument when kStreaming is asked for a
// job that cannot stream. (request.input_path and z_range are PlanProcess's.)
absl::StatusOr<ProcessPlan> PlanSource(std::shared_ptr<SliceSource> source,
                                       const ProcessRequest& request,
                                       std::optional<SinkTraits> sink, int concurrency);

// What the output of `request` records of it (provenance.h): `pipeline` with every parameter,
// the request's channels, z-range and write options, `file` (the input as it is: every channel
// and z-slice, whichever the run reads; ProcessPlan::file), when and where it ran.
Provenance RunProvenance(const ProcessRequest& request, const Pipeline& pipeline,
                         const StackInfo& file);
// A record's input: `name`, and the shape, type and size of `file`, the input as it is.
Provenance::Input RecordedInput(std::string name, const StackInfo& file);
// Makes the OME-Zarr store of `request`'s whole output (at request.output_target, else its
// path): its metadata and what made it, no chunks; shards of the job then fill it (fill_store).
absl::Status CreateOutputStore(const ProcessRequest& request);

// The slices a shard of `request` (its whole input) starts on, for ShardRange: an OME-Zarr
// store filled range by range needs whole files of every level (ZarrSink::RangeAlignment);
// any other output, 1.
absl::StatusOr<int64_t> ShardAlignment(const ProcessRequest& request);

// The write options of `output_path` as its record states them (the codec, and an OME-Zarr
// store's format, chunks, shards and pyramid); and back, for a rerun.
void RecordWrite(const std::string& output_path, const WriteOptions& write, Provenance& p);
absl::Status RecordedWrite(const Provenance& p, WriteOptions& write);

// PlanSource of the request's input (any format formats.h reads, `z_range` of it), into its
// output (checked: a name a format writes, options it takes) or kept in memory.
absl::StatusOr<ProcessPlan> PlanProcess(const ProcessRequest& request, int concurrency);

struct ProcessSummary {
  std::string pipeline;
  ProcessMode mode = ProcessMode::kInMemory;
  StackShape input_shape;
  Dimensions input_dims;  // its time points and channels (the output's too)
  StackShape output_shape;
  PixelType input_type = PixelType::kUint8;
  PixelType output_type = PixelType::kUint8;
  uint64_t input_bytes = 0;
  uint64_t output_bytes = 0;
  absl::Duration elapsed;       // reading, processing and writing (they overlap)
  std::optional<Stack> result;  // when no output path was given
};

// Plans (PlanProcess) before allocating anything, then reads, processes and writes atomically
// (or keeps the result). Any failure leaves no output file. Blocks until done.
absl::StatusOr<ProcessSummary> ProcessFile(const ProcessRequest& request);

}  // namespace stackproc::core
