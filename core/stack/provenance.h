// What made an output: stackproc's version, the pipeline with every parameter resolved (defaults
// included; OperationRegistry::Complete), the choices that shaped the result (channels, a shard's
// z-range, the codec, OME-Zarr chunks and pyramid), the input (its name, shape, type and size),
// when the run began and what ran it. Every output records it where its readers keep it:
//
//   TIFF, ImageJ description (or any text)   a line "stackproc={...}" (ImageJ keeps unknown keys
//                                            and tifffile lists them in imagej_metadata)
//   TIFF, OME-XML                            a MapAnnotation of namespace "stackproc" in
//                                            StructuredAnnotations (one M per field)
//   TIFF, tifffile's JSON description        its "stackproc" key
//   OME-Zarr                                 the group's "stackproc" attribute
//   plane folder                             stackproc.json beside the planes
//
// Readers take it out of the description (StackMetadata::provenance), so that it never mixes
// with what a run writes. `stackproc-local info` prints it; `stackproc-local rerun` runs it again.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace stackproc::core {

struct Provenance {
  std::string version;                // stackproc's
  std::vector<std::string> pipeline;  // each step's spec with every parameter
  std::string channels;               // --channels ("2+0"); empty: every channel
  std::string z_range;                // "A:B", a shard's slices; empty: all of them
  std::string compression;            // CompressionText of the write
  std::string chunks;                 // OME-Zarr "DxHxW"; empty: the default
  int pyramid = 0;                    // OME-Zarr levels below full resolution
  int zarr_format = 0;                // OME-Zarr: 2 or 3; 0 for other outputs
  std::string shards;                 // Zarr v3 "DxHxW"; empty: the default
  struct Input {
    std::string name;  // as the run was given it: a path, or a streamed upload's name
    int64_t t = 1, c = 1, z = 0, y = 0, x = 0;
    std::string type;  // "uint16"
    uint64_t bytes = 0;
    friend bool operator==(const Input&, const Input&) = default;
  } input;
  std::string time;      // when the job began (a server's: submitted): UTC, ISO 8601, seconds
  std::string executor;  // "local", "stackprocd job 12", "slurm array 3456"

  friend bool operator==(const Provenance&, const Provenance&) = default;
};

// The namespace of the record: its JSON key, its ImageJ key, its OME annotation's namespace, the
// name of a folder's sidecar.
inline constexpr char kProvenanceKey[] = "stackproc";
inline constexpr char kProvenanceSidecar[] = "stackproc.json";

// stackproc's version (CMake's project version).
absl::string_view StackprocVersion();
// `time` as the record states it: "2026-12-06T13:20:05Z".
std::string ProvenanceTime(absl::Time time);

// The record as a JSON object, its keys in a fixed order (one line, or indented).
std::string ProvenanceJson(const Provenance& provenance, bool indented = false);
// InvalidArgument naming what is wrong (not JSON, a field of the wrong type).
absl::StatusOr<Provenance> ParseProvenanceJson(absl::string_view json);

// `description` with `provenance` added where its kind keeps it (table above); an empty
// description is given one line.
std::string DescriptionWithProvenance(const std::string& description, const Provenance& provenance);
// The record `description` holds, taken out of it; nullopt (the description untouched) when it
// holds none or one that does not parse.
std::optional<Provenance> TakeProvenance(std::string& description);

}  // namespace stackproc::core
