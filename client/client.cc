#include "client/client.h"

#include <grpcpp/generic/generic_stub.h>

#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/raw_bidi_call.h"
#include "core/base/status_macros.h"
#include "core/exec/engine.h"
#include "core/exec/formats.h"
#include "core/tiff/tiff_reader.h"
#include "core/tools/cli_args.h"
#include "proto/convert.h"
#include "proto/wire.h"

namespace stackproc::client {
namespace {

// A pixel type this client does not know is refused: read as another type, the bytes would be
// silently wrong.
absl::StatusOr<core::PixelType> ServerPixelType(v1::PixelType type) {
  absl::StatusOr<core::PixelType> known = convert::FromProto(type);
  if (known.ok()) return known;
  return absl::DataLossError(absl::StrCat("the server sent a result whose ",
                                          known.status().message(),
                                          ": this client does not know it (update it)"));
}

// What a result stream's header announces.
absl::StatusOr<core::StackInfo> ReadHeader(const v1::ResultHeader& header) {
  core::StackInfo info;
  info.shape = convert::FromProto(header.shape());
  STACKPROC_ASSIGN_OR_RETURN(info.type, ServerPixelType(header.pixel_type()));
  absl::StatusOr<core::StackMetadata> metadata = convert::MetadataFromProto(header);
  if (!metadata.ok()) return absl::DataLossError(metadata.status().message());
  info.metadata = *std::move(metadata);
  return info;
}

}  // namespace

absl::Status ToAbslStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::StatusOr<v1::OpSpec> ParseOpText(const std::string& text) {
  STACKPROC_ASSIGN_OR_RETURN(core::OpSpec op, core::ParseOpSpec(text));
  return convert::ToProto(op);
}

Client::Client(const std::string& target, std::string token)
    : Client(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()), std::move(token)) {}

Client::Client(std::shared_ptr<grpc::Channel> channel, std::string token)
    : token_(std::move(token)),
      channel_(std::move(channel)),
      stub_(v1::StackProcessor::NewStub(channel_)) {}

absl::StatusOr<std::unique_ptr<Client>> Client::Create(const std::string& target,
                                                       const ClientOptions& options) {
  if (options.tls_ca.empty()) {
    if (!options.tls_cert.empty() || !options.tls_key.empty()) {
      return absl::InvalidArgumentError("--tls-cert and --tls-key need --tls-ca");
    }
    return std::unique_ptr<Client>(new Client(target, options.token));
  }
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  grpc::SslCredentialsOptions ssl;
  absl::StatusOr<std::string> ca = core::ReadPemFile(options.tls_ca, "tls-ca");
  if (!ca.ok()) return ca.status();
  ssl.pem_root_certs = *std::move(ca);
  if (!options.tls_cert.empty()) {
    absl::StatusOr<std::string> cert = core::ReadPemFile(options.tls_cert, "tls-cert");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = core::ReadPemFile(options.tls_key, "tls-key");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  return std::unique_ptr<Client>(
      new Client(grpc::CreateChannel(target, grpc::SslCredentials(ssl)), options.token));
}

// While alive, CancelCalls cancels the call of `context` (at once, if it came first).
class Client::CallGuard {
 public:
  CallGuard(Calls& calls, grpc::ClientContext& context) : calls_(calls), context_(context) {
    std::lock_guard lock(calls_.mutex);
    if (calls_.cancelled) context_.TryCancel();
    calls_.active.insert(&context_);
  }
  ~CallGuard() {
    std::lock_guard lock(calls_.mutex);
    calls_.active.erase(&context_);
  }

 private:
  Calls& calls_;
  grpc::ClientContext& context_;
};

void Client::CancelCalls() {
  std::lock_guard lock(calls_.mutex);
  calls_.cancelled = true;
  for (grpc::ClientContext* context : calls_.active) context->TryCancel();
}

void Client::Prepare(grpc::ClientContext& context) const {
  if (!token_.empty()) context.AddMetadata("authorization", absl::StrCat("Bearer ", token_));
}

absl::StatusOr<v1::Job> Client::Submit(const v1::SubmitJobRequest& request) {
  grpc::ClientContext context;
  Prepare(context);
  v1::SubmitJobResponse response;
  grpc::Status status = stub_->SubmitJob(&context, request, &response);
  if (!status.ok()) return ToAbslStatus(status);
  return response.job();
}

absl::StatusOr<v1::Job> Client::Get(const std::string& job_id) {
  grpc::ClientContext context;
  Prepare(context);
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::GetJobResponse response;
  grpc::Status status = stub_->GetJob(&context, request, &response);
  if (!status.ok()) return ToAbslStatus(status);
  return response.job();
}

absl::StatusOr<std::vector<v1::Job>> Client::List() {
  grpc::ClientContext context;
  Prepare(context);
  v1::ListJobsResponse response;
  grpc::Status status = stub_->ListJobs(&context, v1::ListJobsRequest(), &response);
  if (!status.ok()) return ToAbslStatus(status);
  return std::vector<v1::Job>(response.jobs().begin(), response.jobs().end());
}

absl::StatusOr<v1::Job> Client::Cancel(const std::string& job_id) {
  grpc::ClientContext context;
  Prepare(context);
  v1::CancelJobRequest request;
  request.set_job_id(job_id);
  v1::CancelJobResponse response;
  grpc::Status status = stub_->CancelJob(&context, request, &response);
  if (!status.ok()) return ToAbslStatus(status);
  return response.job();
}

absl::Status Client::Delete(const std::string& job_id) {
  grpc::ClientContext context;
  Prepare(context);
  v1::DeleteJobRequest request;
  request.set_job_id(job_id);
  v1::DeleteJobResponse response;
  return ToAbslStatus(stub_->DeleteJob(&context, request, &response));
}

absl::StatusOr<v1::Job> Client::Resume(const std::string& job_id) {
  grpc::ClientContext context;
  Prepare(context);
  v1::ResumeJobRequest request;
  request.set_job_id(job_id);
  v1::ResumeJobResponse response;
  grpc::Status status = stub_->ResumeJob(&context, request, &response);
  if (!status.ok()) return ToAbslStatus(status);
  return response.job();
}

absl::StatusOr<std::vector<v1::OperationDescriptor>> Client::ListOperations() {
  grpc::ClientContext context;
  Prepare(context);
  v1::ListOperationsResponse response;
  grpc::Status status = stub_->ListOperations(&context, v1::ListOperationsRequest(), &response);
  if (!status.ok()) return ToAbslStatus(status);
  return std::vector<v1::OperationDescriptor>(response.operations().begin(),
                                              response.operations().end());
}

absl::StatusOr<v1::Job> Client::Watch(const std::string& job_id,
                                      const std::function<void(const v1::Job&)>& on_update,
                                      int reattach) {
  v1::WatchJobRequest request;
  request.set_job_id(job_id);
  v1::Job last;
  bool seen = false;
  for (int attempt = 0;; ++attempt) {
    grpc::ClientContext context;
    Prepare(context);
    CallGuard guard(calls_, context);
    auto reader = stub_->WatchJob(&context, request);
    v1::WatchJobResponse event;
    while (reader->Read(&event)) {
      last = event.job();
      seen = true;
      if (on_update) on_update(last);
    }
    grpc::Status status = reader->Finish();
    const bool final_state = seen && last.state() >= v1::JOB_STATE_SUCCEEDED;
    if (status.ok() && final_state) return last;
    if (status.ok() || status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      if (attempt < reattach) continue;  // the stream broke: re-attach
    }
    if (!status.ok()) return ToAbslStatus(status);
    return absl::UnavailableError(absl::StrCat("watch of job ", job_id, " ended early"));
  }
}

absl::StatusOr<core::Stack> Client::Download(const std::string& job_id) {
  core::Stack stack;
  int64_t slice = 0, offset = 0;
  for (int attempt = 0; attempt < 4; ++attempt) {
    grpc::ClientContext context;
    Prepare(context);
    CallGuard guard(calls_, context);
    v1::ReadResultRequest request;
    request.set_job_id(job_id);
    request.set_start_slice(slice);
    request.set_start_offset(offset);
    auto reader = stub_->ReadResult(&context, request);
    v1::ReadResultResponse message;
    while (reader->Read(&message)) {
      if (message.has_header()) {
        if (!stack.empty()) continue;  // a resumed stream repeats the header
        STACKPROC_ASSIGN_OR_RETURN(core::StackInfo info, ReadHeader(message.header()));
        STACKPROC_ASSIGN_OR_RETURN(stack, core::Stack::Allocate(info.shape, info.type));
        stack.metadata() = std::move(info.metadata);
        continue;
      }
      const v1::SliceChunk& c = message.chunk();
      if (stack.empty() || c.slice() < 0 || c.slice() >= stack.depth() || c.offset() < 0 ||
          static_cast<size_t>(c.offset()) + c.data().size() > stack.slice_bytes()) {
        return absl::DataLossError(absl::StrCat("result chunk slice ", c.slice(), " offset ",
                                                c.offset(), " does not fit the announced stack"));
      }
      std::memcpy(stack.slice_data(c.slice()) + c.offset(), c.data().data(), c.data().size());
      slice = c.slice();
      offset = c.offset() + static_cast<int64_t>(c.data().size());
    }
    grpc::Status status = reader->Finish();
    if (status.ok()) {
      if (stack.empty()) return absl::DataLossError("the result stream had no header");
      return stack;
    }
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE) return ToAbslStatus(status);
  }
  return absl::UnavailableError(absl::StrCat("download of job ", job_id, " kept breaking"));
}

namespace {

// Writes a streamed result as it arrives through a core sink: a TIFF file, or a sequence of
// planes. Commit makes it whole (a temporary renamed into place); without it nothing is left.
class CoreSink final : public Client::StreamSink {
 public:
  explicit CoreSink(std::unique_ptr<core::SliceSink> sink) : sink_(std::move(sink)) {}

  absl::Status Begin(const core::StackShape& shape, core::PixelType type,
                     const core::StackMetadata& metadata) override {
    depth_ = shape.depth;
    return sink_->Open({shape, type, metadata}, /*window_slices=*/1, nullptr);
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
      STACKPROC_ASSIGN_OR_RETURN(core::StackInfo info, ReadHeader(message.result_header()));
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
  static const core::LocalFiles kLocal;  // any format core reads
  STACKPROC_ASSIGN_OR_RETURN(std::unique_ptr<core::SliceSource> input,
                             core::OpenInput(kLocal, options.input_path));
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
  source.read_slice = [&](int64_t z, uint8_t* dst) { return input->Read(z, dst); };
  STACKPROC_ASSIGN_OR_RETURN(std::unique_ptr<core::SliceSink> output,
                             core::OpenOutput(options.output_path, options.write));
  CoreSink sink(std::move(output));
  absl::StatusOr<v1::Job> job = ProcessStream(source, options.ops, sink, options.on_update);
  if (!job.ok()) return job.status();
  if (absl::Status s = sink.Commit(); !s.ok()) return s;
  return job;
}

absl::StatusOr<bool> Client::Healthy() {
  // grpc.health.v1.Health/Check with an empty HealthCheckRequest (service ""). The response is
  // one enum field: tag 0x08, then 1 for SERVING.
  grpc::GenericStub generic(channel_);
  grpc::ClientContext context;
  Prepare(context);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::ByteBuffer request, response;
  grpc::Slice empty;
  request = grpc::ByteBuffer(&empty, 1);
  grpc::Status status;
  std::mutex mutex;
  std::condition_variable done_cv;
  bool done = false;
  generic.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                    &response, [&](grpc::Status s) {
                      std::lock_guard lock(mutex);
                      status = std::move(s);
                      done = true;
                      done_cv.notify_one();
                    });
  std::unique_lock lock(mutex);
  done_cv.wait(lock, [&] { return done; });
  if (!status.ok()) return ToAbslStatus(status);
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return absl::DataLossError("unreadable health response");
  std::string bytes;
  for (const grpc::Slice& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return bytes.size() == 2 && bytes[0] == 0x08 && bytes[1] == 0x01;
}

}  // namespace stackproc::client
