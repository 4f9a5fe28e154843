#include "core/zarr/pyramid.h"

#include <type_traits>

namespace stackproc::core {
namespace {

// Sums in a wider type, then the mean of `n` values: rounded half up for integers.
template <typename T>
using Sum = std::conditional_t<std::is_floating_point_v<T>, float, uint32_t>;

template <typename T>
T Mean(Sum<T> sum, uint32_t n) {
  if constexpr (std::is_floating_point_v<T>) {
    return sum / static_cast<float>(n);
  } else {
    return static_cast<T>((sum + n / 2) / n);
  }
}

template <typename T>
void Halve(const T* in, int64_t height, int64_t width, T* out) {
  const int64_t out_width = Halved(width);
  for (int64_t y = 0; y < height; y += 2) {
    const T* row0 = in + y * width;
    const T* row1 = y + 1 < height ? row0 + width : nullptr;
    T* o = out + (y / 2) * out_width;
    int64_t x = 0;
    if (row1 != nullptr) {
      for (; x + 1 < width; x += 2) {
        const Sum<T> s = Sum<T>(row0[x]) + row0[x + 1] + row1[x] + row1[x + 1];
        o[x / 2] = Mean<T>(s, 4);
      }
      if (x < width) o[x / 2] = Mean<T>(Sum<T>(row0[x]) + row1[x], 2);
    } else {
      for (; x + 1 < width; x += 2) o[x / 2] = Mean<T>(Sum<T>(row0[x]) + row0[x + 1], 2);
      if (x < width) o[x / 2] = row0[x];
    }
  }
}

template <typename T>
void MeanOfTwo(const T* a, const T* b, int64_t count, T* out) {
  for (int64_t i = 0; i < count; ++i) out[i] = Mean<T>(Sum<T>(a[i]) + b[i], 2);
}

}  // namespace

void HalveSlice(PixelType type, const uint8_t* in, int64_t height, int64_t width, uint8_t* out) {
  switch (type) {
    case PixelType::kUint8:
      return Halve(in, height, width, out);
    case PixelType::kUint16:
      return Halve(reinterpret_cast<const uint16_t*>(in), height, width,
                   reinterpret_cast<uint16_t*>(out));
    case PixelType::kFloat32:
      return Halve(reinterpret_cast<const float*>(in), height, width,
                   reinterpret_cast<float*>(out));
  }
}

void MeanOfSlices(PixelType type, const uint8_t* a, const uint8_t* b, int64_t count, uint8_t* out) {
  switch (type) {
    case PixelType::kUint8:
      return MeanOfTwo(a, b, count, out);
    case PixelType::kUint16:
      return MeanOfTwo(reinterpret_cast<const uint16_t*>(a), reinterpret_cast<const uint16_t*>(b),
                       count, reinterpret_cast<uint16_t*>(out));
    case PixelType::kFloat32:
      return MeanOfTwo(reinterpret_cast<const float*>(a), reinterpret_cast<const float*>(b), count,
                       reinterpret_cast<float*>(out));
  }
}

}  // namespace stackproc::core
