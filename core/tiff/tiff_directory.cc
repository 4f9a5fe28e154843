#include "core/tiff/tiff_directory.h"

#include <tiffio.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace stackproc::core {
namespace {

template <typename T>
void Put(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

template <typename T>
std::string Bytes(T value) {
  std::string out;
  Put(out, value);
  return out;
}

// The fraction nearest `value` whose terms fit 32 bits: its continued fraction's last
// convergent that does.
std::pair<uint32_t, uint32_t> NearestFraction(double value) {
  constexpr double kMost = std::numeric_limits<uint32_t>::max();
  if (!(value > 0)) return {0, 1};
  if (value >= kMost) return {std::numeric_limits<uint32_t>::max(), 1};
  uint64_t p0 = 0, q0 = 1, p1 = 1, q1 = 0;
  double x = value;
  for (int i = 0; i < 64; ++i) {
    const double whole = std::floor(x);
    if (whole > kMost) break;
    const auto a = static_cast<uint64_t>(whole);
    const uint64_t p2 = a * p1 + p0;
    const uint64_t q2 = a * q1 + q0;
    if (p2 > kMost || q2 > kMost) break;
    p0 = p1, q0 = q1, p1 = p2, q1 = q2;
    const double rest = x - whole;
    if (rest <= 0 || static_cast<double>(p1) / static_cast<double>(q1) == value) break;
    x = 1 / rest;
  }
  return {static_cast<uint32_t>(p1), static_cast<uint32_t>(q1)};
}

}  // namespace

std::string TiffHeader(bool bigtiff, uint64_t first_directory) {
  std::string out = std::endian::native == std::endian::little ? "II" : "MM";
  if (bigtiff) {
    Put<uint16_t>(out, 43);
    Put<uint16_t>(out, 8);  // the size of an offset
    Put<uint16_t>(out, 0);
    Put<uint64_t>(out, first_directory);
  } else {
    Put<uint16_t>(out, 42);
    Put<uint32_t>(out, static_cast<uint32_t>(first_directory));
  }
  return out;
}

void TiffDirectory::Add(uint16_t tag, uint16_t type, uint64_t count, std::string value) {
  entries_.push_back({tag, type, count, std::move(value)});
}

void TiffDirectory::Short(uint16_t tag, uint16_t value) { Add(tag, TIFF_SHORT, 1, Bytes(value)); }

void TiffDirectory::Long(uint16_t tag, uint32_t value) { Add(tag, TIFF_LONG, 1, Bytes(value)); }

void TiffDirectory::ByteArray(uint16_t tag, const std::vector<uint8_t>& values) {
  Add(tag, TIFF_BYTE, values.size(), std::string(values.begin(), values.end()));
}

void TiffDirectory::LongArray(uint16_t tag, const std::vector<uint32_t>& values) {
  std::string bytes;
  for (uint32_t v : values) Put<uint32_t>(bytes, v);
  Add(tag, TIFF_LONG, values.size(), std::move(bytes));
}

void TiffDirectory::Offsets(uint16_t tag, const std::vector<uint64_t>& values) {
  std::string bytes;
  for (uint64_t v : values) {
    if (bigtiff_) {
      Put<uint64_t>(bytes, v);
    } else {
      Put<uint32_t>(bytes, static_cast<uint32_t>(v));
    }
  }
  Add(tag, bigtiff_ ? TIFF_LONG8 : TIFF_LONG, values.size(), std::move(bytes));
}

void TiffDirectory::Ascii(uint16_t tag, absl::string_view text) {
  std::string bytes(text);
  bytes.push_back('\0');
  const uint64_t count = bytes.size();
  Add(tag, TIFF_ASCII, count, std::move(bytes));
}

void TiffDirectory::Rational(uint16_t tag, double value) {
  const auto [numerator, denominator] = NearestFraction(value);
  Add(tag, TIFF_RATIONAL, 1, Bytes(numerator) + Bytes(denominator));
}

uint64_t TiffDirectory::size() const {
  const uint64_t entry = bigtiff_ ? 20 : 12;
  uint64_t bytes = (bigtiff_ ? 8 + 8 : 2 + 4) + entry * entries_.size();
  for (const Entry& e : entries_) {
    if (e.value.size() > inline_bytes()) bytes += e.value.size() + e.value.size() % 2;
  }
  return bytes;
}

void TiffDirectory::AppendTo(uint64_t at, uint64_t next, std::string& out) const {
  std::vector<const Entry*> sorted;
  for (const Entry& e : entries_) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(),
            [](const Entry* a, const Entry* b) { return a->tag < b->tag; });
  const uint64_t entry = bigtiff_ ? 20 : 12;
  uint64_t value_at = at + (bigtiff_ ? 8 + 8 : 2 + 4) + entry * sorted.size();
  std::string values;
  if (bigtiff_) {
    Put<uint64_t>(out, sorted.size());
  } else {
    Put<uint16_t>(out, static_cast<uint16_t>(sorted.size()));
  }
  for (const Entry* e : sorted) {
    Put<uint16_t>(out, e->tag);
    Put<uint16_t>(out, e->type);
    std::string field;
    if (e->value.size() <= inline_bytes()) {
      field = e->value;
    } else {
      field = bigtiff_ ? Bytes<uint64_t>(value_at) : Bytes(static_cast<uint32_t>(value_at));
      values += e->value;
      if (e->value.size() % 2 != 0) values.push_back('\0');  // the next value at a word boundary
      value_at += e->value.size() + e->value.size() % 2;
    }
    field.resize(inline_bytes(), '\0');
    if (bigtiff_) {
      Put<uint64_t>(out, e->count);
    } else {
      Put<uint32_t>(out, static_cast<uint32_t>(e->count));
    }
    out += field;
  }
  if (bigtiff_) {
    Put<uint64_t>(out, next);
  } else {
    Put<uint32_t>(out, static_cast<uint32_t>(next));
  }
  out += values;
}

}  // namespace stackproc::core
