// Client::Process: a local stack file through a streamed job into a local output, written as the
// results arrive; a TIFF output kept with a resume record, for a later process to take up.
#include "core/process/process_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/client.h"
#include "client/resume_record.h"
#include "core/base/status_macros.h"
#include "core/io/formats.h"
#include "core/io/plane_map.h"
#include "proto/wire.h"

namespace stackproc::client {

namespace {

// A streamed result written as it arrives. Commit makes it whole (a temporary renamed into
// place); without it nothing is left (but a TIFF's file that Keep kept).
class OutputSink : public Client::StreamSink {
 public:
  // `record` completes the job's record with what this side chose (provenance.h).
  explicit OutputSink(std::function<void(core::Provenance&)> record) : record_(std::move(record)) {}

  absl::Status Commit() {
    if (written_ != depth_) {
      return absl::FailedPreconditionError(
          absl::StrCat(written_, " of ", depth_, " result slices arrived: nothing written"));
    }
    return Close();
  }

 protected:
  core::StackMetadata Recorded(const core::StackShape& shape, const core::StackMetadata& metadata) {
    depth_ = shape.depth;
    core::StackMetadata written = metadata;
    if (written.provenance && record_) record_(*written.provenance);
    return written;
  }
  virtual absl::Status Close() = 0;

  int64_t written_ = 0;

 private:
  std::function<void(core::Provenance&)> record_;
  int64_t depth_ = 0;
};

// Any output format, through a core sink: a TIFF file, a sequence of planes, an OME-Zarr store.
class CoreSink final : public OutputSink {
 public:
  CoreSink(std::unique_ptr<core::SliceSink> sink, std::function<void(core::Provenance&)> record)
      : OutputSink(std::move(record)), sink_(std::move(sink)) {}

  absl::Status Begin(const core::StackShape& shape, core::PixelType type,
                     const core::StackMetadata& metadata) override {
    return sink_->Open({shape, type, Recorded(shape, metadata)}, /*window_slices=*/1, nullptr);
  }
  absl::Status Slice(int64_t z, const uint8_t* data) override {
    STACKPROC_RETURN_IF_ERROR(sink_->Encode(z, data));
    STACKPROC_RETURN_IF_ERROR(sink_->Write(z, data));
    ++written_;
    return absl::OkStatus();
  }

 private:
  absl::Status Close() override { return sink_->Close(); }

  std::unique_ptr<core::SliceSink> sink_;
};

// Keeps a job's resume record up to date: written once the server has the job and the output's
// temporary file exists, again after each MiB of results, removed when the job ends. Best
// effort: a record that cannot be written is no longer kept (the job runs on).
class RecordKeeper {
 public:
  RecordKeeper(std::string folder, ResumeRecord record)
      : folder_(std::move(folder)), record_(std::move(record)) {}
  ~RecordKeeper() { Remove(); }

  // The server keeps the job `grace_seconds` for a resume (0: none, and no record is kept).
  void Started(const std::string& job_id, const std::string& resume_token, int64_t grace_seconds) {
    record_.job_id = job_id;
    record_.resume_token = resume_token;
    if (grace_seconds <= 0) folder_.clear();
  }
  // The output is at `at`, `results` bytes of results more than at the last call. Recorded after
  // every MiB of results (whatever the file's codec made of them): the server keeps the last
  // 16 MiB it sent, and a record must stay inside them.
  void Wrote(const core::TiffPageWriter::Progress& at, uint64_t results, bool now) {
    constexpr uint64_t kEvery = uint64_t{1} << 20;
    pending_ += results;
    if (folder_.empty() || record_.job_id.empty() || (!now && pending_ < kEvery)) return;
    pending_ = 0;
    record_.output_at = at;
    if (!WriteResumeRecord(folder_, record_).ok()) Remove();
  }
  // The record stays for a later process (the job may still be kept: nothing said otherwise).
  void Keep() { folder_.clear(); }
  void Remove() {
    if (!folder_.empty() && !record_.job_id.empty()) RemoveResumeRecord(folder_, record_.job_id);
    folder_.clear();
  }

 private:
  std::string folder_;
  ResumeRecord record_;
  uint64_t pending_ = 0;
};

// A TIFF output through TiffPageWriter, resumable: its progress goes to the keeper after each
// page, and a `from` (a resume record's) takes up an earlier process's temporary file.
class TiffResultSink final : public OutputSink {
 public:
  TiffResultSink(core::OutputTarget target, core::WriteOptions write,
                 std::function<void(core::Provenance&)> record, RecordKeeper& keeper,
                 std::optional<core::TiffPageWriter::Progress> from)
      : OutputSink(std::move(record)),
        target_(std::move(target)),
        write_(std::move(write)),
        keeper_(keeper),
        from_(std::move(from)) {}

  void Attached(const std::string& job_id, const std::string& resume_token,
                int64_t grace_seconds) override {
    keeper_.Started(job_id, resume_token, grace_seconds);
  }
  absl::Status Begin(const core::StackShape& shape, core::PixelType type,
                     const core::StackMetadata& metadata) override {
    core::StackMetadata written = Recorded(shape, metadata);
    if (from_) {
      STACKPROC_ASSIGN_OR_RETURN(writer_, core::TiffPageWriter::Resume(target_, *from_, shape, type,
                                                                       std::move(written), write_));
    } else {
      STACKPROC_ASSIGN_OR_RETURN(
          writer_, core::TiffPageWriter::Create(target_, shape, type, std::move(written), write_));
    }
    written_ = writer_->pages_written();
    keeper_.Wrote(writer_->progress(), 0, /*now=*/true);
    return absl::OkStatus();
  }
  absl::Status Slice(int64_t z, const uint8_t* data) override {
    (void)z;  // in order, as the writer's pages
    STACKPROC_RETURN_IF_ERROR(writer_->WritePage(data));
    ++written_;
    keeper_.Wrote(writer_->progress(), writer_->slice_bytes(), /*now=*/false);
    return absl::OkStatus();
  }
  bool begun() const { return writer_ != nullptr; }

 private:
  absl::Status Close() override { return writer_->Commit(); }

  const core::OutputTarget target_;
  const core::WriteOptions write_;
  RecordKeeper& keeper_;
  const std::optional<core::TiffPageWriter::Progress> from_;
  std::unique_ptr<core::TiffPageWriter> writer_;
};

// The input's size and modification time, to know it unchanged when a job is taken up. Only a
// file's: a folder's say nothing of a plane rewritten in it.
absl::StatusOr<std::pair<uint64_t, int64_t>> InputStamp(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": not a file"));
  }
  return std::pair<uint64_t, int64_t>(
      static_cast<uint64_t>(st.st_size),
      int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec);
}

// The record of the job `options` takes up, its options made the record's. FailedPrecondition
// for a record this process cannot take up: a record that never can be (another boot, a changed
// input, not a record) is removed, with the file it names.
absl::StatusOr<ResumeRecord> TakeUp(Client::ProcessOptions& options, const std::string& target) {
  absl::StatusOr<ResumeRecord> read = ReadResumeRecord(options.resume_folder, options.resume_job);
  if (read.status().code() == absl::StatusCode::kDataLoss) {
    RemoveResumeRecord(options.resume_folder, options.resume_job);
  }
  STACKPROC_ASSIGN_OR_RETURN(ResumeRecord record, std::move(read));
  const auto refuse = [&](absl::string_view why) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", record.job_id, " cannot be taken up here: ", why));
  };
  const auto lost = [&](absl::string_view why) {
    RemoveResumeLeftovers(options.resume_folder, record);
    return refuse(absl::StrCat(why, ": start it again"));
  };
  if (BeingWritten(record)) {
    return refuse(absl::StrCat(record.output, " is still being written by another process"));
  }
  if (record.host != HostName()) {
    return refuse(absl::StrCat("it was started on ", record.host, ": take it up there"));
  }
  if (record.server != target) {
    return refuse(absl::StrCat("it was sent to ", record.server, ", not to ", target,
                               " (use --server ", record.server, ")"));
  }
  if (record.boot != BootId()) {
    return lost(absl::StrCat("this machine restarted since, and what was written of ",
                             record.output, " may not have reached the disk"));
  }
  absl::StatusOr<std::pair<uint64_t, int64_t>> stamp = InputStamp(record.input);
  if (!stamp.ok() || *stamp != std::make_pair(record.input_bytes, record.input_mtime_ns)) {
    return lost(absl::StrCat(record.input, " changed since the job started"));
  }
  options.input_path = record.input;
  options.output_path = record.output;
  options.channels = record.channels;
  STACKPROC_RETURN_IF_ERROR(core::ParseCompressionText(record.compression, options.write));
  options.write.overwrite = record.overwrite;
  STACKPROC_ASSIGN_OR_RETURN(options.wire_compression,
                             wire::ParseWireCompression(record.wire_compression));
  return record;
}

}  // namespace

absl::StatusOr<v1::Job> Client::Process(const ProcessOptions& given) {
  ProcessOptions options = given;
  std::optional<ResumeRecord> taken;
  if (!options.resume_job.empty()) {
    STACKPROC_ASSIGN_OR_RETURN(taken, TakeUp(options, target_));
  }
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
  // The server ran the pipeline; the channels, the codec and the store's layout were chosen
  // here, so the record says so (and `rerun` makes this file).
  auto record = [&options, &input](core::Provenance& p) {
    p.channels = absl::StrJoin(options.channels, "+");
    // the input as it is (the server saw the chosen channels only), as a path job records it
    p.input = core::RecordedInput(p.input.name, core::PlaneMapSource::UnmappedInfo(*input));
    core::RecordWrite(options.output_path, options.write, p);
  };
  if (name.format != core::Format::kTiff) {
    STACKPROC_ASSIGN_OR_RETURN(std::unique_ptr<core::SliceSink> output,
                               core::OpenOutput(options.output_path, options.write));
    CoreSink sink(std::move(output), record);
    absl::StatusOr<v1::Job> job =
        ProcessStream(source, options.ops, sink, options.on_update, options.counts);
    if (!job.ok()) return job.status();
    if (absl::Status s = sink.Commit(); !s.ok()) return s;
    return job;
  }

  STACKPROC_ASSIGN_OR_RETURN(core::OutputTarget target, core::OutputTarget::ForPath(name.target));
  ResumeRecord base;
  std::string folder = options.resume_folder;
  if (taken) {
    base = *taken;
  } else if (!folder.empty()) {
    absl::StatusOr<std::pair<uint64_t, int64_t>> stamp = InputStamp(options.input_path);
    if (!stamp.ok()) {
      folder.clear();  // an input that is no one file (a folder, a pattern): not taken up later
    } else {
      base.server = target_;
      base.input = std::filesystem::absolute(options.input_path).lexically_normal();
      base.channels = options.channels;
      std::tie(base.input_bytes, base.input_mtime_ns) = *stamp;
      base.output = std::filesystem::absolute(name.target).lexically_normal();
      base.compression = core::CompressionText(
          options.write.compression, options.write.compression_level, options.write.predictor);
      base.overwrite = options.write.overwrite;
      base.wire_compression = wire::WireCompressionName(source.wire_compression);
      base.boot = BootId();
      base.host = HostName();
    }
  }
  RecordKeeper keeper(folder, base);
  TiffResultSink sink(target, options.write, record, keeper,
                      taken ? std::optional(taken->output_at) : std::nullopt);
  ResumePoint point;
  if (taken) point = {taken->job_id, taken->resume_token, taken->output_at.pages};
  absl::StatusOr<v1::Job> job = ProcessStream(source, options.ops, sink, options.on_update,
                                              options.counts, taken ? &point : nullptr);
  if (!job.ok()) {
    if (taken && job.status().code() == absl::StatusCode::kUnavailable && !sink.begun()) {
      keeper.Keep();     // the server did not answer: it may still keep the job for another try
    } else if (taken) {  // the job cannot go on (results no longer held, ...): let it go
      CancelStreamedJob(taken->job_id);
      ::unlinkat(target.dir(), taken->output_at.temp.c_str(), 0);
    }
    return job.status();
  }
  if (absl::Status s = sink.Commit(); !s.ok()) return s;
  return job;
}

}  // namespace stackproc::client
