// The Preview call: core's RunPreview beneath the data root, its result as the messages the
// call streams back (made off gRPC's threads, then written one at a time).
#pragma once

#include <grpcpp/grpcpp.h>

#include <vector>

#include "absl/status/statusor.h"
#include "core/tiff/tiff_reader.h"
#include "server/jobs/path_resolver.h"
#include "stackproc/v1/service.grpc.pb.h"

namespace stackproc::server {

// The preview `request` asks for, as messages: a PreviewInfo, then the PNG's pieces or the raw
// stacks. The errors as RunPreview's (and SubmitJob's for the input).
absl::StatusOr<std::vector<v1::PreviewResponse>> MakePreview(const v1::PreviewRequest& request,
                                                             const PathResolver& files,
                                                             const core::StackLimits& limits);

// Writes messages handed over once made (Send), one at a time; a client that goes away only
// ends the stream.
class MessagesReactor final : public grpc::ServerWriteReactor<v1::PreviewResponse> {
 public:
  // Called once: the messages to write, or the call's error.
  void Send(absl::StatusOr<std::vector<v1::PreviewResponse>> messages);
  void OnWriteDone(bool ok) override;
  void OnCancel() override {}
  void OnDone() override { delete this; }

 private:
  std::vector<v1::PreviewResponse> messages_;
  size_t next_ = 0;
};

}  // namespace stackproc::server
