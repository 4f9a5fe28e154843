#include "tests/test_util/test_util.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <opencv2/core.hpp>
#include <random>

#include "core/tools/synthetic.h"

namespace stackproc::testing {

namespace fs = std::filesystem;

TempDir::TempDir() {
  std::random_device random;
  path_ = fs::temp_directory_path() /
          ("stackproc-test-" + std::to_string(::getpid()) + "-" + std::to_string(random()));
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

core::Dimensions TwoColouredChannels() {
  core::Dimensions dims;
  dims.channels = 2;
  dims.channel_info.resize(2);
  dims.channel_info[0].rgba = 0x00FF00FF;
  dims.channel_info[0].window_start = 10;
  dims.channel_info[0].window_end = 900;
  dims.channel_info[1].rgba = 0xFF00FFFF;
  dims.channel_info[1].window_start = 20;
  dims.channel_info[1].window_end = 1800;
  return dims;
}

core::Stack MakeStack(const core::StackShape& shape, core::PixelType type, uint32_t seed) {
  absl::StatusOr<core::Stack> stack = core::MakeSyntheticStack(shape, type, seed);
  if (!stack.ok()) {
    std::fprintf(stderr, "MakeStack: %s\n", stack.status().ToString().c_str());
    std::abort();
  }
  return std::move(stack).value();
}

std::vector<core::OpSpec> Ops(const std::vector<std::string>& texts) {
  absl::StatusOr<std::vector<core::OpSpec>> specs = core::ParseOpSpecs(texts);
  if (!specs.ok()) std::abort();
  return *std::move(specs);
}

core::Stack CopyStack(const core::Stack& stack) {
  absl::StatusOr<core::Stack> copy = core::Stack::Allocate(stack.shape(), stack.pixel_type());
  if (!copy.ok()) std::abort();
  std::memcpy(copy->data(), stack.data(), stack.size_bytes());
  copy->metadata() = stack.metadata();
  return std::move(copy).value();
}

::testing::AssertionResult MatsEqual(const cv::Mat& a, const cv::Mat& b) {
  if (a.size() != b.size() || a.type() != b.type()) {
    return ::testing::AssertionFailure()
           << "size/type differ: " << a.cols << "x" << a.rows << " type " << a.type() << " vs "
           << b.cols << "x" << b.rows << " type " << b.type();
  }
  for (int y = 0; y < a.rows; ++y) {
    if (std::memcmp(a.ptr(y), b.ptr(y), a.cols * a.elemSize()) != 0) {
      return ::testing::AssertionFailure() << "row " << y << " differs";
    }
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult StacksEqual(const core::Stack& a, const core::Stack& b) {
  if (a.shape() != b.shape() || a.pixel_type() != b.pixel_type()) {
    return ::testing::AssertionFailure()
           << "shape/type differ: " << core::ShapeString(a.shape()) << " "
           << core::PixelTypeName(a.pixel_type()) << " vs " << core::ShapeString(b.shape()) << " "
           << core::PixelTypeName(b.pixel_type());
  }
  for (int64_t z = 0; z < a.depth(); ++z) {
    if (std::memcmp(a.slice_data(z), b.slice_data(z), a.slice_bytes()) != 0) {
      return ::testing::AssertionFailure() << "slice " << z << " differs";
    }
  }
  return ::testing::AssertionSuccess();
}

std::string SourceDir() { return STACKPROC_SOURCE_DIR; }

int RunCommand(const std::string& command) {
  int rc = std::system(command.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

int SameOutput(const std::string& a, const std::string& b) {
  return RunCommand("/usr/bin/python3 '" + SourceDir() + "/tests/tools/same_output.py' '" + a +
                    "' '" + b + "'");
}

FileSizeLimit::FileSizeLimit(uint64_t bytes) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_FSIZE, &limit) != 0) std::abort();
  saved_ = limit.rlim_cur;
  saved_handler_ = std::signal(SIGXFSZ, SIG_IGN);
  limit.rlim_cur = bytes;
  if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) std::abort();
}

FileSizeLimit::~FileSizeLimit() {
  rlimit limit{};
  ::getrlimit(RLIMIT_FSIZE, &limit);
  limit.rlim_cur = saved_;
  ::setrlimit(RLIMIT_FSIZE, &limit);
  std::signal(SIGXFSZ, saved_handler_);
}

}  // namespace stackproc::testing
