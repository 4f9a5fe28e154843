// Client::ProcessStream and Client::Process: a streamed job's upload beside its download, and
// the result written locally through a core sink as it arrives.
#include <grpcpp/generic/generic_stub.h>

#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/client.h"
#include "client/raw_bidi_call.h"
#include "client/result_header.h"
#include "core/base/status_macros.h"
#include "core/exec/engine.h"
#include "core/io/formats.h"
#include "core/process/process_file.h"
#include "proto/convert.h"
#include "proto/wire.h"

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

namespace {

// The upload of a streamed job: the header, then each slice in chunks. Each slice is read into a
// buffer of its own; its chunks are views of it that gRPC sends without a copy, and it is freed
// when gRPC has sent the last of them. Writes block while the server's window is full. Returns
// the source's error (the call is then cancelled); a call that ended is the call's to report.
absl::Status Upload(RawBidiCall& call, grpc::ClientContext& context,
                    const v1::ProcessStreamRequest& header, const Client::StreamSource& source,
                    size_t slice_bytes) {
  if (!call.Write(wire::Serialize(header))) {
    call.StopWriting();
    return absl::OkStatus();
  }
  for (int64_t z = 0; z < source.shape.depth; ++z) {
    grpc::Slice slice(slice_bytes);
    if (absl::Status s = source.read_slice(z, const_cast<uint8_t*>(slice.begin())); !s.ok()) {
      context.TryCancel();
      call.StopWriting();
      return s;
    }
    for (size_t offset = 0; offset < slice.size(); offset += wire::kChunkBytes) {
      const size_t n = std::min(wire::kChunkBytes, slice.size() - offset);
      if (!call.Write(wire::ChunkMessage(v1::ProcessStreamRequest::kChunkFieldNumber, z,
                                         static_cast<int64_t>(offset),
                                         slice.sub(offset, offset + n)))) {
        call.StopWriting();  // the call ended: its status says why
        return absl::OkStatus();
      }
    }
  }
  call.WritesDone();
  return absl::OkStatus();
}

// The download of a streamed job: job updates, the result header, and result chunks assembled
// into whole slices for the sink, in order.
class ResultAssembler {
 public:
  ResultAssembler(Client::StreamSink& sink, const std::function<void(const v1::Job&)>& on_update)
      : sink_(sink), on_update_(on_update) {}

  absl::Status Take(const grpc::ByteBuffer& buffer) {
    // Chunks, nearly every message, are copied from the received bytes straight into place.
    if (std::optional<wire::ChunkView> chunk =
            wire::ChunkView::Read(buffer, v1::ProcessStreamResponse::kChunkFieldNumber)) {
      return TakeChunk(chunk->slice(), chunk->offset(), chunk->size(),
                       [&](uint8_t* out) { chunk->CopyTo(out); });
    }
    v1::ProcessStreamResponse message;
    if (absl::Status s = wire::Parse(buffer, message, "ProcessStreamResponse"); !s.ok()) {
      return absl::DataLossError(s.message());
    }
    if (message.has_job()) {
      last_ = message.job();
      if (on_update_) on_update_(last_);
      return absl::OkStatus();
    }
    if (message.has_result_header()) {
      if (begun_) return absl::DataLossError("a second result header");
      STACKPROC_ASSIGN_OR_RETURN(core::StackInfo info, ReadResultHeader(message.result_header()));
      shape_ = info.shape;
      STACKPROC_ASSIGN_OR_RETURN(size_t bytes, core::SliceBytes(shape_, info.type));
      slice_.resize(bytes);
      begun_ = true;
      return sink_.Begin(shape_, info.type, info.metadata);
    }
    if (!message.has_chunk()) return absl::OkStatus();
    const v1::SliceChunk& c = message.chunk();
    return TakeChunk(c.slice(), c.offset(), c.data().size(),
                     [&](uint8_t* out) { std::memcpy(out, c.data().data(), c.data().size()); });
  }

  // The finished job, once the call ended well: DataLoss unless the job succeeded and every
  // result slice arrived.
  absl::StatusOr<v1::Job> Result() const {
    if (last_.state() != v1::JOB_STATE_SUCCEEDED || !begun_ || z_ != shape_.depth) {
      return absl::DataLossError(absl::StrCat("the stream ended after ", z_, " of ", shape_.depth,
                                              " result slices without the job's success"));
    }
    return last_;
  }

 private:
  absl::Status TakeChunk(int64_t slice, int64_t offset, size_t n,
                         const std::function<void(uint8_t*)>& copy_to) {
    if (!begun_ || slice != z_ || offset != static_cast<int64_t>(filled_) ||
        filled_ + n > slice_.size()) {
      return absl::DataLossError(absl::StrCat("result chunk at slice ", slice, " offset ", offset,
                                              " is not the one expected"));
    }
    copy_to(slice_.data() + filled_);
    filled_ += n;
    if (filled_ < slice_.size()) return absl::OkStatus();
    filled_ = 0;
    return sink_.Slice(z_++, slice_.data());
  }

  Client::StreamSink& sink_;
  const std::function<void(const v1::Job&)>& on_update_;
  v1::Job last_;
  std::vector<uint8_t> slice_;
  core::StackShape shape_;
  int64_t z_ = 0;
  size_t filled_ = 0;
  bool begun_ = false;
};

}  // namespace

absl::StatusOr<v1::Job> Client::ProcessStream(
    const StreamSource& source, const std::vector<v1::OpSpec>& ops, StreamSink& sink,
    const std::function<void(const v1::Job&)>& on_update) {
  STACKPROC_ASSIGN_OR_RETURN(size_t in_bytes, core::SliceBytes(source.shape, source.type));
  v1::ProcessStreamRequest header_message;
  v1::StreamHeader* header = header_message.mutable_header();
  convert::ToProto(source.shape, header->mutable_shape());
  header->set_pixel_type(convert::ToProto(source.type));
  for (const v1::OpSpec& op : ops) *header->add_ops() = op;
  convert::MetadataToProto(source.metadata, header);
  header->set_name(source.name);

  grpc::ClientContext context;
  Prepare(context);
  CallGuard guard(calls_, context);
  grpc::GenericStub generic(channel_);
  RawBidiCall call(generic, context,
                   absl::StrCat("/", v1::StackProcessor::service_full_name(), "/ProcessStream"));
  // The upload runs beside the download: the server processes slices as they arrive and sends
  // results while later slices are still on their way.
  absl::Status upload_status;
  std::thread uploader(
      [&] { upload_status = Upload(call, context, header_message, source, in_bytes); });
  ResultAssembler results(sink, on_update);
  absl::Status local_status;
  grpc::ByteBuffer buffer;
  while (call.Read(buffer)) {
    local_status = results.Take(buffer);
    if (!local_status.ok()) {
      context.TryCancel();
      break;
    }
  }
  uploader.join();
  grpc::Status status = call.Finish();
  if (!upload_status.ok()) return upload_status;
  if (!local_status.ok()) return local_status;
  if (!status.ok()) return ToAbslStatus(status);
  return results.Result();
}

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
  STACKPROC_ASSIGN_OR_RETURN(std::unique_ptr<core::SliceSink> output,
                             core::OpenOutput(options.output_path, options.write));
  // The server ran the pipeline; the channels, the codec and the store's layout were chosen
  // here, so the record says so (and `rerun` makes this file).
  CoreSink sink(std::move(output), [&options](core::Provenance& p) {
    p.channels = absl::StrJoin(options.channels, "+");
    core::RecordWrite(options.output_path, options.write, p);
  });
  absl::StatusOr<v1::Job> job = ProcessStream(source, options.ops, sink, options.on_update);
  if (!job.ok()) return job.status();
  if (absl::Status s = sink.Commit(); !s.ok()) return s;
  return job;
}

}  // namespace stackproc::client
