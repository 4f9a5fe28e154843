#include "server/api/service.h"

#include "absl/strings/str_cat.h"
#include "core/io/formats.h"
#include "core/pipeline/operation_registry.h"
#include "proto/wire.h"
#include "server/api/preview_call.h"
#include "server/api/process_stream.h"
#include "server/api/proto_convert.h"
#include "server/api/stream_reactors.h"

namespace stackproc::server {
namespace {

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* context, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// A stream that ends at once with `status`.
template <typename Response>
class FailedStream final : public grpc::ServerWriteReactor<Response> {
 public:
  explicit FailedStream(const absl::Status& status) { this->Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

// A bidirectional stream that ends at once with `status`.
class FailedBidi final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit FailedBidi(const absl::Status& status) { Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerUnaryReactor* StackProcessorService::OnWorkPool(grpc::CallbackServerContext* context,
                                                            std::function<absl::Status()> work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // The request and response live until the reactor is finished.
  disk_work_.Run([reactor, work = std::move(work)] { reactor->Finish(ToGrpcStatus(work())); });
  return reactor;
}

grpc::ServerUnaryReactor* StackProcessorService::SubmitJob(grpc::CallbackServerContext* context,
                                                           const v1::SubmitJobRequest* request,
                                                           v1::SubmitJobResponse* response) {
  absl::StatusOr<Caller> caller = Authenticate(context);
  if (!caller.ok()) return Done(context, caller.status());
  absl::StatusOr<JobSpec> spec = FromProto(request->spec());
  if (!spec.ok()) return Done(context, spec.status());
  spec->owner = caller->name;
  return OnWorkPool(context, [this, spec = *std::move(spec), request, response] {
    absl::StatusOr<std::shared_ptr<Job>> job = jobs_.Submit(spec, request->request_id());
    if (job.ok()) ToProto((*job)->Snapshot(), response->mutable_job());
    return job.status();
  });
}

grpc::ServerUnaryReactor* StackProcessorService::GetJob(grpc::CallbackServerContext* context,
                                                        const v1::GetJobRequest* request,
                                                        v1::GetJobResponse* response) {
  absl::StatusOr<Caller> caller = Authenticate(context);
  if (!caller.ok()) return Done(context, caller.status());
  absl::StatusOr<std::shared_ptr<Job>> job = jobs_.Get(request->job_id(), *caller);
  if (job.ok()) ToProto((*job)->Snapshot(), response->mutable_job());
  return Done(context, job.status());
}

grpc::ServerUnaryReactor* StackProcessorService::ListJobs(grpc::CallbackServerContext* context,
                                                          const v1::ListJobsRequest*,
                                                          v1::ListJobsResponse* response) {
  absl::StatusOr<Caller> caller = Authenticate(context);
  if (!caller.ok()) return Done(context, caller.status());
  for (const std::shared_ptr<Job>& job : jobs_.List()) {
    const JobSnapshot snapshot = job->Snapshot();
    if (caller->Sees(snapshot.spec.owner)) ToProto(snapshot, response->add_jobs());
  }
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* StackProcessorService::CancelJob(grpc::CallbackServerContext* context,
                                                           const v1::CancelJobRequest* request,
                                                           v1::CancelJobResponse* response) {
  absl::StatusOr<Caller> caller = Authenticate(context);
  if (!caller.ok()) return Done(context, caller.status());
  if (absl::Status s = jobs_.Get(request->job_id(), *caller).status(); !s.ok())
    return Done(context, s);
  absl::StatusOr<std::shared_ptr<Job>> job = jobs_.Cancel(request->job_id());
  if (job.ok()) ToProto((*job)->Snapshot(), response->mutable_job());
  return Done(context, job.status());
}

grpc::ServerUnaryReactor* StackProcessorService::DeleteJob(grpc::CallbackServerContext* context,
                                                           const v1::DeleteJobRequest* request,
                                                           v1::DeleteJobResponse*) {
  absl::StatusOr<Caller> caller = Authenticate(context);
  if (!caller.ok()) return Done(context, caller.status());
  if (absl::Status s = jobs_.Get(request->job_id(), *caller).status(); !s.ok())
    return Done(context, s);
  return Done(context, jobs_.Delete(request->job_id()));
}

grpc::ServerUnaryReactor* StackProcessorService::ResumeJob(grpc::CallbackServerContext* context,
                                                           const v1::ResumeJobRequest* request,
                                                           v1::ResumeJobResponse* response) {
  absl::StatusOr<Caller> caller = Authenticate(context);
  if (!caller.ok()) return Done(context, caller.status());
  if (absl::Status s = jobs_.Get(request->job_id(), *caller).status(); !s.ok())
    return Done(context, s);
  return OnWorkPool(context, [this, request, response] {
    absl::StatusOr<std::shared_ptr<Job>> job = jobs_.Resume(request->job_id());
    if (job.ok()) ToProto((*job)->Snapshot(), response->mutable_job());
    return job.status();
  });
}

grpc::ServerWriteReactor<v1::WatchJobResponse>* StackProcessorService::WatchJob(
    grpc::CallbackServerContext* context, const v1::WatchJobRequest* request) {
  using Failed = FailedStream<v1::WatchJobResponse>;
  absl::StatusOr<Caller> caller = Authenticate(context);
  if (!caller.ok()) return new Failed(caller.status());
  absl::StatusOr<std::shared_ptr<Job>> job = jobs_.Get(request->job_id(), *caller);
  if (!job.ok()) return new Failed(job.status());
  return new WatchReactor(*std::move(job));
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* StackProcessorService::ReadResult(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw_request) {
  using Failed = FailedStream<grpc::ByteBuffer>;
  absl::StatusOr<Caller> caller = Authenticate(context);
  if (!caller.ok()) return new Failed(caller.status());
  v1::ReadResultRequest request;
  if (absl::Status s = wire::Parse(*raw_request, request, "ReadResultRequest"); !s.ok()) {
    return new Failed(s);
  }
  absl::StatusOr<std::shared_ptr<Job>> job = jobs_.Get(request.job_id(), *caller);
  if (!job.ok()) return new Failed(job.status());
  const JobSnapshot s = (*job)->Snapshot();
  std::shared_ptr<const core::Stack> result = (*job)->result();
  if (result == nullptr) {
    std::string why =
        s.state != JobState::kSucceeded
            ? absl::StrCat("job ", s.id, " is ", JobStateName(s.state), ", not succeeded")
        : s.spec.output_path
            ? absl::StrCat("job ", s.id, " wrote its result to ", *s.spec.output_path,
                           " in the data root")
            : absl::StrCat("the result of job ", s.id,
                           " is gone: it expired, was deleted, or the server restarted since");
    return new Failed(absl::FailedPreconditionError(why));
  }
  if (request.start_slice() < 0 || request.start_slice() > result->depth() ||
      request.start_offset() < 0 ||
      static_cast<size_t>(request.start_offset()) > result->slice_bytes()) {
    return new Failed(absl::OutOfRangeError(
        absl::StrCat("resume point slice ", request.start_slice(), " offset ",
                     request.start_offset(), " is outside the result (", result->depth(),
                     " slices of ", result->slice_bytes(), " bytes)")));
  }
  return new ReadResultReactor(std::move(result), request.start_slice(), request.start_offset());
}

grpc::ServerUnaryReactor* StackProcessorService::ListOperations(
    grpc::CallbackServerContext* context, const v1::ListOperationsRequest*,
    v1::ListOperationsResponse* response) {
  if (absl::Status s = Authenticate(context).status(); !s.ok()) return Done(context, s);
  for (const core::OperationInfo* info : core::OperationRegistry::Builtin().List()) {
    ToProto(*info, response->add_operations());
  }
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* StackProcessorService::GetServerInfo(
    grpc::CallbackServerContext* context, const v1::GetServerInfoRequest*,
    v1::GetServerInfoResponse* response) {
  if (absl::Status s = Authenticate(context).status(); !s.ok()) return Done(context, s);
  const JobManagerOptions& options = jobs_.options();
  response->set_version(STACKPROC_VERSION);
  response->set_max_chunk_bytes(static_cast<int64_t>(wire::kChunkBytes));
  response->set_max_message_bytes(wire::kMaxMessageBytes);
  response->set_max_stack_bytes(static_cast<int64_t>(options.limits.max_stack_bytes));
  response->set_max_slices(options.limits.max_pages);
  response->set_max_side(options.limits.max_side);
  response->set_memory_budget_bytes(static_cast<int64_t>(jobs_.memory_budget()));
  for (const core::FormatInfo& format : core::Formats()) {
    v1::FormatInfo* info = response->add_formats();
    info->set_name(std::string(core::FormatName(format.format)));
    info->set_named(format.named);
    info->set_reads(format.reads);
    info->set_writes(format.writes);
    info->set_compressions(format.compressions);
  }
  response->set_tokens_required(access_.tokens != nullptr);
  for (v1::WireCompression c : wire::WireCompressions()) response->add_wire_compressions(c);
  return Done(context, absl::OkStatus());
}

grpc::ServerWriteReactor<v1::PreviewResponse>* StackProcessorService::Preview(
    grpc::CallbackServerContext* context, const v1::PreviewRequest* request) {
  if (absl::Status s = Authenticate(context).status(); !s.ok()) {
    return new FailedStream<v1::PreviewResponse>(s);
  }
  auto* reactor = new MessagesReactor();
  // Reading and processing the slices blocks: a disk worker's, not a gRPC thread's. The
  // reactor lives until Send has finished it.
  disk_work_.Run([this, reactor, request = *request] {
    reactor->Send(MakePreview(request, jobs_.resolver(), jobs_.options().limits));
  });
  return reactor;
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* StackProcessorService::ProcessStream(
    grpc::CallbackServerContext* context) {
  absl::StatusOr<Caller> caller = Authenticate(context);
  if (!caller.ok()) return new FailedBidi(caller.status());
  const auto& metadata = context->client_metadata();
  auto resume_it = metadata.find(wire::kResumeMetadataKey);
  if (resume_it == metadata.end()) return new ProcessStreamReactor(context, streams_, caller->name);
  v1::StreamResume resume;
  if (!resume.ParseFromArray(resume_it->second.data(),
                             static_cast<int>(resume_it->second.size()))) {
    return new FailedBidi(absl::InvalidArgumentError(
        absl::StrCat(wire::kResumeMetadataKey, " is not a StreamResume")));
  }
  absl::StatusOr<std::shared_ptr<StreamSession>> session = streams_.Find(resume, caller->name);
  if (!session.ok()) return new FailedBidi(session.status());
  return new ProcessStreamReactor(context, *std::move(session), resume);
}

}  // namespace stackproc::server
