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
  const bool in_place = in.data == out.data;
  cv::Mat src = in;
  for (size_t i = first_; i < last_; ++i) {
    const Pipeline::Step& step = pipeline_.step(i);
    // The last step writes straight into the output slice unless that would alias its input.
    const bool direct = i + 1 == last_ && !(in_place && i == first_);
    cv::Mat& dst = direct ? out : tmp[i - first_];
    if (dst.empty()) dst = MakeMat(formats_[i + 1]);
    const uint8_t* before = dst.data;
    try {
      step.op->Apply(src, dst);
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
