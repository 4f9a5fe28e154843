#include "server/api/proto_convert.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/base/status_macros.h"

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

}  // namespace

std::string JobStateName(JobState state) { return convert::JobStateName(ToProto(state)); }

namespace {

v1::Executor ToProto(Executor executor) {
  return executor == Executor::kSlurm ? v1::EXECUTOR_SLURM : v1::EXECUTOR_LOCAL;
}

}  // namespace

std::string ExecutorName(Executor executor) { return convert::ExecutorName(ToProto(executor)); }

absl::StatusOr<Executor> ParseExecutor(absl::string_view name) {
  for (Executor e : {Executor::kLocal, Executor::kSlurm}) {
    if (name == ExecutorName(e)) return e;
  }
  return absl::InvalidArgumentError(absl::StrCat("executor \"", name, "\": use local or slurm"));
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  std::string message(status.message().substr(0, kMaxMessage));
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), message);
}

void ToProto(const core::StackShape& shape, core::PixelType type,
             const core::StackMetadata& metadata, v1::ResultHeader* out) {
  ToProto(shape, out->mutable_shape());
  out->set_pixel_type(ToProto(type));
  out->set_total_bytes(static_cast<int64_t>(core::StackBytes(shape, type).value_or(0)));
  convert::MetadataToProto(metadata, out);
}

void ToProto(const core::OperationInfo& info, v1::OperationDescriptor* out) {
  out->set_name(info.name);
  out->set_doc(info.doc);
  for (const core::ParamSpec& p : info.params) {
    v1::ParamDescriptor* param = out->add_params();
    param->set_name(p.name);
    switch (p.type) {
      case core::ParamType::kInt:
        param->set_type(v1::PARAM_TYPE_INT);
        break;
      case core::ParamType::kDouble:
        param->set_type(v1::PARAM_TYPE_FLOAT);
        break;
      case core::ParamType::kChoice:
        param->set_type(v1::PARAM_TYPE_CHOICE);
        break;
      case core::ParamType::kFile:
        param->set_type(v1::PARAM_TYPE_FILE);
        break;
    }
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
  for (const core::OpSpec& op : s.spec.ops) *spec->add_ops() = ToProto(op);
  if (s.spec.streamed) {
    spec->set_streamed(true);
    spec->set_uploaded_from(s.spec.uploaded_from);
  } else if (s.spec.output_path) {
    spec->mutable_output()->set_path(*s.spec.output_path);
  } else {
    spec->mutable_output()->mutable_in_memory()->set_retention_seconds(
        absl::ToInt64Seconds(s.spec.retention));
  }
  if (!s.spec.streamed) {
    spec->mutable_output()->set_compression(ToProto(s.spec.compression));
    spec->mutable_output()->set_compression_level(s.spec.compression_level);
    spec->mutable_output()->set_predictor(ToProto(s.spec.predictor));
    spec->mutable_output()->set_overwrite(s.spec.overwrite);
    if (s.spec.chunks) ToProto(*s.spec.chunks, spec->mutable_output()->mutable_chunks());
    spec->mutable_output()->set_pyramid_levels(s.spec.pyramid_levels);
    spec->mutable_output()->set_zarr_format(s.spec.zarr_format);
    if (s.spec.zarr_shards) {
      ToProto(*s.spec.zarr_shards, spec->mutable_output()->mutable_zarr_shards());
    }
    spec->set_shards(s.spec.shards);
    for (int64_t c : s.spec.channels) spec->add_channels(c);
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
  convert::DimensionsToProto(s.input_dims, out->mutable_input_dimensions());
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
  v1::Execution* e = out->mutable_execution();
  e->set_executor(ToProto(s.execution.executor));
  e->set_shards(s.execution.shards);
  for (const std::string& id : s.execution.slurm_job_ids) e->add_slurm_job_ids(id);
  e->set_shards_done(s.execution.shards_done);
  e->set_shards_running(s.execution.shards_running);
  e->set_shards_pending(s.execution.shards_pending);
  e->set_shards_failed(s.execution.shards_failed);
  e->set_align(s.execution.align);
}

absl::StatusOr<std::vector<core::OpSpec>> FromProto(
    const google::protobuf::RepeatedPtrField<v1::OpSpec>& ops) {
  std::vector<core::OpSpec> specs;
  for (const v1::OpSpec& op : ops) {
    if (op.name().empty()) return absl::InvalidArgumentError("an operation has no name");
    specs.push_back(FromProto(op));
  }
  return specs;
}

absl::StatusOr<JobSpec> FromProto(const v1::JobSpec& in) {
  JobSpec spec;
  spec.input_path = in.input_path();
  if (spec.input_path.empty()) return absl::InvalidArgumentError("input_path is empty");
  if (in.streamed()) {
    return absl::InvalidArgumentError("streamed jobs are submitted with ProcessStream");
  }
  STACKPROC_ASSIGN_OR_RETURN(spec.ops, FromProto(in.ops()));
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
  if (absl::Status level = core::CheckCompressionLevel(spec.compression, out.compression_level());
      !level.ok()) {
    return level;
  }
  spec.compression_level = out.compression_level();
  absl::StatusOr<core::Predictor> predictor = FromProto(out.predictor());
  if (!predictor.ok()) return predictor.status();
  if (absl::Status s = core::CheckPredictor(spec.compression, *predictor); !s.ok()) return s;
  spec.predictor = *predictor;
  spec.overwrite = out.overwrite();
  if (out.has_chunks()) spec.chunks = FromProto(out.chunks());
  spec.pyramid_levels = out.pyramid_levels();
  spec.zarr_format = out.zarr_format() == 0 ? 3 : out.zarr_format();
  if (out.has_zarr_shards()) spec.zarr_shards = FromProto(out.zarr_shards());
  if (in.shards() < 0) return absl::InvalidArgumentError("shards is negative");
  spec.shards = in.shards();
  spec.channels.assign(in.channels().begin(), in.channels().end());
  return spec;
}

absl::StatusOr<JobSnapshot> FromProto(const v1::Job& in) {
  JobSnapshot s;
  s.id = in.id();
  if (in.spec().streamed()) {
    s.spec.streamed = true;
    s.spec.uploaded_from = in.spec().uploaded_from();
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
  s.input_dims = convert::DimensionsFromProto(in.input_dimensions());
  s.output_shape = FromProto(in.output_shape());
  STACKPROC_ASSIGN_OR_RETURN(s.input_type, FromProto(in.input_type()));
  STACKPROC_ASSIGN_OR_RETURN(s.output_type, FromProto(in.output_type()));
  s.create_time = FromUnixMillis(in.create_time_ms());
  s.start_time = FromUnixMillis(in.start_time_ms());
  s.end_time = FromUnixMillis(in.end_time_ms());
  s.memory_bytes = static_cast<uint64_t>(in.memory_bytes());
  s.mode = in.mode() == v1::PROCESSING_MODE_STREAMING ? core::ProcessMode::kStreaming
                                                      : core::ProcessMode::kInMemory;
  const v1::Execution& e = in.execution();
  s.execution.executor = e.executor() == v1::EXECUTOR_SLURM ? Executor::kSlurm : Executor::kLocal;
  s.execution.shards = e.shards();
  s.execution.slurm_job_ids.assign(e.slurm_job_ids().begin(), e.slurm_job_ids().end());
  s.execution.shards_done = e.shards_done();
  s.execution.shards_running = e.shards_running();
  s.execution.shards_pending = e.shards_pending();
  s.execution.shards_failed = e.shards_failed();
  s.execution.align = std::max<int64_t>(e.align(), 1);
  return s;
}

}  // namespace stackproc::server
