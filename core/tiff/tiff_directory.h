// TIFF image file directories encoded by hand, for the writer's uncompressed stacks: their
// planes lie one after another from the header on, and the directories follow them at the end
// of the file, as ImageJ and tifffile lay out a stack (ImageJ reads an uncompressed stack whose
// description says images=N as N planes from the first page's pixels on; libtiff cannot be told
// where to put strips). Native byte order, classic TIFF or BigTIFF. Internal to core/.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace stackproc::core {

// The file's first bytes: byte order, version, and where its first directory is.
std::string TiffHeader(bool bigtiff, uint64_t first_directory);

// One directory's entries, added in any order (they are written sorted by tag).
class TiffDirectory {
 public:
  explicit TiffDirectory(bool bigtiff) : bigtiff_(bigtiff) {}

  void Short(uint16_t tag, uint16_t value);
  void Long(uint16_t tag, uint32_t value);
  // File offsets or byte counts: LONG in a classic TIFF (each must be below 4 GiB), LONG8 in a
  // BigTIFF.
  void Offsets(uint16_t tag, const std::vector<uint64_t>& values);
  void Ascii(uint16_t tag, absl::string_view text);  // NUL-terminated in the file
  void ByteArray(uint16_t tag, const std::vector<uint8_t>& values);
  void LongArray(uint16_t tag, const std::vector<uint32_t>& values);
  void Rational(uint16_t tag, double value);  // the nearest fraction of 32-bit terms

  // Bytes the directory takes in the file: its entries, then the values that do not fit in one.
  uint64_t size() const;
  // Appends the directory, placed at file offset `at` (even), whose next directory is at `next`
  // (0: it is the last).
  void AppendTo(uint64_t at, uint64_t next, std::string& out) const;

 private:
  struct Entry {
    uint16_t tag;
    uint16_t type;
    uint64_t count;
    std::string value;  // native byte order
  };
  void Add(uint16_t tag, uint16_t type, uint64_t count, std::string value);
  size_t inline_bytes() const { return bigtiff_ ? 8 : 4; }

  bool bigtiff_;
  std::vector<Entry> entries_;
};

}  // namespace stackproc::core
