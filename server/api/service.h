// The StackProcessor gRPC service: thin callback handlers over the JobManager.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "server/api/auth.h"
#include "server/api/process_stream.h"
#include "server/api/work_pool.h"
#include "server/jobs/job_manager.h"
#include "stackproc/v1/service.grpc.pb.h"

namespace stackproc::server {

// The generated CallbackService, except that the two calls that carry pixels are raw (byte
// buffers in and out, proto/wire.h): their result chunks go on the wire without a copy.
using StackProcessorBase = v1::StackProcessor::WithCallbackMethod_SubmitJob<
    v1::StackProcessor::WithCallbackMethod_GetJob<v1::StackProcessor::WithCallbackMethod_ListJobs<
        v1::StackProcessor::WithCallbackMethod_CancelJob<
            v1::StackProcessor::WithCallbackMethod_DeleteJob<
                v1::StackProcessor::WithCallbackMethod_ResumeJob<
                    v1::StackProcessor::WithCallbackMethod_WatchJob<
                        v1::StackProcessor::WithRawCallbackMethod_ReadResult<
                            v1::StackProcessor::WithCallbackMethod_ListOperations<
                                v1::StackProcessor::WithRawCallbackMethod_ProcessStream<
                                    v1::StackProcessor::WithCallbackMethod_GetServerInfo<
                                        v1::StackProcessor::WithCallbackMethod_Preview<
                                            v1::StackProcessor::Service>>>>>>>>>>>>;

class StackProcessorService final : public StackProcessorBase {
 public:
  StackProcessorService(JobManager& jobs, Access access)
      : jobs_(jobs), access_(std::move(access)), streams_(jobs) {}

  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* context,
                                      const v1::SubmitJobRequest* request,
                                      v1::SubmitJobResponse* response) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context,
                                   const v1::GetJobRequest* request,
                                   v1::GetJobResponse* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* context,
                                     const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* context,
                                      const v1::CancelJobRequest* request,
                                      v1::CancelJobResponse* response) override;
  grpc::ServerUnaryReactor* DeleteJob(grpc::CallbackServerContext* context,
                                      const v1::DeleteJobRequest* request,
                                      v1::DeleteJobResponse* response) override;
  grpc::ServerUnaryReactor* ResumeJob(grpc::CallbackServerContext* context,
                                      const v1::ResumeJobRequest* request,
                                      v1::ResumeJobResponse* response) override;
  grpc::ServerWriteReactor<v1::WatchJobResponse>* WatchJob(
      grpc::CallbackServerContext* context, const v1::WatchJobRequest* request) override;
  // A v1::ReadResultRequest in, v1::ReadResultResponse messages out.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* ReadResult(grpc::CallbackServerContext* context,
                                                         const grpc::ByteBuffer* request) override;
  // v1::ProcessStreamRequest messages in, v1::ProcessStreamResponse messages out.
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* ProcessStream(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* ListOperations(grpc::CallbackServerContext* context,
                                           const v1::ListOperationsRequest* request,
                                           v1::ListOperationsResponse* response) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const v1::GetServerInfoRequest* request,
                                          v1::GetServerInfoResponse* response) override;
  grpc::ServerWriteReactor<v1::PreviewResponse>* Preview(
      grpc::CallbackServerContext* context, const v1::PreviewRequest* request) override;

  // Cancels the streamed jobs whose call broke and that wait for a resume (the server stops).
  void EndWaitingStreams() {
    streams_.CloseDetached(
        absl::CancelledError("the server stopped while the job waited for its "
                             "client to resume it"));
  }

 private:
  // The caller of `context` (Access::Identify).
  absl::StatusOr<Caller> Authenticate(const grpc::CallbackServerContext* context) const {
    return access_.Identify(*context);
  }
  // Runs `work` on disk_work_ and ends the call with its status: for calls that probe files.
  grpc::ServerUnaryReactor* OnWorkPool(grpc::CallbackServerContext* context,
                                       std::function<absl::Status()> work);

  JobManager& jobs_;
  const Access access_;
  StreamSessions streams_;  // streamed jobs, for their calls and resumes
  // Probes go one disk's way; more threads would only queue on the same device.
  WorkPool disk_work_{4};
};

}  // namespace stackproc::server
