// Medians of many values at once by forgetful selection (internal to core/ops): of n values
// (n odd), a working set of n / 2 + 2 can drop its least and its greatest while the others
// come in one by one, and the last one left is the median. Compare-exchanges of whole runs of
// pixels, which the compiler vectorises; no sorting, no histogram.
#pragma once

#include <algorithm>
#include <vector>

namespace stackproc::core::ops {

constexpr int kRun = 64;  // pixels selected together

// lo, hi = min(lo, hi), max(lo, hi), pixel by pixel over a run. Written so that GCC vectorises
// it for every pixel type: distinct rows (__restrict), and each side its own select on values
// (std::min's references to 8- and 16-bit values, or one comparison shared by both sides, leave
// control flow in the loop, which it does not vectorise: 10-18x slower).
template <typename T>
inline void CompareExchange(T* __restrict lo, T* __restrict hi) {
  for (int x = 0; x < kRun; ++x) {
    const T a = lo[x], b = hi[x];
    lo[x] = a < b ? a : b;
    hi[x] = b < a ? a : b;
  }
}

// The median of `values[j][x]` over j (an odd number of them, 3 or more), for x in [0, len),
// into out[x].
template <typename T>
inline void SelectMedians(const std::vector<const T*>& values, int len, T* out,
                          std::vector<T>& working) {
  const size_t n = values.size();
  const size_t keep = n / 2 + 2;
  working.resize(keep * kRun);
  auto row = [&](size_t i) { return working.data() + i * kRun; };
  for (size_t i = 0; i < keep; ++i) std::copy(values[i], values[i] + len, row(i));
  size_t size = keep;
  for (size_t next = keep;; ++next) {
    // The least to row 0, the greatest to row size - 1.
    T* least = row(0);
    T* greatest = row(size - 1);
    for (size_t i = 1; i < size; ++i) CompareExchange(least, row(i));
    for (size_t i = 1; i + 1 < size; ++i) CompareExchange(row(i), greatest);
    if (next == n) break;  // three left: the median is between the two dropped
    std::copy(values[next], values[next] + len, least);  // both dropped, the next one in
    --size;
  }
  std::copy(row(1), row(1) + len, out);
}

}  // namespace stackproc::core::ops
