// Client::Process: a local stack file through a streamed job into a local output, written through
// a core sink as the results arrive.
#include "core/process/process_file.h"

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/client.h"
#include "core/base/status_macros.h"
#include "core/io/formats.h"

namespace stackproc::client {

namespace {

// Writes a streamed result as it arrives through a core sink: a TIFF file, or a sequence of
// planes. Commit makes it whole (a temporary renamed into place); without it nothing is left.
class CoreSink final : public Client::StreamSink {
 public:
  // `record` completes the job's record with what this side chose (provenance.h).
  CoreSink(std::unique_ptr<core::SliceSink> sink, std::function<void(core::Provenance&)> record)
      : sink_(std::move(sink)), record_(std::move(record)) {}

  absl::Status Begin(const core::StackShape& shape, core::PixelType type,
                     const core::StackMetadata& metadata) override {
    depth_ = shape.depth;
    core::StackMetadata written = metadata;
    if (written.provenance && record_) record_(*written.provenance);
    return sink_->Open({shape, type, std::move(written)}, /*window_slices=*/1, nullptr);
  }
  absl::Status Slice(int64_t z, const uint8_t* data) override {
    STACKPROC_RETURN_IF_ERROR(sink_->Encode(z, data));
    STACKPROC_RETURN_IF_ERROR(sink_->Write(z, data));
    ++written_;
    return absl::OkStatus();
  }
  absl::Status Commit() {
    if (written_ != depth_) {
      return absl::FailedPreconditionError(
          absl::StrCat(written_, " of ", depth_, " result slices arrived: nothing written"));
    }
    return sink_->Close();
  }

 private:
  std::unique_ptr<core::SliceSink> sink_;
  std::function<void(core::Provenance&)> record_;
  int64_t depth_ = 0;
  int64_t written_ = 0;
};

}  // namespace

absl::StatusOr<v1::Job> Client::Process(const ProcessOptions& options) {
  // Any format core reads; its chosen channels, in t, c, z order for an OME-Zarr output.
  core::ProcessRequest read;
  read.input_path = options.input_path;
  read.output_path = options.output_path;
  read.channels = options.channels;
  STACKPROC_ASSIGN_OR_RETURN(std::shared_ptr<core::SliceSource> input,
                             core::OpenRequestInput(read));
  // Refused before anything is sent: bad output options, an existing output (unless overwrite:
  // then a folder must hold what the format writes).
  STACKPROC_ASSIGN_OR_RETURN(core::OutputName name, core::ParseOutputName(options.output_path));
  STACKPROC_RETURN_IF_ERROR(core::ValidateOutput(name, options.write));
  if (std::filesystem::exists(std::filesystem::symlink_status(name.target))) {
    if (!options.write.overwrite) {
      return absl::AlreadyExistsError(
          absl::StrCat(name.target, ": exists (use --overwrite to replace it)"));
    }
    STACKPROC_ASSIGN_OR_RETURN(core::OutputTarget target, core::OutputTarget::ForPath(name.target));
    STACKPROC_RETURN_IF_ERROR(core::CheckReplaceable(name.format, target));
  }
  StreamSource source;
  source.shape = input->info().shape;
  source.type = input->info().type;
  source.metadata = input->info().metadata;
  source.name = options.input_path;
  source.read_slice = [&](int64_t z, uint8_t* dst) { return input->Read(z, dst); };
  STACKPROC_ASSIGN_OR_RETURN(source.wire_compression, WireCompressionFor(options.wire_compression));
  STACKPROC_ASSIGN_OR_RETURN(std::unique_ptr<core::SliceSink> output,
                             core::OpenOutput(options.output_path, options.write));
  // The server ran the pipeline; the channels, the codec and the store's layout were chosen
  // here, so the record says so (and `rerun` makes this file).
  CoreSink sink(std::move(output), [&options](core::Provenance& p) {
    p.channels = absl::StrJoin(options.channels, "+");
    core::RecordWrite(options.output_path, options.write, p);
  });
  absl::StatusOr<v1::Job> job =
      ProcessStream(source, options.ops, sink, options.on_update, options.counts);
  if (!job.ok()) return job.status();
  if (absl::Status s = sink.Commit(); !s.ok()) return s;
  return job;
}

}  // namespace stackproc::client
