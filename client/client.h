// A typed client for stackprocd. The stackproc CLI is a thin layer over it; pipelines can embed
// it. Thread-compatible; each call blocks until its RPC ends.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "core/stack.h"
#include "stackproc/v1/service.grpc.pb.h"

namespace stackproc::client {

namespace v1 = ::stackproc::v1;

// gRPC -> absl status, same code and message.
absl::Status ToAbslStatus(const grpc::Status& status);

// "gaussian:ksize=5,sigma=1" -> OpSpec. InvalidArgument for a malformed text.
absl::StatusOr<v1::OpSpec> ParseOpText(const std::string& text);

class Client {
 public:
  // `target` is HOST:PORT. Connects lazily: errors surface on the first call.
  explicit Client(const std::string& target);

  absl::StatusOr<v1::Job> Submit(const v1::SubmitJobRequest& request);
  absl::StatusOr<v1::Job> Get(const std::string& job_id);
  absl::StatusOr<std::vector<v1::Job>> List();
  absl::StatusOr<v1::Job> Cancel(const std::string& job_id);
  absl::Status Delete(const std::string& job_id);
  absl::StatusOr<std::vector<v1::OperationDescriptor>> ListOperations();

  // Follows a job until its final state, calling `on_update` for every event; returns the last
  // snapshot. A dropped connection is re-attached (up to `reattach` times) without affecting the
  // job.
  absl::StatusOr<v1::Job> Watch(const std::string& job_id,
                                const std::function<void(const v1::Job&)>& on_update,
                                int reattach = 3);

  // Downloads an in-memory result into a stack (with its metadata), resuming where a broken
  // stream stopped.
  absl::StatusOr<core::Stack> Download(const std::string& job_id);

  // Whether the server's health service reports SERVING.
  absl::StatusOr<bool> Healthy();

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::StackProcessor::Stub> stub_;
};

}  // namespace stackproc::client
