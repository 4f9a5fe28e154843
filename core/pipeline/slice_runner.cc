#include "core/pipeline/slice_runner.h"

#include <exception>
#include <new>

#include "absl/strings/str_cat.h"

namespace stackproc::core {

cv::Mat MakeMat(const SliceFormat& f) { return cv::Mat(f.height, f.width, CvType(f.type)); }

SliceRunner::SliceRunner(Pipeline& pipeline, const std::vector<SliceFormat>& formats, size_t first,
                         size_t last)
    : pipeline_(pipeline), formats_(formats), first_(first), last_(last) {}

absl::Status SliceRunner::Run(int64_t z, const cv::Mat& in, cv::Mat& out) {
  return Steps(z, first_, in, out);
}

absl::Status SliceRunner::RunAround(int64_t z, const Around& around, cv::Mat& out) {
  const SliceOp* op = pipeline_.For(first_, z);
  if (op == nullptr) return Steps(z, first_ + 1, around(0), out);  // passed through
  std::vector<cv::Mat>& planes = around_.local();
  const int64_t h = op->HaloPlanes();
  planes.resize(static_cast<size_t>(2 * h + 1));
  for (int64_t dz = -h; dz <= h; ++dz) planes[static_cast<size_t>(dz + h)] = around(dz);
  return Steps(z, first_, planes[static_cast<size_t>(h)], out,
               [&](const SliceOp& step, cv::Mat& dst) { step.ApplyPlanes(planes, dst); });
}

absl::Status SliceRunner::Steps(int64_t z, size_t from, const cv::Mat& in, cv::Mat& out,
                                const std::function<void(const SliceOp&, cv::Mat&)>& first) {
  std::vector<cv::Mat>& tmp = scratch_.local();
  tmp.resize(last_ - first_);  // the intermediates, each allocated on first use and kept
  cv::Mat src = in;
  for (size_t i = from; i < last_; ++i) {
    const Pipeline::Step& step = pipeline_.step(i);
    const SliceOp* op = pipeline_.For(i, z);
    if (op == nullptr) continue;  // a channel the step is not for: its input goes on
    // The last step writes straight into the output slice unless that would alias its input.
    const bool direct = i + 1 == last_ && src.data != out.data;
    cv::Mat& dst = direct ? out : tmp[i - first_];
    if (dst.empty()) dst = MakeMat(formats_[i + 1]);
    const uint8_t* before = dst.data;
    try {
      if (i == from && first) {
        first(*op, dst);
      } else {
        op->Apply(src, dst);
      }
    } catch (const std::bad_alloc&) {
      return absl::ResourceExhaustedError(
          absl::StrCat("slice ", z, ": ", step.spec, ": out of memory"));
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("slice ", z, ": ", step.spec, ": ", e.what()));
    }
    if (dst.data != before) {
      return absl::InternalError(
          absl::StrCat("slice ", z, ": ", step.spec, " did not write into its output slice"));
    }
    src = dst;
  }
  if (src.data != out.data) src.copyTo(out);
  return absl::OkStatus();
}

}  // namespace stackproc::core
