// libFuzzer over the TIFF reader's validate-and-decode entry: the bytes become a file (a
// memfd, read through core::InputFile like any input), ProbeTiff validates it and ReadTiff
// decodes every page. A Status error is the right answer to a bad file; a crash, a sanitizer
// report, a leak or a hang is a bug.
#include <sys/mman.h>
#include <tbb/task_arena.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

#include "core/base/file.h"
#include "core/io/tiff_io.h"
#include "core/tiff/tiff_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace stackproc::core;
  static tbb::task_arena arena(1);  // one thread: a finding replays the same way
  UniqueFd fd(::memfd_create("fuzz.tif", MFD_CLOEXEC));
  if (!fd) return 0;
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::write(fd.get(), data + done, size - done);
    if (n <= 0) return 0;
    done += static_cast<size_t>(n);
  }
  absl::StatusOr<InputFile> file = InputFile::Adopt(std::move(fd), "fuzz.tif");
  if (!file.ok()) return 0;
  ReadOptions options;
  // Small limits: the fuzzer looks for bugs, not for big allocations that would be refused
  // the same way at any size.
  options.limits.max_pages = 64;
  options.limits.max_side = 4096;
  options.limits.max_stack_bytes = uint64_t{64} << 20;
  options.arena = &arena;
  (void)ReadTiff(*file, options);
  return 0;
}
