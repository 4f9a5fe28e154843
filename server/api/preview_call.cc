#include "server/api/preview_call.h"

#include "core/process/preview.h"
#include "proto/convert.h"
#include "proto/wire.h"
#include "server/api/proto_convert.h"

namespace stackproc::server {
namespace {

// A stack's slices as RAW messages: its header, then chunks of up to 1 MiB.
void AppendStack(const core::Stack& stack, int variant, std::vector<v1::PreviewResponse>& out) {
  v1::PreviewStack* header = out.emplace_back().mutable_stack();
  header->set_variant(variant);
  convert::ToProto(stack.shape(), header->mutable_shape());
  header->set_pixel_type(convert::ToProto(stack.pixel_type()));
  for (int64_t z = 0; z < stack.depth(); ++z) {
    for (size_t offset = 0; offset < stack.slice_bytes(); offset += wire::kChunkBytes) {
      v1::SliceChunk* chunk = out.emplace_back().mutable_chunk();
      chunk->set_slice(z);
      chunk->set_offset(static_cast<int64_t>(offset));
      chunk->set_data(stack.slice_data(z) + offset,
                      std::min(wire::kChunkBytes, stack.slice_bytes() - offset));
    }
  }
}

}  // namespace

absl::StatusOr<std::vector<v1::PreviewResponse>> MakePreview(const v1::PreviewRequest& request,
                                                             const PathResolver& files,
                                                             const core::StackLimits& limits) {
  core::PreviewRequest core_request;
  if (request.variants().empty()) {  // a sweep, or no operation at all (a look at the slices)
    absl::StatusOr<core::PreviewRequest> parsed = core::PreviewRequestOf(
        request.input_path(), {request.sweep().begin(), request.sweep().end()}, "", "", "");
    if (!parsed.ok()) return parsed.status();
    core_request = *std::move(parsed);
  } else if (!request.sweep().empty()) {
    return absl::InvalidArgumentError("a preview takes variants or a sweep, not both");
  }
  core_request.input = request.input_path();
  for (const v1::PreviewVariant& v : request.variants()) {
    absl::StatusOr<std::vector<core::OpSpec>> ops = FromProto(v.ops());
    if (!ops.ok()) return ops.status();
    std::string label = v.label().empty() ? core::FormatOpSpecs(*ops) : v.label();
    core_request.variants.push_back({*std::move(ops), std::move(label)});
  }
  core_request.slices.assign(request.slices().begin(), request.slices().end());
  core_request.channels.assign(request.channels().begin(), request.channels().end());
  if (request.count() > 0) core_request.count = request.count();
  if (request.has_region()) {
    const v1::Region& r = request.region();
    core_request.region = core::Region{r.x(), r.y(), r.width(), r.height()};
  }
  if (!request.title().empty()) core_request.title = request.title();
  absl::StatusOr<core::Preview> preview = core::RunPreview(files, core_request, limits);
  if (!preview.ok()) return preview.status();

  std::vector<v1::PreviewResponse> out(1);
  v1::PreviewInfo* info = out[0].mutable_info();
  for (int64_t z : preview->z) info->add_slices(z);
  for (const std::string& label : preview->labels) info->add_labels(label);
  for (const std::string& note : preview->notes) info->add_notes(note);
  for (size_t i = 0; i < preview->at.size(); ++i) {
    v1::PlanePlace* place = info->add_places();
    place->set_t(preview->at[i].t);
    place->set_c(preview->at[i].c);
    place->set_z(preview->at[i].z);
    place->set_label(preview->where[i]);
  }
  if (request.format() == v1::PREVIEW_FORMAT_RAW) {
    AppendStack(preview->before, -1, out);
    for (size_t i = 0; i < preview->after.size(); ++i) {
      AppendStack(preview->after[i], static_cast<int>(i), out);
    }
    return out;
  }
  absl::StatusOr<std::string> png =
      core::MontagePng(*preview, request.max_tile_side() > 0 ? request.max_tile_side() : 512);
  if (!png.ok()) return png.status();
  for (size_t at = 0; at < png->size(); at += wire::kChunkBytes) {
    out.emplace_back().set_png(png->substr(at, wire::kChunkBytes));
  }
  return out;
}

void MessagesReactor::Send(absl::StatusOr<std::vector<v1::PreviewResponse>> messages) {
  if (!messages.ok()) return Finish(ToGrpcStatus(messages.status()));
  messages_ = *std::move(messages);
  OnWriteDone(true);
}

void MessagesReactor::OnWriteDone(bool ok) {
  if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
  if (next_ == messages_.size()) return Finish(grpc::Status::OK);
  StartWrite(&messages_[next_++]);
}

}  // namespace stackproc::server
