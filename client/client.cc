#include "client/client.h"

#include <grpcpp/generic/generic_stub.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/result_header.h"
#include "core/base/status_macros.h"
#include "core/tools/cli_args.h"
#include "proto/convert.h"
#include "proto/wire.h"

namespace stackproc::client {

absl::Status ToAbslStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::StatusOr<v1::OpSpec> ParseOpText(const std::string& text) {
  STACKPROC_ASSIGN_OR_RETURN(core::OpSpec op, core::ParseOpSpec(text));
  return convert::ToProto(op);
}

absl::StatusOr<v1::SubmitJobRequest> PathJobRequest(const std::string& input,
                                                    const std::vector<std::string>& ops,
                                                    const std::string& output, bool overwrite) {
  v1::SubmitJobRequest request;
  v1::JobSpec* spec = request.mutable_spec();
  spec->set_input_path(input);
  for (const std::string& op : ops) {
    STACKPROC_ASSIGN_OR_RETURN(*spec->add_ops(), ParseOpText(op));
  }
  if (output.empty()) {
    spec->mutable_output()->mutable_in_memory();
  } else {
    spec->mutable_output()->set_path(output);
    spec->mutable_output()->set_overwrite(overwrite);
  }
  return request;
}

namespace {

// The channel's arguments: keepalive as proto/wire.h says.
grpc::ChannelArguments ChannelArgs() {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, wire::kKeepaliveMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, wire::kKeepaliveTimeoutMs);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);  // a long computation sends no data
  return args;
}

}  // namespace

Client::Client(const std::string& target, std::string token)
    : Client(target,
             grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), ChannelArgs()),
             std::move(token)) {}

Client::Client(std::string target, std::shared_ptr<grpc::Channel> channel, std::string token)
    : target_(std::move(target)),
      token_(std::move(token)),
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
  return std::unique_ptr<Client>(new Client(
      target, grpc::CreateCustomChannel(target, grpc::SslCredentials(ssl), ChannelArgs()),
      options.token));
}

void Client::CancelCalls() {
  std::vector<std::string> streamed;
  {
    // A streamed job whose id has not come yet (a Ctrl-C in its first moments) is waited for a
    // moment: left to its call's end, the server would keep it for a resume.
    std::unique_lock lock(calls_.mutex);
    calls_.changed.wait_for(lock, std::chrono::seconds(2),
                            [&] { return calls_.job_unknown.empty(); });
    for (const auto& [context, job] : calls_.streamed) streamed.push_back(job);
  }
  for (const std::string& job : streamed) CancelStreamedJob(job);
  std::lock_guard lock(calls_.mutex);
  calls_.cancelled = true;
  for (grpc::ClientContext* context : calls_.active) context->TryCancel();
  calls_.changed.notify_all();  // a resume's wait
}

void Client::CancelStreamedJob(const std::string& job_id) {
  if (job_id.empty()) return;
  grpc::ClientContext context;  // a moment at most: the call ends anyway
  Prepare(context);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  v1::CancelJobRequest request;
  request.set_job_id(job_id);
  v1::CancelJobResponse response;
  (void)stub_->CancelJob(&context, request, &response);
}

bool Client::WaitUnlessCancelled(absl::Duration wait) {
  std::unique_lock lock(calls_.mutex);
  calls_.changed.wait_for(lock, absl::ToChronoNanoseconds(wait), [&] { return calls_.cancelled; });
  return calls_.cancelled;
}

void Client::Prepare(grpc::ClientContext& context) const {
  if (!token_.empty()) context.AddMetadata("authorization", absl::StrCat("Bearer ", token_));
}

template <typename Response, typename Request, typename Method>
absl::StatusOr<Response> Client::Unary(Method method, const Request& request) {
  grpc::ClientContext context;
  Prepare(context);
  Response response;
  grpc::Status status = ((*stub_).*method)(&context, request, &response);
  if (!status.ok()) return ToAbslStatus(status);
  return response;
}

namespace {

// A request naming job `id`.
template <typename Request>
Request ForJob(const std::string& id) {
  Request request;
  request.set_job_id(id);
  return request;
}

}  // namespace

absl::StatusOr<v1::Job> Client::Submit(const v1::SubmitJobRequest& request) {
  STACKPROC_ASSIGN_OR_RETURN(
      auto response, Unary<v1::SubmitJobResponse>(&v1::StackProcessor::Stub::SubmitJob, request));
  return response.job();
}

absl::StatusOr<v1::Job> Client::Get(const std::string& job_id) {
  STACKPROC_ASSIGN_OR_RETURN(auto response,
                             Unary<v1::GetJobResponse>(&v1::StackProcessor::Stub::GetJob,
                                                       ForJob<v1::GetJobRequest>(job_id)));
  return response.job();
}

absl::StatusOr<std::vector<v1::Job>> Client::List() {
  STACKPROC_ASSIGN_OR_RETURN(
      auto response,
      Unary<v1::ListJobsResponse>(&v1::StackProcessor::Stub::ListJobs, v1::ListJobsRequest()));
  return std::vector<v1::Job>(response.jobs().begin(), response.jobs().end());
}

absl::StatusOr<v1::Job> Client::Cancel(const std::string& job_id) {
  STACKPROC_ASSIGN_OR_RETURN(auto response,
                             Unary<v1::CancelJobResponse>(&v1::StackProcessor::Stub::CancelJob,
                                                          ForJob<v1::CancelJobRequest>(job_id)));
  return response.job();
}

absl::Status Client::Delete(const std::string& job_id) {
  return Unary<v1::DeleteJobResponse>(&v1::StackProcessor::Stub::DeleteJob,
                                      ForJob<v1::DeleteJobRequest>(job_id))
      .status();
}

absl::StatusOr<v1::Job> Client::Resume(const std::string& job_id) {
  STACKPROC_ASSIGN_OR_RETURN(auto response,
                             Unary<v1::ResumeJobResponse>(&v1::StackProcessor::Stub::ResumeJob,
                                                          ForJob<v1::ResumeJobRequest>(job_id)));
  return response.job();
}

absl::StatusOr<std::vector<v1::OperationDescriptor>> Client::ListOperations() {
  STACKPROC_ASSIGN_OR_RETURN(
      auto response, Unary<v1::ListOperationsResponse>(&v1::StackProcessor::Stub::ListOperations,
                                                       v1::ListOperationsRequest()));
  return std::vector<v1::OperationDescriptor>(response.operations().begin(),
                                              response.operations().end());
}

bool IsLocalTarget(std::string host) {
  for (const char* scheme : {"dns:///", "dns:", "ipv4:", "ipv6:"}) {
    if (absl::StartsWith(host, scheme)) host.erase(0, std::strlen(scheme));
  }
  if (absl::StartsWith(host, "unix:") || absl::StartsWith(host, "unix-abstract:")) return true;
  if (absl::StartsWith(host, "[")) {
    host.erase(host.find(']') + 1);  // "[::1]:50051" -> "[::1]"
  } else if (std::count(host.begin(), host.end(), ':') == 1) {
    host.erase(host.find(':'));  // "127.0.0.1:50051" -> "127.0.0.1"
  }
  const bool loopback_v4 =
      absl::StartsWith(host, "127.") && host.find_first_not_of("0123456789.") == std::string::npos;
  return loopback_v4 || host == "localhost" || host == "[::1]" || host == "::1";
}

absl::StatusOr<v1::WireCompression> Client::WireCompressionFor(
    std::optional<v1::WireCompression> asked) {
  if (asked == v1::WIRE_COMPRESSION_NONE || asked == v1::WIRE_COMPRESSION_UNSPECIFIED) {
    return v1::WIRE_COMPRESSION_NONE;
  }
  if (!asked && IsLocalTarget(target_)) return v1::WIRE_COMPRESSION_NONE;
  STACKPROC_ASSIGN_OR_RETURN(v1::GetServerInfoResponse info, ServerInfo());
  const v1::WireCompression wanted = asked.value_or(v1::WIRE_COMPRESSION_LZ4);
  for (int taken : info.wire_compressions()) {
    if (taken == wanted) return wanted;
  }
  if (!asked) return v1::WIRE_COMPRESSION_NONE;  // an older server: as before
  return absl::InvalidArgumentError(absl::StrCat("the server (stackprocd ", info.version(),
                                                 ") takes no ", wire::WireCompressionName(wanted),
                                                 " wire compression"));
}

absl::StatusOr<v1::GetServerInfoResponse> Client::ServerInfo() {
  return Unary<v1::GetServerInfoResponse>(&v1::StackProcessor::Stub::GetServerInfo,
                                          v1::GetServerInfoRequest());
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
