// Shared test helpers: temporary directories, synthetic stacks, exact comparisons.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <opencv2/core/mat.hpp>
#include <string>
#include <vector>

#include "core/pipeline/operation_registry.h"
#include "core/stack/stack.h"

namespace stackproc::testing {

// A fresh directory under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// A full disk, without privileges or mounts: while it lives, this process cannot grow a file
// past `bytes` (RLIMIT_FSIZE; writes fail with EFBIG, SIGXFSZ ignored), as writes to a full
// disk fail with ENOSPC. Restores both on destruction.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(uint64_t bytes);
  ~FileSizeLimit();
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  uint64_t saved_ = 0;
  void (*saved_handler_)(int) = nullptr;
};

// A deterministic synthetic stack; aborts the test binary on failure (test setup only).
core::Stack MakeStack(const core::StackShape& shape, core::PixelType type, uint32_t seed = 1);

// Two channels with colours and display windows (green 10-900, magenta 20-1800), as an
// ImageJ hyperstack's LUTs and Ranges give them; one z-stack's order otherwise.
core::Dimensions TwoColouredChannels();

// Operations from their text forms ("gaussian:ksize=5"); aborts on a malformed one.
std::vector<core::OpSpec> Ops(const std::vector<std::string>& texts);

// A deep copy (same pixels and metadata).
core::Stack CopyStack(const core::Stack& stack);

// Whether two stacks have the same shape, type and bytes; the first differing slice is printed.
::testing::AssertionResult StacksEqual(const core::Stack& a, const core::Stack& b);

// Whether two mats have the same size, type and bytes.
::testing::AssertionResult MatsEqual(const cv::Mat& a, const cv::Mat& b);

// The source tree (for the Python helpers next to the tests).
std::string SourceDir();

// Runs a shell command, returning its exit status; output goes to the test log.
int RunCommand(const std::string& command);

// 0 when `a` and `b`, two outputs of one job, are the same bytes apart from what each run records
// of itself (its time, executor and input name: tests/tools/same_output.py, which says on stderr
// what differs); 1 otherwise.
int SameOutput(const std::string& a, const std::string& b);

}  // namespace stackproc::testing
