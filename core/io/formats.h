// The formats stackproc reads and writes, and how an input or an output names its format:
//
//   TIFF            input: a file                output: NAME.tif, NAME.tiff
//   plane sequence  input: a folder, a pattern   output: NAME/, NAME/z%04d.tif
//                   (planes/z%04d.tif), a glob
//   OME-Zarr        input: NAME.zarr, or a       output: NAME.zarr, NAME.ome.zarr
//                   folder with .zarray/.zattrs
//
// An output named otherwise is refused.
//
// Every job (stackproc-local, a path job, a streamed job's local output) opens its input and
// its output here.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/file.h"
#include "core/exec/engine.h"
#include "core/pipeline/operation.h"
#include "core/tiff/tiff_reader.h"
#include "core/tiff/tiff_writer.h"

namespace stackproc::core {

enum class Format { kTiff, kPlanes, kOmeZarr };
// "TIFF", "plane sequence", "OME-Zarr".
absl::string_view FormatName(Format format);

// What an output's name says.
struct OutputName {
  Format format = Format::kTiff;
  // What is created: the file, or the folder of the planes or of the store (which must be new).
  std::string target;
  std::string pattern;  // a plane sequence: each plane's file name ("z%04d.tif")
};
// InvalidArgument for a malformed name (a pattern with a bad conversion, a sequence without a
// folder of its own).
absl::StatusOr<OutputName> ParseOutputName(const std::string& output);

// Whether an output of `format` that exists at `target` may be replaced (overwrite): a
// TIFF file may; a folder only when it holds what the format writes (an OME-Zarr image or array;
// nothing but .tif files), so that overwriting never removes a folder of something else.
// FailedPrecondition otherwise, naming what is in the way.
absl::Status CheckReplaceable(Format format, const OutputTarget& target);

// Whether `options` suit the output `name` names, checked before anything is read: a
// compression of the format (lzw is TIFF's, lz4 OME-Zarr's), chunks and pyramid levels only for
// OME-Zarr and within range. InvalidArgument naming the option otherwise.
absl::Status ValidateOutput(const OutputName& name, const WriteOptions& options);

// What `compression` is for the output `name` names ("none", "deflate", "blosc:zstd,level=3,
// shuffle=byte"): the format's default resolved, the codec an OME-Zarr store names.
std::string EffectiveCompression(const OutputName& name, const WriteOptions& write);

// What the output's sink holds in memory (for the plan, before it exists).
SinkTraits OutputTraits(const OutputName& name, const WriteOptions& options);

// The input `input` names, opened through `files` and validated: an OME-Zarr image or Zarr
// array, a plane sequence, or a TIFF file.
absl::StatusOr<std::unique_ptr<SliceSource>> OpenInput(const Files& files, const std::string& input,
                                                       const StackLimits& limits = {});

// Reads the images operations' file parameters name (flatfield:flat=) as inputs are read:
// through `files` (which must outlive it), any format OpenInput takes, one plane only; each
// path once, however often a pipeline asks (its ops share the image's pixels, read-only).
ImageReader ImagesIn(const Files& files, const StackLimits& limits = {});

// A sink for what `output` names (ValidateOutput first), in `target` when given (the file's, or
// the folder's, directory already open) else found by path.
absl::StatusOr<std::unique_ptr<SliceSink>> OpenOutput(
    const std::string& output, const WriteOptions& options,
    const std::optional<OutputTarget>& target = std::nullopt);

// Writes `stack` (and its metadata) to what `output` names: a run with no steps into OpenOutput's
// sink. Nothing is left under the output's name on error.
absl::Status WriteStack(const std::string& output, const Stack& stack, const WriteOptions& options);

// What each format reads and writes, for `stackproc-local formats` and the README's table.
struct FormatInfo {
  Format format;
  std::string named;         // how an input or output names it
  std::string reads;         // what of it is read
  std::string writes;        // what is written
  std::string compressions;  // --compression values for outputs, the default first
  std::string options;       // options of its own
};
const std::vector<FormatInfo>& Formats();

// A paragraph for the programs' usage: how inputs and outputs name their format, and the write
// options.
absl::string_view FormatsHelp();

}  // namespace stackproc::core
