// Previews: a pipeline run on a few slices of a stack (optionally a region of them), to judge
// its parameters by eye before processing the whole stack; several values of a parameter side
// by side; and the montage PNG a person reads (before | after, labelled).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/file.h"
#include "core/pipeline/operation_registry.h"
#include "core/stack/stack.h"
#include "core/tiff/tiff_reader.h"

namespace stackproc::core {

// One pipeline of a preview, and how its column is labelled.
struct PreviewVariant {
  std::vector<OpSpec> ops;
  std::string label;  // what sets it apart: "clip=2", or the pipeline when nothing is swept
};

// The pipelines that operation texts with swept values make: "clahe:clip=1,2,4" (a key's
// further values follow it, without "=") gives three, one per value; several swept keys give
// every combination, at most kMaxPreviewVariants. Texts without a sweep give one.
inline constexpr int kMaxPreviewVariants = 8;
absl::StatusOr<std::vector<PreviewVariant>> ExpandSweep(const std::vector<std::string>& texts);

struct Region {
  int64_t x = 0, y = 0, width = 0, height = 0;
};
// "X,Y,W,H".
absl::StatusOr<Region> ParseRegion(const std::string& text);

struct PreviewRequest {
  std::string input;                     // as OpenInput takes it
  std::vector<PreviewVariant> variants;  // one column each; none: the slices alone
  std::vector<int64_t> slices;           // the z to preview; empty: `count` evenly spaced
  // Only these channels of the input (from 0, in this order), as --channels chooses them for a
  // run: slices number the chosen stack's planes. Empty: every channel.
  std::vector<int64_t> channels;
  int count = 3;
  std::optional<Region> region;  // of each slice; unset: the whole slice
  std::string title;             // the pipeline as the caller wrote it (default: the first's)
};

inline constexpr int kMaxPreviewSlices = 16;
// The most pixel bytes a preview holds: its slices, and each variant's result on them.
inline constexpr uint64_t kMaxPreviewBytes = uint64_t{512} << 20;

struct Preview {
  std::string input;
  std::vector<int64_t> z;           // the slices (planes), in the order asked
  std::vector<PlaneIndex> at;       // each one's place in the input (c: its number there)
  std::vector<std::string> where;   // each one's label: "z=12", or "t=0 c=1 z=12"
  Stack before;                     // those slices (their region), as read
  std::vector<Stack> after;         // each variant's result on them
  std::vector<std::string> labels;  // each variant's
  std::string pipeline;             // the ops as given, sweeps included, for the title
  std::vector<std::string> notes;   // what a reader must know (statistics from the sample)
};

// Reads only the chosen slices of `request.input` (through `files`, within `limits`) and runs
// each variant on them with the engine. A whole-stack step (normalize:scope=stack) takes its
// statistics from these slices, and a note says so. InvalidArgument for slices outside the
// stack, a region outside the slice, too many slices or variants; ResourceExhausted beyond
// kMaxPreviewBytes.
absl::StatusOr<Preview> RunPreview(const Files& files, const PreviewRequest& request,
                                   const StackLimits& limits = {});

// A preview request from the programs' flags: the input, the --op texts (sweeps allowed),
// -z "100,2000,3900" or --slices K, and --roi "X,Y,W,H" (each may be empty).
absl::StatusOr<PreviewRequest> PreviewRequestOf(const std::string& input,
                                                const std::vector<std::string>& ops,
                                                const std::string& z, const std::string& count,
                                                const std::string& roi,
                                                const std::string& channels = "");

// The flags of the programs' preview commands (PreviewRequestOf's, and -o, --format,
// --max-side, --overwrite).
const std::vector<std::string>& PreviewFlags();

// Writes a preview's file (the PNG, or the raw slices) whole or not at all; an existing file
// is replaced only with `overwrite` (AlreadyExists otherwise).
absl::Status WritePreviewFile(const std::string& path, absl::string_view bytes, bool overwrite);

// What `--format raw` writes: each variant's slices in turn, little-endian, and a line that
// says how they lie.
std::string RawPreviewBytes(const Preview& preview);
std::string RawPreviewLayout(const Preview& preview);

// The montage as a PNG: a title (input and pipeline), then one row per slice: before, then
// each variant, labelled with z and the variant. uint8 is shown as it is; uint16 and float32
// are stretched between their 0.5th and 99.5th percentiles (the label says so). Tiles larger
// than `max_tile_side` pixels are shrunk (area interpolation) to fit.
absl::StatusOr<std::string> MontagePng(const Preview& preview, int max_tile_side = 512);

}  // namespace stackproc::core
