// Slice operations: self-describing (name, doc, typed parameters with defaults and ranges, all
// declared once in an OperationInfo), configured from text, applied to one slice at a time.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <opencv2/core/mat.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/stack/metadata.h"
#include "core/stack/pixel_type.h"
#include "core/stack/stack.h"
#include "core/stack/voxel_size.h"

namespace stackproc::core {

class Stack;

enum class ParamType { kInt, kDouble, kChoice, kFile };

// One parameter of an operation. Validation, listing and defaults all read this.
struct ParamSpec {
  std::string name;
  ParamType type = ParamType::kDouble;
  std::string default_value;  // text form, valid for the spec
  double min = 0;             // inclusive range for kInt / kDouble
  double max = 0;
  std::vector<std::string> choices;  // kChoice
  std::string doc;                   // one line
  // Its absence means something of its own (the op asks ParamValues::IsSet: gaussian's ksize
  // when sigma is given): a spec completed with every parameter leaves it out unless given.
  bool only_when_given = false;
  // A parameter it means nothing beside (sigma smooths an estimated flat; a flat= image has
  // none): given together they are refused, and a spec completed with every parameter leaves
  // this one's default out when that one is given.
  std::string unused_with = {};

  // "int in [1, 255]", "float in [0, 100]", "one of rect|ellipse|cross".
  std::string AllowedText() const;
};

ParamSpec IntParam(std::string name, int default_value, int min, int max, std::string doc);
ParamSpec DoubleParam(std::string name, double default_value, double min, double max,
                      std::string doc);
ParamSpec ChoiceParam(std::string name, std::vector<std::string> choices, std::string doc);
// An image file the op reads (a flat field): a path, as the job's inputs are given (beneath the
// server's data root); only_when_given.
ParamSpec FileParam(std::string name, std::string doc);
// `spec`, marked only_when_given.
ParamSpec OnlyWhenGiven(ParamSpec spec);
// `spec`, meaning nothing beside parameter `other` (ParamSpec::unused_with).
ParamSpec UnusedWith(ParamSpec spec, std::string other);

struct OperationInfo {
  std::string name;
  std::string doc;  // one line
  std::vector<ParamSpec> params;
  std::vector<PixelType> pixel_types;  // input types it accepts
  // Its result at a pixel may depend on the whole slice (tiles, the slice's statistics), not
  // only on a neighbourhood: a region of the slice processed alone differs throughout.
  bool whole_slice = false;
};

// Reads the image a file parameter names: one plane, in its own pixel type, found as the job
// finds its input (through its Files: beneath the server's data root). Errors name the file.
using ImageReader = std::function<absl::StatusOr<cv::Mat>(const std::string& path)>;

// Parameter values of one configured operation: every declared parameter, given or defaulted,
// already validated against its spec.
class ParamValues {
 public:
  int Int(const std::string& name) const;
  double Double(const std::string& name) const;
  const std::string& Choice(const std::string& name) const;
  // A file parameter's path as given.
  const std::string& Text(const std::string& name) const { return text_.at(name); }
  // Whether the user gave this parameter (rather than its default).
  bool IsSet(const std::string& name) const { return given_.count(name) > 0; }
  // The image file parameter `name` names, read; FailedPrecondition when whoever made the
  // pipeline reads no files (its ImageReader is unset). Messages say "name: ...".
  absl::StatusOr<cv::Mat> Image(const std::string& name) const;

 private:
  friend class OperationRegistry;
  std::map<std::string, std::string> text_;
  std::map<std::string, double> numbers_;
  std::map<std::string, bool> given_;
  ImageReader images_;
};

// The format of one slice.
struct SliceFormat {
  int height = 0;
  int width = 0;
  PixelType type = PixelType::kUint8;

  // The slices of a stack of `shape` and `type` (the one place a stack's format becomes the
  // engine's; a side fits an int: kMaxSliceSide).
  static SliceFormat Of(const StackShape& shape, PixelType type) {
    return {static_cast<int>(shape.height), static_cast<int>(shape.width), type};
  }
  size_t bytes() const {
    return static_cast<size_t>(height) * static_cast<size_t>(width) * BytesPerPixel(type);
  }
  friend bool operator==(const SliceFormat&, const SliceFormat&) = default;
};

// A configured operation. Apply is const and called concurrently for different slices.
class SliceOp {
 public:
  virtual ~SliceOp() = default;

  // The output format for `in`; InvalidArgument (naming the op and what it accepts) when the
  // op cannot take `in`. The default keeps the format.
  virtual absl::StatusOr<SliceFormat> OutputFormat(const SliceFormat& in) const { return in; }

  // Told the physical size of its input's voxels (what the stack states, followed through the
  // steps before) when the pipeline is bound to a stack, before any Apply: an op whose extent
  // is a distance (gaussian3d:units=physical) works out its kernels here, or says what is
  // missing (InvalidArgument).
  virtual absl::Status Calibrate(const VoxelSize& voxel) {
    (void)voxel;
    return absl::OkStatus();
  }

  // How output pixels relate to input pixels (for metadata); default: unchanged.
  virtual void UpdateGeometry(const SliceFormat& in, PixelGeometry& geometry) const {
    (void)in;
    (void)geometry;
  }

  // Computes `dst` from `src`. `dst` is allocated with OutputFormat(src) and never aliases
  // `src`; Apply must write into it and must not reallocate it. May throw cv::Exception.
  virtual void Apply(const cv::Mat& src, cv::Mat& dst) const = 0;

  // Operations that need planes around the one they make (3-D filters) return how many on
  // each side, h: the engine then calls ApplyPlanes. 0: Apply on the plane alone.
  virtual int HaloPlanes() const { return 0; }
  // Computes `dst` from `planes`: the 2h + 1 planes of one (t, c) volume centred on the one
  // made (planes[h]), those past the volume's first or last plane mirrored about it (z -1 is
  // z 1: OpenCV's BORDER_REFLECT_101, scipy.ndimage's "mirror"). Same contract as Apply.
  virtual void ApplyPlanes(const std::vector<cv::Mat>& planes, cv::Mat& dst) const {
    Apply(planes[planes.size() / 2], dst);
  }

  // Operations that need statistics of their whole input stack (normalize over the stack)
  // return true; the engine then materialises their input and calls PrepareForStack once,
  // before any Apply, with the planes whose statistics this op takes: one channel's (the
  // pipeline makes an op per channel), or one channel's at one time point when
  // StatisticsPerTimePoint.
  virtual bool NeedsWholeStack() const { return false; }
  virtual bool StatisticsPerTimePoint() const { return false; }
  virtual absl::Status PrepareForStack(const Stack& input, const std::vector<int64_t>& planes) {
    (void)input;
    (void)planes;
    return absl::OkStatus();
  }

  // Whole-stack steps whose statistics add up slice by slice (a histogram of integer pixels)
  // can also take them from z-ranges gathered apart (the shards of a cluster's job): AddStats
  // adds one input slice's to `stats` (sizing it on the first call), the ranges' vectors are
  // summed element by element, and PrepareFromStats takes the sum (with the format of the
  // slices they were taken from: their size may depend on it). Any grouping of the slices
  // gives the whole stack's sum, and PrepareForStack comes to the same, so a run cut in ranges
  // makes the bytes of the whole run. False: statistics of this input cannot be added up.
  virtual bool AddStats(const cv::Mat& slice, std::vector<uint64_t>& stats) const {
    (void)slice;
    (void)stats;
    return false;
  }
  virtual absl::Status PrepareFromStats(const SliceFormat& format,
                                        const std::vector<uint64_t>& stats) {
    (void)format;
    (void)stats;
    return absl::UnimplementedError("this step takes no statistics gathered apart");
  }
};

using OperationFactory =
    std::function<absl::StatusOr<std::unique_ptr<SliceOp>>(const ParamValues&)>;

struct OperationDef {
  OperationInfo info;
  OperationFactory make;
};

// The InvalidArgument every operation returns for a pixel type it does not take.
absl::Status UnsupportedType(const OperationInfo& info, PixelType type,
                             absl::string_view hint = "");
// Same, looked up from the op's name: for OutputFormat implementations.
absl::Status CheckPixelType(const OperationInfo& info, PixelType type, absl::string_view hint = "");

}  // namespace stackproc::core
