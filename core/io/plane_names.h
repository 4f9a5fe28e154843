// What the file names of a sequence's planes say of their time points and channels
// (sequence_io.h): stackproc's own names (t0_c1_z0003.tif), a field pattern's
// (img_c{c}_z{z}.tif), and names that carry a channel no pattern named. Internal to core/io.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/file.h"
#include "core/stack/dimensions.h"

namespace stackproc::core {

// The files of a sequence, in t, c, z order (z fastest), and their time points and channels
// when their names say (else one z-stack).
struct PlaneFiles {
  std::vector<std::string> paths;
  std::optional<Dimensions> dims;
};

// Planes named by their time point and channel as well as z (t0_c1_z0003.tif: what
// SequenceSink writes for such a stack), in natural order: their dimensions, once each file is
// checked to be the plane its place says; nullopt when the names do not say (no t or c prefix).
// InvalidArgument for a name that breaks the grid, naming it.
absl::StatusOr<std::optional<Dimensions>> NamedDimensions(const std::vector<std::string>& paths);

// The files in folder `dir` (through `files`) that the field pattern `name` matches ({z}, {c}
// and {t}, each at most once and one at least, each a run of digits), in t, c, z order, with their
// time points and channels. Each axis's numbers must run without a gap (from 0, 1 or any
// start), and every (t, c, z) be there once; InvalidArgument naming what is not, or a malformed
// pattern; NotFound when nothing matches. `input` is what messages call the sequence.
absl::StatusOr<PlaneFiles> Fielded(const Files& files, const std::string& dir,
                                   const std::string& name, const std::string& input);

// InvalidArgument when the names of a folder's or glob's planes carry an index of channel or
// time point (img_c1_z0003.tif, img_channel000_..._z000.tif: numbers from 0 or 1 without a gap)
// beside another number that varies: read in natural order, the planes of all channels would
// become one z-stack. Names with only such an index (img_c1.tif) read as before.
absl::Status CheckNoUnnamedAxes(const std::string& input, const std::vector<std::string>& paths);

}  // namespace stackproc::core
