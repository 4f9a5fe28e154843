#include "client/client.h"

#include <grpcpp/generic/generic_stub.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/result_header.h"
#include "core/base/status_macros.h"
#include "core/tools/cli_args.h"
#include "proto/convert.h"

namespace stackproc::client {

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
      return absl::InvalidArgumentError("--client-cert and --client-key need --tls-ca");
    }
    return std::unique_ptr<Client>(new Client(target, options.token));
  }
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError("--client-cert and --client-key go together");
  }
  grpc::SslCredentialsOptions ssl;
  absl::StatusOr<std::string> ca = core::ReadPemFile(options.tls_ca, "tls-ca");
  if (!ca.ok()) return ca.status();
  ssl.pem_root_certs = *std::move(ca);
  if (!options.tls_cert.empty()) {
    absl::StatusOr<std::string> cert = core::ReadPemFile(options.tls_cert, "client-cert");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = core::ReadPemFile(options.tls_key, "client-key");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  return std::unique_ptr<Client>(
      new Client(grpc::CreateChannel(target, grpc::SslCredentials(ssl)), options.token));
}

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

absl::StatusOr<v1::GetServerInfoResponse> Client::ServerInfo() {
  grpc::ClientContext context;
  Prepare(context);
  v1::GetServerInfoResponse response;
  grpc::Status status = stub_->GetServerInfo(&context, v1::GetServerInfoRequest(), &response);
  if (!status.ok()) return ToAbslStatus(status);
  return response;
}

absl::StatusOr<Client::PreviewResult> Client::Preview(const v1::PreviewRequest& request) {
  grpc::ClientContext context;
  Prepare(context);
  CallGuard guard(calls_, context);
  auto reader = stub_->Preview(&context, request);
  PreviewResult result;
  v1::PreviewResponse message;
  while (reader->Read(&message)) {
    switch (message.payload_case()) {
      case v1::PreviewResponse::kInfo:
        result.info = message.info();
        break;
      case v1::PreviewResponse::kPng:
        result.png += message.png();
        break;
      case v1::PreviewResponse::kStack: {
        STACKPROC_ASSIGN_OR_RETURN(core::PixelType type,
                                   convert::FromProto(message.stack().pixel_type()));
        STACKPROC_ASSIGN_OR_RETURN(
            result.stacks.emplace_back(),
            core::Stack::Allocate(convert::FromProto(message.stack().shape()), type));
        break;
      }
      case v1::PreviewResponse::kChunk: {
        const v1::SliceChunk& c = message.chunk();
        if (result.stacks.empty() || c.slice() < 0 || c.slice() >= result.stacks.back().depth() ||
            c.offset() < 0 ||
            static_cast<size_t>(c.offset()) + c.data().size() >
                result.stacks.back().slice_bytes()) {
          return absl::DataLossError("a preview chunk that fits no announced stack");
        }
        std::memcpy(result.stacks.back().slice_data(c.slice()) + c.offset(), c.data().data(),
                    c.data().size());
        break;
      }
      default:
        break;
    }
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return ToAbslStatus(status);
  return result;
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
        STACKPROC_ASSIGN_OR_RETURN(core::StackInfo info, ReadResultHeader(message.header()));
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
