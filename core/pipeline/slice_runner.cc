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
  std::vector<cv::Mat>& tmp = scratch_.local();
  tmp.resize(last_ - first_);  // the intermediates, each allocated on first use and kept
  cv::Mat src = in;
  for (size_t i = first_; i < last_; ++i) {
    const Pipeline::Step& step = pipeline_.step(i);
    const SliceOp* op = pipeline_.For(i, z);
    if (op == nullptr) continue;  // a channel the step is not for: its input goes on
    // The last step writes straight into the output slice unless that would alias its input.
    const bool direct = i + 1 == last_ && src.data != out.data;
    cv::Mat& dst = direct ? out : tmp[i - first_];
    if (dst.empty()) dst = MakeMat(formats_[i + 1]);
    const uint8_t* before = dst.data;
    try {
      op->Apply(src, dst);
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
