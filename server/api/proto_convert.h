// The server's types in the API's messages and back (core's own: proto/convert.h).
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/pipeline/operation.h"
#include "core/stack/stack.h"
#include "proto/convert.h"
#include "server/jobs/job.h"
#include "stackproc/v1/service.pb.h"

namespace stackproc::server {

// absl -> gRPC status, same code, message capped at 1 KiB.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Core's own types: one mapping, shared with the client.
using convert::FromProto;
using convert::ToProto;

// What a stream of result chunks makes up.
void ToProto(const core::StackShape& shape, core::PixelType type,
             const core::StackMetadata& metadata, v1::ResultHeader* out);
void ToProto(const core::OperationInfo& info, v1::OperationDescriptor* out);
void ToProto(const JobSnapshot& job, v1::Job* out);
// A job as ToProto wrote it (the job store's records). Lost on the way: progress rates and the
// in-memory result.
absl::StatusOr<JobSnapshot> FromProto(const v1::Job& job);

// Operations, parameters in name order, not yet validated; InvalidArgument for a nameless one.
absl::StatusOr<std::vector<core::OpSpec>> FromProto(
    const google::protobuf::RepeatedPtrField<v1::OpSpec>& ops);

// Validates the request's shape (not the pipeline: the job manager does that).
absl::StatusOr<JobSpec> FromProto(const v1::JobSpec& spec);

}  // namespace stackproc::server
