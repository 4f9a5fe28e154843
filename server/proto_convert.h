// The one place that sees both proto and core/server types.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/operation.h"
#include "core/stack.h"
#include "server/job.h"
#include "stackproc/v1/service.pb.h"

namespace stackproc::server {

// absl -> gRPC status, same code, message capped at 1 KiB.
grpc::Status ToGrpcStatus(const absl::Status& status);

v1::PixelType ToProto(core::PixelType type);
absl::StatusOr<core::PixelType> FromProto(v1::PixelType type);
void ToProto(const core::StackShape& shape, v1::StackShape* out);
// What a stream of result chunks makes up.
void ToProto(const core::StackShape& shape, core::PixelType type,
             const core::StackMetadata& metadata, v1::ResultHeader* out);
void ToProto(const core::OperationInfo& info, v1::OperationDescriptor* out);
void ToProto(const JobSnapshot& job, v1::Job* out);
// A job as ToProto wrote it (the job store's records). Lost on the way: progress rates and the
// in-memory result.
absl::StatusOr<JobSnapshot> FromProto(const v1::Job& job);

// Operations in the canonical text form (parameters sorted), not yet validated.
absl::StatusOr<std::vector<std::string>> FromProto(
    const google::protobuf::RepeatedPtrField<v1::OpSpec>& ops);

// Validates the request's shape (not the pipeline: the job manager does that).
absl::StatusOr<JobSpec> FromProto(const v1::JobSpec& spec);

}  // namespace stackproc::server
