// The physical size of a voxel, as TIFF files state it in three places (ImageJ's description:
// unit= and spacing=; OME-XML's PhysicalSizeX/Y/Z; the X/Y resolution tags) and as OME-Zarr
// states it (a scale per axis and a unit): read from one, written as the other.
#pragma once

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "core/stack/metadata.h"

namespace stackproc::core {

struct StackShape;

struct VoxelSize {
  std::optional<double> z;  // the spacing of slices
  std::optional<double> y;  // the pixel size along Y
  std::optional<double> x;
  // The unit of z, y and x, as OME-NGFF (UDUNITS-2) names it: "micrometer", "nanometer", ...;
  // empty when the file names none.
  std::string unit;
};

// The unit OME-NGFF names for a unit as ImageJ, OME-XML or a person writes it ("micron", "um",
// "µm", "\u00B5m" -> "micrometer"; "nm" -> "nanometer"); empty for none or one it does not know.
std::string NgffUnitName(absl::string_view unit);

// The voxel size after slices of voxels of `size` were resampled or turned as `geometry` says.
VoxelSize Resampled(const VoxelSize& size, const PixelGeometry& geometry);

// What `metadata` states: ImageJ's unit and spacing with the resolution tags, else OME-XML's
// physical sizes, else resolution tags in centimetres or inches (as micrometres).
VoxelSize VoxelSizeOf(const StackMetadata& metadata);

// Metadata stating `size` for a stack of `shape` and `type`: an ImageJ description (the depth,
// the unit, the spacing) and the resolution tags, as Fiji writes them; for a stack of several
// channels or time points (`dims`, planes t, c, z) OME-XML with its physical sizes.
StackMetadata MetadataOfVoxelSize(const VoxelSize& size, const StackShape& shape, PixelType type,
                                  const Dimensions& dims = {});

}  // namespace stackproc::core
