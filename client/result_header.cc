#include "client/result_header.h"

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "proto/convert.h"

namespace stackproc::client {
namespace {

// A pixel type this client does not know is refused: read as another type, the bytes would be
// silently wrong.
absl::StatusOr<core::PixelType> ServerPixelType(v1::PixelType type) {
  absl::StatusOr<core::PixelType> known = convert::FromProto(type);
  if (known.ok()) return known;
  return absl::DataLossError(absl::StrCat("the server sent a result whose ",
                                          known.status().message(),
                                          ": this client does not know it (update it)"));
}

}  // namespace

absl::StatusOr<core::StackInfo> ReadResultHeader(const v1::ResultHeader& header) {
  core::StackInfo info;
  info.shape = convert::FromProto(header.shape());
  STACKPROC_ASSIGN_OR_RETURN(info.type, ServerPixelType(header.pixel_type()));
  absl::StatusOr<core::StackMetadata> metadata = convert::MetadataFromProto(header);
  if (!metadata.ok()) return absl::DataLossError(metadata.status().message());
  info.metadata = *std::move(metadata);
  return info;
}

}  // namespace stackproc::client
