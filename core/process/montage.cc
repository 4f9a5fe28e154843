// MontagePng (preview.h): the tiles drawn with OpenCV, the PNG written by libpng.
#include <png.h>

#include <algorithm>
#include <opencv2/imgproc.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/process/preview.h"

namespace stackproc::core {
namespace {

constexpr int kLabelHeight = 18;
constexpr int kGap = 4;
constexpr double kLow = 0.5, kHigh = 99.5;  // percentiles of the stretch

// The slice as 8-bit grey for the eye: uint8 as it is, others stretched between their
// percentiles (`stretched` says so).
cv::Mat Displayable(const cv::Mat& slice, bool& stretched) {
  if (slice.depth() == CV_8U) return slice;
  stretched = true;
  cv::Mat values;
  slice.reshape(1, 1).convertTo(values, CV_32F);
  std::vector<float> v(values.begin<float>(), values.end<float>());
  const auto at = [&](double p) {
    auto k = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return static_cast<double>(v[k]);
  };
  const double low = at(kLow), high = at(kHigh);
  cv::Mat shown;
  const double scale = high > low ? 255.0 / (high - low) : 0.0;
  slice.convertTo(shown, CV_8U, scale, -low * scale);  // saturates below low and above high
  return shown;
}

// Fits `tile` within side x side, shrinking it (never enlarging).
cv::Mat Fit(const cv::Mat& tile, int side) {
  const double f = std::min(1.0, static_cast<double>(side) / std::max(tile.cols, tile.rows));
  if (f >= 1.0) return tile;
  cv::Mat small;
  cv::resize(
      tile, small,
      {std::max(1, static_cast<int>(tile.cols * f)), std::max(1, static_cast<int>(tile.rows * f))},
      0, 0, cv::INTER_AREA);
  return small;
}

void Label(cv::Mat& canvas, const std::string& text, int x, int y, int width) {
  std::string shown = text;
  int baseline = 0;
  // Cut to the tile's width, "..." marking the cut.
  while (shown.size() > 3 &&
         cv::getTextSize(shown, cv::FONT_HERSHEY_SIMPLEX, 0.4, 1, &baseline).width > width) {
    shown = shown.substr(0, shown.size() - 4) + "...";
  }
  cv::putText(canvas, shown, {x + 2, y + kLabelHeight - 5}, cv::FONT_HERSHEY_SIMPLEX, 0.4,
              cv::Scalar(255), 1, cv::LINE_AA);
}

absl::StatusOr<std::string> EncodePng(const cv::Mat& grey) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(grey.cols);
  image.height = static_cast<png_uint_32>(grey.rows);
  image.format = PNG_FORMAT_GRAY;
  image.flags = PNG_IMAGE_FLAG_FAST;  // a preview is looked at once: speed over size
  png_alloc_size_t size = 0;
  const auto stride = static_cast<png_int_32>(grey.step[0]);
  if (!png_image_write_to_memory(&image, nullptr, &size, 0, grey.data, stride, nullptr)) {
    return absl::InternalError(absl::StrCat("PNG: ", image.message));
  }
  std::string png(size, '\0');
  if (!png_image_write_to_memory(&image, png.data(), &size, 0, grey.data, stride, nullptr)) {
    return absl::InternalError(absl::StrCat("PNG: ", image.message));
  }
  png.resize(size);
  return png;
}

}  // namespace

absl::StatusOr<std::string> MontagePng(const Preview& preview, int max_tile_side) {
  max_tile_side = std::clamp(max_tile_side, 32, 4096);
  const size_t columns = 1 + preview.after.size();
  // Every tile, shrunk to fit, row by row; the cell is as large as the largest tile.
  std::vector<std::vector<cv::Mat>> tiles(preview.z.size());
  bool stretched = false;
  int cell_w = 0, cell_h = 0;
  for (size_t r = 0; r < preview.z.size(); ++r) {
    const auto z = static_cast<int64_t>(r);
    tiles[r].push_back(Fit(Displayable(preview.before.Slice(z), stretched), max_tile_side));
    for (const Stack& after : preview.after) {
      tiles[r].push_back(Fit(Displayable(after.Slice(z), stretched), max_tile_side));
    }
    for (const cv::Mat& t : tiles[r]) {
      cell_w = std::max(cell_w, t.cols);
      cell_h = std::max(cell_h, t.rows);
    }
  }
  cell_w = std::max(cell_w, 120);  // room for a label
  std::vector<std::string> title = {absl::StrCat(preview.input, ": ", preview.pipeline)};
  if (stretched) {
    title.push_back(absl::StrCat("16-bit and float slices stretched from their ", kLow, "th to ",
                                 kHigh, "th percentile"));
  }
  for (const std::string& note : preview.notes) title.push_back(note);
  const int top = static_cast<int>(title.size()) * kLabelHeight + kGap;
  const int width = static_cast<int>(columns) * (cell_w + kGap) + kGap;
  const int height = top + static_cast<int>(preview.z.size()) * (kLabelHeight + cell_h + kGap);
  if (static_cast<int64_t>(width) * height > (int64_t{1} << 28)) {
    return absl::InvalidArgumentError(
        "the montage would exceed 256 megapixels: ask for fewer "
        "slices or variants, or a smaller tile size");
  }
  cv::Mat canvas(height, width, CV_8UC1, cv::Scalar(32));
  for (size_t i = 0; i < title.size(); ++i) {
    Label(canvas, title[i], kGap, static_cast<int>(i) * kLabelHeight, width - 2 * kGap);
  }
  for (size_t r = 0; r < tiles.size(); ++r) {
    const int y = top + static_cast<int>(r) * (kLabelHeight + cell_h + kGap);
    for (size_t c = 0; c < tiles[r].size(); ++c) {
      const int x = kGap + static_cast<int>(c) * (cell_w + kGap);
      const std::string what = c > 0 ? preview.labels[c - 1] : columns > 1 ? "before" : "";
      Label(canvas, absl::StrCat(preview.where[r], " ", what), x, y, cell_w);
      tiles[r][c].copyTo(canvas(cv::Rect(x, y + kLabelHeight, tiles[r][c].cols, tiles[r][c].rows)));
    }
  }
  return EncodePng(canvas);
}

}  // namespace stackproc::core
