#include "core/tools/provenance_commands.h"

#include <cstdlib>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"
#include "core/io/formats.h"
#include "core/io/plane_map.h"
#include "core/tiff/compression.h"

namespace stackproc::core {
namespace {

// The record of the output `path` names, or why there is none to use.
absl::StatusOr<Provenance> RecordOf(const std::string& path) {
  STACKPROC_ASSIGN_OR_RETURN(std::unique_ptr<SliceSource> output, OpenInput(LocalFiles(), path));
  const std::optional<Provenance>& record = output->info().metadata.provenance;
  if (!record) {
    return absl::FailedPreconditionError(
        absl::StrCat(path,
                     ": holds no record of what made it (not written by stackproc, or "
                     "written before stackproc recorded it)"));
  }
  return *record;
}

// "t=1 c=2 z=10 y=512 x=512 uint16": the axes a record states of an input.
std::string InputAxes(const Provenance::Input& in) {
  return absl::StrFormat("t=%d c=%d z=%d y=%d x=%d %s", in.t, in.c, in.z, in.y, in.x, in.type);
}

}  // namespace

std::string ExecutorOfEnvironment() {
  if (const char* array = std::getenv("SLURM_ARRAY_JOB_ID"); array && *array) {
    return absl::StrCat("slurm array ", array);
  }
  if (const char* job = std::getenv("SLURM_JOB_ID"); job && *job) {
    return absl::StrCat("slurm job ", job);
  }
  if (const char* index = std::getenv("JOB_COMPLETION_INDEX"); index && *index) {
    return "kubernetes indexed job";
  }
  return "local";
}

absl::Status Info(const CliArgs& args) {
  if (args.positional.size() != 1) {
    return absl::InvalidArgumentError("info takes one output: stackproc-local info PATH");
  }
  const std::string& path = args.positional.front();
  STACKPROC_ASSIGN_OR_RETURN(std::unique_ptr<SliceSource> source, OpenInput(LocalFiles(), path));
  const StackInfo& info = source->info();
  const std::optional<Provenance>& p = info.metadata.provenance;
  if (args.Has("json")) {
    if (!p) return RecordOf(path).status();
    absl::PrintF("%s\n", ProvenanceJson(*p, /*indented=*/true));
    return absl::OkStatus();
  }
  absl::PrintF("%s: %s, %dx%d %s\n", path, info.metadata.dims.Describe(info.shape.depth),
               info.shape.width, info.shape.height, PixelTypeName(info.type));
  if (!p) {
    absl::PrintF("  made by: no record (not written by stackproc, or before it recorded one)\n");
    return absl::OkStatus();
  }
  absl::PrintF("  made by   stackproc %s, %s, %s\n", p->version, p->time, p->executor);
  absl::PrintF("  input     %s (%s, %d bytes)\n", p->input.name, InputAxes(p->input),
               p->input.bytes);
  for (size_t i = 0; i < p->pipeline.size(); ++i) {
    absl::PrintF("  %-9s %s\n", i == 0 ? "pipeline" : "", p->pipeline[i]);
  }
  if (p->pipeline.empty()) absl::PrintF("  pipeline  %s\n", kNoOperations);
  if (!p->channels.empty()) absl::PrintF("  channels  %s\n", p->channels);
  if (!p->z_range.empty()) absl::PrintF("  z-range   %s\n", p->z_range);
  absl::PrintF("  written   compression %s%s%s%s%s\n", p->compression,
               p->zarr_format == 0 ? "" : absl::StrCat(", zarr format ", p->zarr_format),
               p->chunks.empty() ? "" : absl::StrCat(", chunks ", p->chunks),
               p->shards.empty() ? "" : absl::StrCat(", shards ", p->shards),
               p->pyramid == 0 ? "" : absl::StrCat(", pyramid ", p->pyramid));
  absl::PrintF("  again     stackproc-local rerun %s --output NEW\n", path);
  return absl::OkStatus();
}

absl::StatusOr<ProcessRequest> RerunRequest(const CliArgs& args) {
  if (args.positional.size() != 1 || args.Get("output").empty()) {
    return absl::InvalidArgumentError(
        "rerun takes one output and a new one: stackproc-local rerun OUTPUT --output NEW");
  }
  const std::string& recorded = args.positional.front();
  STACKPROC_ASSIGN_OR_RETURN(const Provenance p, RecordOf(recorded));
  ProcessRequest request;
  request.input_path = args.Get("input", p.input.name);
  request.output_path = args.Get("output");
  STACKPROC_ASSIGN_OR_RETURN(request.ops, ParseOpSpecs(p.pipeline));
  if (!p.channels.empty()) {
    STACKPROC_ASSIGN_OR_RETURN(request.channels, ParseChannelList(p.channels));
  }
  if (!p.z_range.empty()) {
    STACKPROC_ASSIGN_OR_RETURN(request.z_range, ParseZRange(p.z_range));
  }
  STACKPROC_RETURN_IF_ERROR(RecordedWrite(p, request.write));
  request.write.overwrite = args.Has("overwrite");
  request.executor = ExecutorOfEnvironment();
  // The input must be the one recorded (all of it: the record has the chosen channels apart).
  STACKPROC_ASSIGN_OR_RETURN(std::shared_ptr<SliceSource> input, OpenRequestInput(request));
  const Provenance::Input found =
      RecordedInput(request.input_path, PlaneMapSource::UnmappedInfo(*input));
  // (Records written before the input was recorded whole state the chosen channels only.)
  if (InputAxes(found) != InputAxes(p.input) &&
      InputAxes(RecordedInput(request.input_path, input->info())) != InputAxes(p.input)) {
    return absl::FailedPreconditionError(absl::StrCat(
        request.input_path, " is not the input ", recorded, " records: it has ", InputAxes(found),
        ", the record ", InputAxes(p.input), " (of ", p.input.name, "; --input names another)"));
  }
  if (p.version != StackprocVersion()) {
    absl::FPrintF(stderr,
                  "stackproc-local: %s was made by stackproc %s, this is %s: operations may have "
                  "changed, and the bytes with them\n",
                  recorded, p.version, StackprocVersion());
  }
  return request;
}

}  // namespace stackproc::core
