#include "server/service.h"

#include "absl/strings/str_cat.h"
#include "core/operation_registry.h"
#include "proto/wire.h"
#include "server/process_stream.h"
#include "server/proto_convert.h"
#include "server/stream_reactors.h"

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

}  // namespace

grpc::ServerUnaryReactor* StackProcessorService::SubmitJob(grpc::CallbackServerContext* context,
                                                           const v1::SubmitJobRequest* request,
                                                           v1::SubmitJobResponse* response) {
  absl::StatusOr<JobSpec> spec = FromProto(request->spec());
  if (!spec.ok()) return Done(context, spec.status());
  absl::StatusOr<std::shared_ptr<Job>> job = jobs_.Submit(*spec, request->request_id());
  if (job.ok()) ToProto((*job)->Snapshot(), response->mutable_job());
  return Done(context, job.status());
}

grpc::ServerUnaryReactor* StackProcessorService::GetJob(grpc::CallbackServerContext* context,
                                                        const v1::GetJobRequest* request,
                                                        v1::GetJobResponse* response) {
  absl::StatusOr<std::shared_ptr<Job>> job = jobs_.Get(request->job_id());
  if (job.ok()) ToProto((*job)->Snapshot(), response->mutable_job());
  return Done(context, job.status());
}

grpc::ServerUnaryReactor* StackProcessorService::ListJobs(grpc::CallbackServerContext* context,
                                                          const v1::ListJobsRequest*,
                                                          v1::ListJobsResponse* response) {
  for (const std::shared_ptr<Job>& job : jobs_.List()) {
    ToProto(job->Snapshot(), response->add_jobs());
  }
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* StackProcessorService::CancelJob(grpc::CallbackServerContext* context,
                                                           const v1::CancelJobRequest* request,
                                                           v1::CancelJobResponse* response) {
  absl::StatusOr<std::shared_ptr<Job>> job = jobs_.Cancel(request->job_id());
  if (job.ok()) ToProto((*job)->Snapshot(), response->mutable_job());
  return Done(context, job.status());
}

grpc::ServerUnaryReactor* StackProcessorService::DeleteJob(grpc::CallbackServerContext* context,
                                                           const v1::DeleteJobRequest* request,
                                                           v1::DeleteJobResponse*) {
  return Done(context, jobs_.Delete(request->job_id()));
}

grpc::ServerWriteReactor<v1::WatchJobResponse>* StackProcessorService::WatchJob(
    grpc::CallbackServerContext*, const v1::WatchJobRequest* request) {
  absl::StatusOr<std::shared_ptr<Job>> job = jobs_.Get(request->job_id());
  if (!job.ok()) return new FailedStream<v1::WatchJobResponse>(job.status());
  return new WatchReactor(*std::move(job));
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* StackProcessorService::ReadResult(
    grpc::CallbackServerContext*, const grpc::ByteBuffer* raw_request) {
  using Failed = FailedStream<grpc::ByteBuffer>;
  v1::ReadResultRequest request;
  if (absl::Status s = wire::Parse(*raw_request, request, "ReadResultRequest"); !s.ok()) {
    return new Failed(s);
  }
  absl::StatusOr<std::shared_ptr<Job>> job = jobs_.Get(request.job_id());
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
            : absl::StrCat("the result of job ", s.id, " has expired or was deleted");
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
  for (const core::OperationInfo* info : core::OperationRegistry::Builtin().List()) {
    ToProto(*info, response->add_operations());
  }
  return Done(context, absl::OkStatus());
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* StackProcessorService::ProcessStream(
    grpc::CallbackServerContext* context) {
  return new ProcessStreamReactor(context, jobs_);
}

}  // namespace stackproc::server
