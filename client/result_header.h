// What a result stream's header announces, as core's types (both download paths: ReadResult and
// ProcessStream). Internal to the client library.
#pragma once

#include "absl/status/statusor.h"
#include "core/exec/engine.h"
#include "stackproc/v1/service.pb.h"

namespace stackproc::client {

// DataLoss for what this client cannot read right (a pixel type it does not know: read as
// another type, the bytes would be silently wrong).
absl::StatusOr<core::StackInfo> ReadResultHeader(const v1::ResultHeader& header);

}  // namespace stackproc::client
