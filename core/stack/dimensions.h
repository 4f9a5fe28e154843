// How a stack's planes are time points, channels and z-slices. Facility data is t, c, z, y, x:
// the engine runs over planes (StackShape::depth of them, in the order the input stores them)
// and this says which (t, c, z) each plane is, as the input's metadata states it:
//
//   OME-XML      SizeT, SizeC, SizeZ and DimensionOrder (XYZCT: z fastest), TiffData checked
//   ImageJ       frames=, channels=, slices= (hyperstacks are XYCZT: channel fastest)
//   OME-Zarr     the t and c axes of NGFF's t, c, z, y, x (z fastest)
//
// A stack that says nothing of channels or time points is one z-stack.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stackproc::core {

// What an input says of one channel.
struct ChannelInfo {
  std::string name;
  std::optional<uint32_t> rgba;               // display colour, 0xRRGGBBAA
  std::optional<double> emission_wavelength;  // nm
  // The display window (NGFF omero's window start/end), in pixel values.
  std::optional<double> window_start;
  std::optional<double> window_end;
  friend bool operator==(const ChannelInfo&, const ChannelInfo&) = default;
};

// Where one plane is.
struct PlaneIndex {
  int64_t t = 0;
  int64_t c = 0;
  int64_t z = 0;
  friend bool operator==(const PlaneIndex&, const PlaneIndex&) = default;
};

struct Dimensions {
  int64_t times = 1;
  int64_t channels = 1;
  // The order the planes are stored in, fastest-varying first: "ZCT" (OME's XYZCT and NGFF's
  // t, c, z) or any other order of the three letters ("CZT": ImageJ's hyperstacks).
  std::string order = "ZCT";
  std::vector<ChannelInfo> channel_info;  // empty, or one per channel
  // A stack of some of another's planes (a z-range shard, a preview's slices) keeps that
  // stack's dimensions and says which planes it has: the whole stack's plane count (0: these
  // are all of it), and its planes' places there: from `first_plane` on, or `picked`.
  int64_t whole_planes = 0;
  int64_t first_plane = 0;
  std::vector<int64_t> picked;

  friend bool operator==(const Dimensions&, const Dimensions&) = default;

  // One z-stack: no channels or time points to speak of.
  bool single() const { return times == 1 && channels == 1; }
  // The planes of the whole stack, of which a stack of `planes` planes holds some or all.
  int64_t Whole(int64_t planes) const { return whole_planes > 0 ? whole_planes : planes; }
  // The z-slices of the whole stack (its planes / (times x channels)).
  int64_t Slices(int64_t planes) const { return Whole(planes) / (times * channels); }
  // Where plane `plane` of a stack of `planes` planes is in the whole stack, and the inverse
  // for a whole stack.
  PlaneIndex Of(int64_t plane, int64_t planes) const;
  int64_t PlaneOf(const PlaneIndex& index, int64_t planes) const;
  // How many planes apart two consecutive z-slices of one (t, c) volume are stored: 1 when z
  // is fastest (ZCT), the channels for ImageJ's CZT.
  int64_t ZStride() const;
  // InvalidArgument unless the whole stack's planes are times x channels x z-slices and a
  // stack of `planes` planes fits in it.
  absl::Status Check(int64_t planes) const;
  // These dimensions for planes [first, first + count) of a stack of `planes`, or for the
  // planes `picked` of it.
  Dimensions Range(int64_t first, int64_t count, int64_t planes) const;
  Dimensions Picked(std::vector<int64_t> planes_picked, int64_t planes) const;

  // "1 z-stack", "2 channels x 10 z", "3 time points x 2 channels x 10 z (planes ZCT)".
  std::string Describe(int64_t planes) const;
};

// "0+2" (--channels, and an operation's channels=): channel numbers from 0 joined by '+', in
// the order given, each once. InvalidArgument otherwise.
absl::StatusOr<std::vector<int64_t>> ParseChannelList(absl::string_view text);

// InvalidArgument unless `order` is the three letters Z, C and T in some order.
absl::Status CheckOrder(absl::string_view order);

// What a TIFF's ImageDescription says of its `pages` pages of `samples` samples per pixel each:
// an OME-XML document or an ImageJ description; one z-stack for any other. Each sample is a plane
// (sample s of page p is plane p x samples + s): pages of several samples (RGB, or n channels in
// one page) are channels stored fastest. InvalidArgument naming the mismatch when the counts it
// states do not make the pages, when OME-XML maps pages out of its DimensionOrder or describes
// several images or files, or when the samples cannot be channels stored fastest: such a file is
// refused, never read as something else.
absl::StatusOr<Dimensions> DimensionsOf(absl::string_view description, int64_t pages,
                                        int64_t samples = 1);

}  // namespace stackproc::core
