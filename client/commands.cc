#include "client/commands.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iterator>
#include <map>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/progress.h"
#include "client/resume_record.h"
#include "core/base/status_macros.h"
#include "core/io/formats.h"
#include "core/process/preview.h"
#include "core/tiff/tiff_writer.h"
#include "proto/convert.h"
#include "proto/wire.h"

namespace stackproc::client {
namespace {

using core::CliArgs;

absl::StatusOr<std::string> OneJobId(const CliArgs& args, const char* command) {
  if (args.positional.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(command, " needs one JOB id"));
  }
  return args.positional[0];
}

std::string Shape(const v1::StackShape& s) {
  return absl::StrCat(s.depth(), "x", s.height(), "x", s.width());
}

std::string TypeName(v1::PixelType t) {
  absl::StatusOr<core::PixelType> type = convert::FromProto(t);
  return type.ok() ? std::string(core::PixelTypeName(*type)) : "?";
}

// Where a job's stack comes from and where its result goes, as list and status show them.
std::string InputOf(const v1::Job& job) {
  return job.spec().streamed() ? absl::StrCat("upload from ", job.spec().uploaded_from())
                               : job.spec().input_path();
}
std::string OutputOf(const v1::Job& job) {
  return job.spec().streamed()            ? "streamed back"
         : job.spec().output().has_path() ? job.spec().output().path()
                                          : "(in memory)";
}

void PrintJob(const v1::Job& job) {
  absl::PrintF("job %s: %s (%s)\n", job.id(), convert::JobStateName(job.state()),
               job.progress().stage());
  absl::PrintF("  input    %s  %s %s\n", InputOf(job), Shape(job.input_shape()),
               TypeName(job.input_type()));
  if (job.has_input_dimensions()) {
    const core::Dimensions dims = convert::DimensionsFromProto(job.input_dimensions());
    absl::PrintF("  planes   %s\n", dims.Describe(job.input_shape().depth()));
  }
  absl::PrintF("  ops      %s\n", convert::OpsText(job.spec().ops()));
  absl::PrintF("  output   %s  %s %s\n", OutputOf(job), Shape(job.output_shape()),
               TypeName(job.output_type()));
  absl::PrintF("  mode     %s, %.0f MiB of server memory\n",
               job.mode() == v1::PROCESSING_MODE_STREAMING ? "streaming (a window of slices)"
                                                           : "in memory (the whole stack)",
               job.memory_bytes() / 1048576.0);
  if (!job.owner().empty()) absl::PrintF("  owner    %s\n", job.owner());
  if (const v1::Execution& e = job.execution(); e.executor() == v1::EXECUTOR_SLURM) {
    absl::PrintF(
        "  executor slurm, SLURM job %s: %d shards, %d done, %d running, %d pending, "
        "%d failed attempts\n",
        e.slurm_job_ids().empty() ? "(not yet submitted)"
                                  : absl::StrJoin(e.slurm_job_ids(), " then "),
        e.shards(), e.shards_done(), e.shards_running(), e.shards_pending(), e.shards_failed());
  } else {
    absl::PrintF("  executor %s\n", convert::ExecutorName(e.executor()));
  }
  absl::PrintF("  progress %lld/%lld slices, %.0f MB/s, %.1fs elapsed\n",
               job.progress().slices_done(), job.progress().slices_total(),
               job.progress().bytes_per_second() / 1e6, job.progress().elapsed_seconds());
  if (job.has_error()) {
    absl::PrintF("  error    %s: %s\n",
                 absl::StatusCodeToString(static_cast<absl::StatusCode>(job.error().code())),
                 job.error().message());
  }
}

// Follows the job to its end; exit code 0 only when it succeeded.
absl::StatusOr<int> Follow(Client& client, const std::string& job_id) {
  ProgressDisplay display(stdout, ::isatty(STDOUT_FILENO));
  STACKPROC_ASSIGN_OR_RETURN(v1::Job last,
                             client.Watch(job_id, [&](const v1::Job& j) { display.Update(j); }));
  display.Done();
  if (last.state() == v1::JOB_STATE_SUCCEEDED) {
    absl::PrintF("job %s succeeded: %s %s -> %s in %.2fs\n", last.id(), Shape(last.output_shape()),
                 TypeName(last.output_type()),
                 last.spec().output().has_path() ? last.spec().output().path()
                                                 : "memory (stackproc download)",
                 last.progress().elapsed_seconds());
    return 0;
  }
  return absl::Status(static_cast<absl::StatusCode>(last.error().code()),
                      absl::StrCat("job ", last.id(), " ", convert::JobStateName(last.state()),
                                   ": ", last.error().message()));
}

absl::StatusOr<int> Submit(const CliArgs& args, Client& client) {
  v1::SubmitJobRequest request;
  v1::JobSpec* spec = request.mutable_spec();
  spec->set_input_path(args.Get("input"));
  if (spec->input_path().empty()) return absl::InvalidArgumentError("submit needs --input PATH");
  for (const std::string& text : args.All("op")) {
    STACKPROC_ASSIGN_OR_RETURN(*spec->add_ops(), ParseOpText(text));
  }
  v1::OutputSpec* output = spec->mutable_output();
  if (args.Has("in-memory") && args.Has("output")) {
    return absl::InvalidArgumentError(
        "--output and --in-memory: give one (--in-memory keeps the result on the server and "
        "writes no file)");
  }
  if (args.Has("in-memory")) {
    int64_t retention = 0;
    if (!absl::SimpleAtoi(args.Get("retention", "0"), &retention)) {
      return absl::InvalidArgumentError("--retention takes seconds");
    }
    output->mutable_in_memory()->set_retention_seconds(retention);
  } else if (std::string path = args.Get("output"); !path.empty()) {
    output->set_path(path);
  } else {
    return absl::InvalidArgumentError("submit needs --output PATH or --in-memory");
  }
  core::WriteOptions write;
  STACKPROC_RETURN_IF_ERROR(core::ParseWriteFlags(args, write));
  output->set_compression(convert::ToProto(write.compression));
  output->set_compression_level(write.compression_level);
  output->set_predictor(convert::ToProto(write.predictor));
  if (write.chunks) convert::ToProto(*write.chunks, output->mutable_chunks());
  if (write.zarr_shards) convert::ToProto(*write.zarr_shards, output->mutable_zarr_shards());
  output->set_pyramid_levels(write.pyramid_levels);
  output->set_zarr_format(write.zarr_format);
  output->set_overwrite(write.overwrite);
  if (args.Has("channels")) {
    STACKPROC_ASSIGN_OR_RETURN(std::vector<int64_t> channels,
                               core::ParseChannelList(args.Get("channels")));
    for (int64_t c : channels) spec->add_channels(c);
  }
  if (std::string shards = args.Get("shards"); !shards.empty()) {
    int n = -1;
    if (!absl::SimpleAtoi(shards, &n) || n < 0) {
      return absl::InvalidArgumentError("--shards takes a count (0: the server decides)");
    }
    spec->set_shards(n);
  }
  request.set_request_id(args.Get("request-id"));
  STACKPROC_ASSIGN_OR_RETURN(v1::Job job, client.Submit(request));
  absl::PrintF("%s\n", job.id());
  std::fflush(stdout);
  if (!args.Has("wait")) return 0;
  return Follow(client, job.id());
}

// Runs a streamed job from a file to a file, showing its progress and the link's rates.
absl::StatusOr<int> ProcessAndReport(Client& client, Client::ProcessOptions& options) {
  ProgressDisplay display(stdout, ::isatty(STDOUT_FILENO));
  client.SetOnResume([&](const std::string& job, const absl::Status& why, absl::Duration wait) {
    display.Done();
    absl::FPrintF(stderr, "stackproc process: the call broke (%s); resuming job %s in %s\n",
                  why.message(), job, absl::FormatDuration(wait));
  });
  Client::WireCounts moved;
  display.ShowLink(&moved);
  options.counts = &moved;
  options.on_update = [&](const v1::Job& job) { display.Update(job); };
  absl::StatusOr<v1::Job> job = client.Process(options);
  display.Done();
  if (!job.ok()) return job.status();
  const auto mb = [](int64_t bytes) { return absl::StrFormat("%.1f MB", bytes / 1e6); };
  absl::PrintF("job %s succeeded: %s %s -> %s in %.2fs\n", job->id(), Shape(job->output_shape()),
               TypeName(job->output_type()), options.output_path,
               job->progress().elapsed_seconds());
  absl::PrintF("wire: sent %s as %s, received %s as %s (compression %s)\n", mb(moved.sent),
               mb(moved.sent_wire), mb(moved.received), mb(moved.received_wire),
               wire::WireCompressionName(moved.compression));
  return 0;
}

// process's flags, but for --resume (which takes none of them).
std::vector<std::string> ProcessFlags() {
  return core::Joined({"o", "output", "op", "channels", "wire-compression"}, core::WriteFlags());
}

absl::StatusOr<int> Process(const CliArgs& args, Client& client) {
  Client::ProcessOptions options;
  // Records for `--resume JOB` (without a place for them, the job runs all the same).
  absl::StatusOr<std::string> folder = ResumeFolder();
  if (folder.ok()) {
    options.resume_folder = *folder;
    SweepResumeRecords(*folder);  // what jobs before a restart left: never to be taken up
  }
  if (args.Has("resume")) {
    if (!args.positional.empty() ||
        std::ranges::any_of(ProcessFlags(), [&](const auto& flag) { return args.Has(flag); })) {
      return absl::InvalidArgumentError(
          "process --resume JOB takes the job's input, output and options from its record: "
          "give none of them");
    }
    if (!folder.ok()) return folder.status();
    options.resume_job = args.Get("resume");
    STACKPROC_ASSIGN_OR_RETURN(auto record, ReadResumeRecord(*folder, options.resume_job));
    absl::FPrintF(stderr, "stackproc process: taking up job %s (%s -> %s) at slice %d\n",
                  record.job_id, record.input, record.output, record.output_at.pages);
    options.output_path = record.output;
    return ProcessAndReport(client, options);
  }
  if (args.positional.size() != 1) {
    return absl::InvalidArgumentError(
        "process needs one INPUT (a local TIFF file or sequence of planes)");
  }
  options.input_path = args.positional[0];
  options.output_path = args.Get("o", args.Get("output"));
  if (options.output_path.empty()) return absl::InvalidArgumentError("process needs -o OUTPUT.tif");
  for (const std::string& text : args.All("op")) {
    STACKPROC_ASSIGN_OR_RETURN(options.ops.emplace_back(), ParseOpText(text));
  }
  if (args.Has("channels")) {
    STACKPROC_ASSIGN_OR_RETURN(options.channels, core::ParseChannelList(args.Get("channels")));
  }
  STACKPROC_RETURN_IF_ERROR(core::ParseWriteFlags(args, options.write));
  if (const std::string codec = args.Get("wire-compression", "auto"); codec != "auto") {
    STACKPROC_ASSIGN_OR_RETURN(options.wire_compression, wire::ParseWireCompression(codec));
  }
  return ProcessAndReport(client, options);
}

absl::StatusOr<int> Ops(Client& client) {
  STACKPROC_ASSIGN_OR_RETURN(auto ops, client.ListOperations());
  for (const v1::OperationDescriptor& op : ops) {
    std::vector<std::string> types;
    for (int t : op.pixel_types()) types.push_back(TypeName(static_cast<v1::PixelType>(t)));
    absl::PrintF("%s  (%s)\n    %s\n", op.name(), absl::StrJoin(types, ", "), op.doc());
    for (const v1::ParamDescriptor& p : op.params()) {
      std::string allowed = p.type() == v1::PARAM_TYPE_CHOICE
                                ? absl::StrCat("one of ", absl::StrJoin(p.choices(), "|"))
                            : p.type() == v1::PARAM_TYPE_FILE
                                ? "an image file"
                                : absl::StrCat(p.type() == v1::PARAM_TYPE_INT ? "int" : "float",
                                               " in [", p.min(), ", ", p.max(), "]");
      absl::PrintF("    %-12s %-30s default %-8s %s\n", p.name(), allowed,
                   p.default_value().empty() ? "none" : p.default_value(), p.doc());
    }
  }
  return 0;
}

absl::StatusOr<int> Info(Client& client) {
  STACKPROC_ASSIGN_OR_RETURN(v1::GetServerInfoResponse info, client.ServerInfo());
  const auto mib = [](int64_t bytes) { return absl::StrFormat("%.0f MiB", bytes / 1048576.0); };
  absl::PrintF("stackprocd %s%s\n", info.version(),
               info.tokens_required() ? " (calls need a token)" : "");
  absl::PrintF("limits: %d slices, %d pixels per side, %s a stack; memory budget %s\n",
               info.max_slices(), info.max_side(), mib(info.max_stack_bytes()),
               mib(info.memory_budget_bytes()));
  absl::PrintF("messages: chunks of up to %s, messages of up to %s\n", mib(info.max_chunk_bytes()),
               mib(info.max_message_bytes()));
  std::vector<std::string> codecs;
  for (int c : info.wire_compressions()) {
    codecs.emplace_back(wire::WireCompressionName(static_cast<v1::WireCompression>(c)));
  }
  absl::PrintF("wire compressions (streamed jobs): %s\n",
               codecs.empty() ? "none" : absl::StrJoin(codecs, ", "));
  for (const v1::FormatInfo& format : info.formats()) {
    absl::PrintF("format %s: %s; compressions %s\n", format.name(), format.named(),
                 format.compressions());
  }
  return 0;
}

absl::StatusOr<int> List(Client& client) {
  STACKPROC_ASSIGN_OR_RETURN(std::vector<v1::Job> jobs, client.List());
  absl::PrintF("%-12s %-11s %-19s %-9s %s\n", "JOB", "STATE", "STAGE", "SLICES", "INPUT -> OUTPUT");
  for (const v1::Job& j : jobs) {
    // A queued job's stage is why it waits: its words before the colon here, all of it in
    // stackproc status.
    const std::string& stage = j.progress().stage();
    absl::PrintF("%-12s %-11s %-19s %4lld/%-4lld %s -> %s\n", j.id(),
                 convert::JobStateName(j.state()), stage.substr(0, stage.find(':')),
                 j.progress().slices_done(), j.progress().slices_total(), InputOf(j), OutputOf(j));
  }
  return 0;
}

absl::StatusOr<int> Download(const CliArgs& args, Client& client) {
  STACKPROC_ASSIGN_OR_RETURN(std::string id, OneJobId(args, "download"));
  const std::string path = args.Get("o", args.Get("output"));
  if (path.empty()) return absl::InvalidArgumentError("download needs -o LOCAL.tif");
  core::WriteOptions write;
  STACKPROC_RETURN_IF_ERROR(core::ParseWriteFlags(args, write));
  // Refused before the result crosses the network: options of another format, an existing
  // output without --overwrite.
  STACKPROC_ASSIGN_OR_RETURN(core::OutputName name, core::ParseOutputName(path));
  STACKPROC_RETURN_IF_ERROR(core::ValidateOutput(name, write));
  if (!write.overwrite && std::filesystem::exists(std::filesystem::symlink_status(name.target))) {
    return absl::AlreadyExistsError(
        absl::StrCat(name.target, ": exists (use --overwrite to replace it)"));
  }
  STACKPROC_ASSIGN_OR_RETURN(core::Stack stack, client.Download(id));
  STACKPROC_RETURN_IF_ERROR(core::WriteStack(path, stack, write));
  absl::PrintF("wrote %s: %s %s (%.1f MB)\n", path, core::ShapeString(stack.shape()),
               core::PixelTypeName(stack.pixel_type()), stack.size_bytes() / 1e6);
  return 0;
}

// The pipeline on a few slices of a stack under the server's data root: the montage PNG, or
// the processed slices' bytes (--format raw), written locally.
absl::StatusOr<int> Preview(const CliArgs& args, Client& client) {
  if (args.positional.size() != 1) return absl::InvalidArgumentError("preview needs one INPUT");
  const std::string output = args.Get("o");
  if (output.empty()) return absl::InvalidArgumentError("preview needs -o OUT.png");
  STACKPROC_ASSIGN_OR_RETURN(
      core::PreviewRequest parsed,
      core::PreviewRequestOf(args.positional[0], args.All("op"), args.Get("z"), args.Get("slices"),
                             args.Get("roi"), args.Get("channels")));
  const std::string format = args.Get("format", "png");
  int side = 512;
  if ((format != "png" && format != "raw") ||
      (args.Has("max-side") && (!absl::SimpleAtoi(args.Get("max-side"), &side) || side < 32))) {
    return absl::InvalidArgumentError("--format is png or raw; --max-side at least 32 pixels");
  }
  // Parsed here for the refusals without a call; the server expands the sweep itself.
  v1::PreviewRequest request;
  request.set_input_path(parsed.input);
  for (const std::string& op : args.All("op")) request.add_sweep(op);
  for (int64_t z : parsed.slices) request.add_slices(z);
  for (int64_t c : parsed.channels) request.add_channels(c);
  request.set_count(parsed.count);
  if (parsed.region) {
    request.mutable_region()->set_x(parsed.region->x);
    request.mutable_region()->set_y(parsed.region->y);
    request.mutable_region()->set_width(parsed.region->width);
    request.mutable_region()->set_height(parsed.region->height);
  }
  request.set_format(format == "raw" ? v1::PREVIEW_FORMAT_RAW : v1::PREVIEW_FORMAT_PNG);
  request.set_max_tile_side(side);
  STACKPROC_ASSIGN_OR_RETURN(Client::PreviewResult result, client.Preview(request));
  std::string bytes = result.png;
  if (format == "raw" && !result.stacks.empty()) {  // the variants' stacks, after the input's
    core::Preview preview;
    std::move(result.stacks.begin() + 1, result.stacks.end(), std::back_inserter(preview.after));
    bytes = core::RawPreviewBytes(preview);
  }
  STACKPROC_RETURN_IF_ERROR(core::WritePreviewFile(output, bytes, args.Has("overwrite")));
  auto label = [](std::string* out, const v1::PlanePlace& p) { out->append(p.label()); };
  absl::PrintF("%s: slices %s; %s\n", output, absl::StrJoin(result.info.places(), ", ", label),
               absl::StrJoin(result.info.labels(), " | "));
  for (const std::string& note : result.info.notes()) absl::PrintF("note: %s\n", note);
  return 0;
}

// Resumes every job named, then (--wait) follows them one after another; fails when any does.
absl::StatusOr<int> Resume(const CliArgs& args, Client& client) {
  if (args.positional.empty()) return absl::InvalidArgumentError("resume needs JOB ids");
  for (const std::string& id : args.positional) {
    STACKPROC_ASSIGN_OR_RETURN(v1::Job job, client.Resume(id));
    absl::PrintF("job %s: %s\n", job.id(), convert::JobStateName(job.state()));
  }
  if (!args.Has("wait")) return 0;
  for (const std::string& id : args.positional)
    STACKPROC_RETURN_IF_ERROR(Follow(client, id).status());
  return 0;
}

}  // namespace

const std::vector<std::string>& Switches() {
  static const std::vector<std::string> switches = {"wait", "in-memory", "overwrite", "help"};
  return switches;
}

bool IsCommand(const std::string& command) {
  static const std::set<std::string> kCommands = {
      "ops",    "submit", "process",  "watch",  "status", "list",   "cancel",
      "resume", "delete", "download", "health", "info",   "preview"};
  return kCommands.contains(command);
}

absl::Status CheckFlags(const std::string& command, const CliArgs& args) {
  using core::Joined;
  using core::WriteFlags;
  // Every command takes the connection's flags; besides, only its own.
  const std::vector<std::string> connection = {"server",      "token",      "tls-ca",
                                               "client-cert", "client-key", "help"};
  static const std::map<std::string, std::vector<std::string>> kFlags = {
      {"submit", Joined({"input", "op", "channels", "output", "in-memory", "retention",
                         "request-id", "shards", "wait"},
                        WriteFlags())},
      {"process", Joined(ProcessFlags(), {"resume"})},
      {"download", Joined({"o", "output"}, WriteFlags())},
      {"resume", {"wait"}},
      {"preview", core::PreviewFlags()},
  };
  auto own = kFlags.find(command);
  return args.CheckKnown(
      Joined(connection, own == kFlags.end() ? std::vector<std::string>{} : own->second),
      "stackproc " + command);
}

absl::StatusOr<int> RunCommand(const std::string& command, const CliArgs& args, Client& client) {
  if (command == "ops") return Ops(client);
  if (command == "submit") return Submit(args, client);
  if (command == "process") return Process(args, client);
  if (command == "list") return List(client);
  if (command == "info") return Info(client);
  if (command == "preview") return Preview(args, client);
  if (command == "download") return Download(args, client);
  if (command == "health") {
    STACKPROC_ASSIGN_OR_RETURN(bool serving, client.Healthy());
    absl::PrintF("%s\n", serving ? "SERVING" : "NOT_SERVING");
    return serving ? 0 : 1;
  }
  if (command == "resume") return Resume(args, client);
  STACKPROC_ASSIGN_OR_RETURN(std::string id, OneJobId(args, command.c_str()));
  if (command == "watch") return Follow(client, id);
  if (command == "status") {
    STACKPROC_ASSIGN_OR_RETURN(v1::Job job, client.Get(id));
    PrintJob(job);
    return 0;
  }
  if (command == "cancel") {
    // A running job stops at its next slice (a cluster's, once its shards are cancelled): say
    // what it came to, not what it was when asked.
    STACKPROC_ASSIGN_OR_RETURN(v1::Job job, client.Cancel(id));
    STACKPROC_ASSIGN_OR_RETURN(job, client.Watch(id, [](const v1::Job&) {}));
    absl::PrintF("job %s: %s\n", job.id(), convert::JobStateName(job.state()));
    return 0;
  }
  if (command == "delete") {
    STACKPROC_RETURN_IF_ERROR(client.Delete(id));
    absl::PrintF("job %s deleted\n", id);
    return 0;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown command '", command, "'"));
}

}  // namespace stackproc::client
