// A stack kept as a sequence of 2-D TIFF files, one per plane (micro-CT reconstructions,
// light-sheet acquisitions, Fiji's "Image Sequence"), as a slice source. An input names one as
//   a directory         every *.tif / *.tiff in it ("planes/")
//   a printf pattern    the files the pattern makes, numbers consecutive ("planes/z%04d.tif")
//   a field pattern     the files whose names carry the z-slice, and the channel and time point
//                       where the pattern says ("planes/img_c{c}_z{z}.tif", "T{t}_C{c}_Z{z}.tif":
//                       each field a run of digits; each axis's numbers consecutive, from any
//                       start; every combination there once)
//   a glob              the files that match it ("planes/*.tif")
// in natural order (z2 before z10); hidden files (".name") are left out. A file of several
// pages gives them in order. Files named by time point and channel as well (t0_c1_z0003.tif,
// as SequenceSink writes a stack of them) are read as those; a folder or glob whose names carry
// a channel or time point in another form (img_c1_z0003.tif) is refused, asking for a field
// pattern, rather than read as more z-slices.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/file.h"
#include "core/exec/engine.h"
#include "core/io/plane_names.h"
#include "core/tiff/tiff_reader.h"
#include "core/tiff/tiff_writer.h"

namespace stackproc::core {

// Natural order: runs of digits compare by their value ("z2" < "z10"), the rest by character.
bool NaturalLess(const std::string& a, const std::string& b);

// The files of the sequence `input` names; nullopt when `input` names no sequence (a single
// file). NotFound when nothing matches; InvalidArgument for a pattern with a gap in its numbers
// (naming the missing file), a malformed pattern, or names that carry channels or time points
// no pattern names.
absl::StatusOr<std::optional<PlaneFiles>> ListPlanes(const Files& files, const std::string& input);

class SequenceSource final : public SliceSource {
 public:
  // Validates every file now (ProbeTiff: each page as a TIFF page is; every plane the size and
  // type of the first, errors naming the file), then keeps only their names: a plane's file is
  // opened as the plane is read, so a sequence of any length holds no descriptors.
  static absl::StatusOr<std::unique_ptr<SequenceSource>> Open(const Files& files, PlaneFiles planes,
                                                              const StackLimits& limits = {});

  const StackInfo& info() const override { return info_; }
  absl::Status Read(int64_t z, uint8_t* buffer) override;

 private:
  struct File {
    std::string path;
    TiffInfo info;
    int64_t first_plane = 0;
  };
  SequenceSource(const Files& files, std::vector<File> planes, StackInfo info)
      : files_(files), files_of_planes_(std::move(planes)), info_(std::move(info)) {}

  const Files& files_;
  std::vector<File> files_of_planes_;  // by first_plane
  StackInfo info_;
};

// Where a sequence of planes is to be written, when `output` names one: a folder name ending in
// "/" (the planes named z%04d.tif) or a file name with a %d, %Nd or %0Nd conversion (the planes
// named by it, in the folder before it). nullopt: `output` names a single file.
struct SequenceOutput {
  std::string folder;
  std::string pattern;
};
absl::StatusOr<std::optional<SequenceOutput>> ParseSequenceOutput(const std::string& output);

// Whether a file's name says TIFF: NAME.tif or NAME.tiff, in any case.
bool IsTiffName(absl::string_view name);

// Writes one single-page TIFF per plane (the stack's metadata, its depth made 1) into a folder
// made for the sequence under a temporary name beside its final one; Close renames it into
// place, so the sequence is complete under its name or absent. Planes are written as they are
// processed, in the engine's parallel stage. A sink never closed removes its temporary folder.
class SequenceSink final : public SliceSink {
 public:
  // `folder`: the sequence's folder (its parent open, its name), which must not exist yet.
  SequenceSink(OutputTarget folder, std::string pattern, WriteOptions options);

  SinkTraits traits() const override {
    return {.compressed = CompressesTiff(options_.compression)};
  }
  absl::Status Open(const StackInfo& output, int64_t window_slices,
                    std::function<void(int64_t)> release) override;
  absl::Status Encode(int64_t z, const uint8_t* data) override;  // writes plane z's file
  absl::Status Write(int64_t, const uint8_t*) override { return absl::OkStatus(); }
  absl::Status Close() override;

 private:
  const OutputTarget folder_;
  const std::string pattern_;
  const WriteOptions options_;
  std::function<std::string(int64_t)> name_of_;  // plane z's file name, from pattern_
  StackInfo plane_;                              // one plane: shape, type, metadata
  std::optional<TempFolder> temp_;               // the folder, while it is written
};

}  // namespace stackproc::core
