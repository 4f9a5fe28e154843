#include "server/proto_convert.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/status_macros.h"

namespace stackproc::server {
namespace {

constexpr size_t kMaxMessage = 1024;

int64_t UnixMillis(absl::Time t) { return t == absl::InfinitePast() ? 0 : absl::ToUnixMillis(t); }
absl::Time FromUnixMillis(int64_t ms) {
  return ms == 0 ? absl::InfinitePast() : absl::FromUnixMillis(ms);
}

v1::JobState ToProto(JobState state) {
  switch (state) {
    case JobState::kQueued:
      return v1::JOB_STATE_QUEUED;
    case JobState::kRunning:
      return v1::JOB_STATE_RUNNING;
    case JobState::kSucceeded:
      return v1::JOB_STATE_SUCCEEDED;
    case JobState::kFailed:
      return v1::JOB_STATE_FAILED;
    case JobState::kCancelled:
      return v1::JOB_STATE_CANCELLED;
    case JobState::kInterrupted:
      return v1::JOB_STATE_INTERRUPTED;
  }
  return v1::JOB_STATE_UNSPECIFIED;
}

absl::StatusOr<JobState> FromProto(v1::JobState state) {
  switch (state) {
    case v1::JOB_STATE_QUEUED:
      return JobState::kQueued;
    case v1::JOB_STATE_RUNNING:
      return JobState::kRunning;
    case v1::JOB_STATE_SUCCEEDED:
      return JobState::kSucceeded;
    case v1::JOB_STATE_FAILED:
      return JobState::kFailed;
    case v1::JOB_STATE_CANCELLED:
      return JobState::kCancelled;
    case v1::JOB_STATE_INTERRUPTED:
      return JobState::kInterrupted;
    default:
      return absl::InvalidArgumentError(absl::StrCat("unknown job state ", state));
  }
}

core::StackShape FromProto(const v1::StackShape& shape) {
  return {shape.depth(), shape.height(), shape.width()};
}

v1::Compression ToProto(core::Compression c) {
  switch (c) {
    case core::Compression::kNone:
      return v1::COMPRESSION_NONE;
    case core::Compression::kDeflate:
      return v1::COMPRESSION_DEFLATE;
    case core::Compression::kZstd:
      return v1::COMPRESSION_ZSTD;
    case core::Compression::kLzw:
      return v1::COMPRESSION_LZW;
  }
  return v1::COMPRESSION_NONE;
}

absl::StatusOr<core::Compression> FromProto(v1::Compression c) {
  switch (c) {
    case v1::COMPRESSION_UNSPECIFIED:
    case v1::COMPRESSION_NONE:
      return core::Compression::kNone;
    case v1::COMPRESSION_DEFLATE:
      return core::Compression::kDeflate;
    case v1::COMPRESSION_ZSTD:
      return core::Compression::kZstd;
    case v1::COMPRESSION_LZW:
      return core::Compression::kLzw;
    default:
      return absl::InvalidArgumentError(absl::StrCat("unknown compression ", c));
  }
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  std::string message(status.message().substr(0, kMaxMessage));
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), message);
}

void ToProto(const core::StackShape& shape, v1::StackShape* out) {
  out->set_depth(shape.depth);
  out->set_height(shape.height);
  out->set_width(shape.width);
}

absl::StatusOr<core::PixelType> FromProto(v1::PixelType type) {
  switch (type) {
    case v1::PIXEL_TYPE_UINT8:
      return core::PixelType::kUint8;
    case v1::PIXEL_TYPE_UINT16:
      return core::PixelType::kUint16;
    case v1::PIXEL_TYPE_FLOAT32:
      return core::PixelType::kFloat32;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("pixel type ", type, " is not uint8, uint16 or float32"));
  }
}

void ToProto(const core::StackShape& shape, core::PixelType type,
             const core::StackMetadata& metadata, v1::ResultHeader* out) {
  ToProto(shape, out->mutable_shape());
  out->set_pixel_type(ToProto(type));
  out->set_total_bytes(static_cast<int64_t>(core::StackBytes(shape, type).value_or(0)));
  out->set_description(metadata.description);
  out->set_x_resolution(metadata.x_resolution.value_or(0));
  out->set_y_resolution(metadata.y_resolution.value_or(0));
  out->set_resolution_unit(static_cast<int32_t>(metadata.resolution_unit));
}

v1::PixelType ToProto(core::PixelType type) {
  switch (type) {
    case core::PixelType::kUint8:
      return v1::PIXEL_TYPE_UINT8;
    case core::PixelType::kUint16:
      return v1::PIXEL_TYPE_UINT16;
    case core::PixelType::kFloat32:
      return v1::PIXEL_TYPE_FLOAT32;
  }
  return v1::PIXEL_TYPE_UNSPECIFIED;
}

void ToProto(const core::OperationInfo& info, v1::OperationDescriptor* out) {
  out->set_name(info.name);
  out->set_doc(info.doc);
  for (const core::ParamSpec& p : info.params) {
    v1::ParamDescriptor* param = out->add_params();
    param->set_name(p.name);
    param->set_type(p.type == core::ParamType::kInt      ? v1::PARAM_TYPE_INT
                    : p.type == core::ParamType::kDouble ? v1::PARAM_TYPE_FLOAT
                                                         : v1::PARAM_TYPE_CHOICE);
    param->set_default_value(p.default_value);
    param->set_min(p.min);
    param->set_max(p.max);
    for (const std::string& c : p.choices) param->add_choices(c);
    param->set_doc(p.doc);
  }
  for (core::PixelType t : info.pixel_types) out->add_pixel_types(ToProto(t));
}

void ToProto(const JobSnapshot& s, v1::Job* out) {
  out->set_id(s.id);
  v1::JobSpec* spec = out->mutable_spec();
  spec->set_input_path(s.spec.input_path);
  for (const std::string& text : s.spec.ops) {
    v1::OpSpec* op = spec->add_ops();
    size_t colon = text.find(':');
    op->set_name(text.substr(0, colon));
    if (colon == std::string::npos) continue;
    for (absl::string_view kv : absl::StrSplit(text.substr(colon + 1), ',')) {
      size_t eq = kv.find('=');
      (*op->mutable_params())[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
    }
  }
  if (s.spec.streamed) {
    spec->set_streamed(true);
  } else if (s.spec.output_path) {
    spec->mutable_output()->set_path(*s.spec.output_path);
  } else {
    spec->mutable_output()->mutable_in_memory()->set_retention_seconds(
        absl::ToInt64Seconds(s.spec.retention));
  }
  if (!s.spec.streamed) {
    spec->mutable_output()->set_compression(ToProto(s.spec.compression));
    spec->mutable_output()->set_overwrite(s.spec.overwrite);
  }
  out->set_request_id(s.request_id);
  out->set_state(ToProto(s.state));

  v1::Progress* p = out->mutable_progress();
  p->set_stage(s.stage);
  p->set_slices_done(s.progress.slices_done);
  p->set_slices_total(s.progress.slices_total);
  p->set_bytes_done(static_cast<int64_t>(s.progress.bytes_done));
  p->set_bytes_total(static_cast<int64_t>(s.progress.bytes_total));
  const double elapsed =
      s.start_time == absl::InfinitePast()
          ? 0
          : absl::ToDoubleSeconds((s.end_time == absl::InfinitePast() ? absl::Now() : s.end_time) -
                                  s.start_time);
  const double processing = absl::ToDoubleSeconds(s.progress.elapsed);
  p->set_bytes_per_second(processing > 0 ? s.progress.bytes_done / processing : 0);
  p->set_elapsed_seconds(elapsed);
  p->set_eta_seconds(s.progress.eta ? absl::ToDoubleSeconds(*s.progress.eta) : -1);

  if (!s.error.ok()) {
    out->mutable_error()->set_code(static_cast<int32_t>(s.error.code()));
    out->mutable_error()->set_message(std::string(s.error.message().substr(0, kMaxMessage)));
  }
  ToProto(s.input_shape, out->mutable_input_shape());
  out->set_input_type(ToProto(s.input_type));
  ToProto(s.output_shape, out->mutable_output_shape());
  out->set_output_type(ToProto(s.output_type));
  out->set_create_time_ms(UnixMillis(s.create_time));
  out->set_start_time_ms(UnixMillis(s.start_time));
  out->set_end_time_ms(UnixMillis(s.end_time));
  out->set_memory_bytes(static_cast<int64_t>(s.memory_bytes));
  out->set_owner(s.spec.owner);
  out->set_mode(s.mode == core::ProcessMode::kStreaming ? v1::PROCESSING_MODE_STREAMING
                                                        : v1::PROCESSING_MODE_IN_MEMORY);
}

absl::StatusOr<std::vector<std::string>> FromProto(
    const google::protobuf::RepeatedPtrField<v1::OpSpec>& ops) {
  std::vector<std::string> texts;
  for (const v1::OpSpec& op : ops) {
    if (op.name().empty()) return absl::InvalidArgumentError("an operation has no name");
    // A canonical text: parameters sorted, so equal specs compare equal.
    std::vector<std::pair<std::string, std::string>> params(op.params().begin(), op.params().end());
    std::sort(params.begin(), params.end());
    std::string text = op.name();
    if (!params.empty()) {
      absl::StrAppend(&text, ":", absl::StrJoin(params, ",", absl::PairFormatter("=")));
    }
    texts.push_back(std::move(text));
  }
  return texts;
}

absl::StatusOr<JobSpec> FromProto(const v1::JobSpec& in) {
  JobSpec spec;
  spec.input_path = in.input_path();
  if (spec.input_path.empty()) return absl::InvalidArgumentError("input_path is empty");
  if (in.streamed()) {
    return absl::InvalidArgumentError("streamed jobs are submitted with ProcessStream");
  }
  absl::StatusOr<std::vector<std::string>> ops = FromProto(in.ops());
  if (!ops.ok()) return ops.status();
  spec.ops = *std::move(ops);
  const v1::OutputSpec& out = in.output();
  switch (out.destination_case()) {
    case v1::OutputSpec::kPath:
      if (out.path().empty()) return absl::InvalidArgumentError("output path is empty");
      spec.output_path = out.path();
      break;
    case v1::OutputSpec::kInMemory:
      if (out.in_memory().retention_seconds() < 0) {
        return absl::InvalidArgumentError("retention_seconds is negative");
      }
      spec.retention = absl::Seconds(out.in_memory().retention_seconds());
      break;
    case v1::OutputSpec::DESTINATION_NOT_SET:
      return absl::InvalidArgumentError("output: give a path or in_memory");
  }
  absl::StatusOr<core::Compression> compression = FromProto(out.compression());
  if (!compression.ok()) return compression.status();
  spec.compression = *compression;
  spec.overwrite = out.overwrite();
  return spec;
}

absl::StatusOr<JobSnapshot> FromProto(const v1::Job& in) {
  JobSnapshot s;
  s.id = in.id();
  if (in.spec().streamed()) {
    s.spec.streamed = true;
    STACKPROC_ASSIGN_OR_RETURN(s.spec.ops, FromProto(in.spec().ops()));
  } else {
    STACKPROC_ASSIGN_OR_RETURN(s.spec, FromProto(in.spec()));
  }
  s.spec.owner = in.owner();
  s.request_id = in.request_id();
  STACKPROC_ASSIGN_OR_RETURN(s.state, FromProto(in.state()));
  const v1::Progress& p = in.progress();
  s.stage = p.stage();
  s.progress.slices_done = p.slices_done();
  s.progress.slices_total = p.slices_total();
  s.progress.bytes_done = static_cast<uint64_t>(p.bytes_done());
  s.progress.bytes_total = static_cast<uint64_t>(p.bytes_total());
  if (in.error().code() != 0) {
    s.error = absl::Status(static_cast<absl::StatusCode>(in.error().code()), in.error().message());
  }
  s.input_shape = FromProto(in.input_shape());
  s.output_shape = FromProto(in.output_shape());
  STACKPROC_ASSIGN_OR_RETURN(s.input_type, FromProto(in.input_type()));
  STACKPROC_ASSIGN_OR_RETURN(s.output_type, FromProto(in.output_type()));
  s.create_time = FromUnixMillis(in.create_time_ms());
  s.start_time = FromUnixMillis(in.start_time_ms());
  s.end_time = FromUnixMillis(in.end_time_ms());
  s.memory_bytes = static_cast<uint64_t>(in.memory_bytes());
  s.mode = in.mode() == v1::PROCESSING_MODE_STREAMING ? core::ProcessMode::kStreaming
                                                      : core::ProcessMode::kInMemory;
  return s;
}

}  // namespace stackproc::server
