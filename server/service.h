// The StackProcessor gRPC service: thin callback handlers over the JobManager.
#pragma once

#include "server/job_manager.h"
#include "stackproc/v1/service.grpc.pb.h"

namespace stackproc::server {

class StackProcessorService final : public v1::StackProcessor::CallbackService {
 public:
  explicit StackProcessorService(JobManager& jobs) : jobs_(jobs) {}

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
  grpc::ServerWriteReactor<v1::WatchJobResponse>* WatchJob(
      grpc::CallbackServerContext* context, const v1::WatchJobRequest* request) override;
  grpc::ServerWriteReactor<v1::ReadResultResponse>* ReadResult(
      grpc::CallbackServerContext* context, const v1::ReadResultRequest* request) override;
  grpc::ServerBidiReactor<v1::ProcessStreamRequest, v1::ProcessStreamResponse>* ProcessStream(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* ListOperations(grpc::CallbackServerContext* context,
                                           const v1::ListOperationsRequest* request,
                                           v1::ListOperationsResponse* response) override;

 private:
  JobManager& jobs_;
};

}  // namespace stackproc::server
