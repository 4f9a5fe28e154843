// PathResolver against a real directory tree with links that lead in and out, FIFOs and swaps,
// with openat2 and with the component walk that stands in for it on older kernels.
#include "server/jobs/path_resolver.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "core/io/tiff_io.h"
#include "core/tiff/tiff_writer.h"
#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc::server {
namespace {

namespace fs = std::filesystem;
using ::stackproc::testing::StatusIs;
using ::stackproc::testing::TempDir;
using ::testing::HasSubstr;

std::string Contents(const core::InputFile& file) {
  std::string out(file.size(), '\0');
  EXPECT_EQ(::pread(file.fd(), out.data(), out.size(), 0), static_cast<ssize_t>(out.size()));
  return out;
}

class PathResolverTest : public ::testing::TestWithParam<PathResolver::Mode> {
 protected:
  void SetUp() override {
    std::ofstream(root_.File("a.tif")) << "inside";
    fs::create_directory(root_.path() / "sub");
    std::ofstream(root_.File("sub/b.tif")) << "deeper";
    std::ofstream(outside_.File("secret.tif")) << "secret";
    fs::create_symlink(outside_.File("secret.tif"), root_.File("out.tif"));
    fs::create_directory_symlink(outside_.path(), root_.File("out-dir"));
    fs::create_symlink("sub/b.tif", root_.File("in.tif"));  // stays inside
    ASSERT_EQ(::mkfifo(root_.File("fifo").c_str(), 0600), 0);
    absl::StatusOr<PathResolver> resolver = PathResolver::Create(root_.path().string(), GetParam());
    ASSERT_OK(resolver);
    resolver_.emplace(*std::move(resolver));
  }
  bool Walk() const { return GetParam() == PathResolver::Mode::kWalk; }

  TempDir root_, outside_;
  std::optional<PathResolver> resolver_;
};

TEST_P(PathResolverTest, OpensFilesBeneathTheRoot) {
  ASSERT_OK_AND_ASSIGN(core::InputFile a, resolver_->Input("a.tif"));
  EXPECT_EQ(Contents(a), "inside");
  EXPECT_EQ(a.name(), "a.tif");  // messages use the client's name, not the server's layout
  ASSERT_OK_AND_ASSIGN(core::InputFile b, resolver_->Input("./sub//b.tif"));
  EXPECT_EQ(Contents(b), "deeper");
  ASSERT_OK_AND_ASSIGN(core::InputFile back, resolver_->Input("sub/../a.tif"));
  EXPECT_EQ(Contents(back), "inside");
}

TEST_P(PathResolverTest, NothingLeadsOut) {
  for (const std::string& path :
       {std::string("../x.tif"), std::string("sub/../../x.tif"), outside_.File("secret.tif"),
        std::string("out.tif"), std::string("out-dir/secret.tif")}) {
    EXPECT_THAT(resolver_->Input(path), StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_))
        << path;
  }
  EXPECT_THAT(resolver_->Input("/etc/passwd"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("absolute")));
  EXPECT_THAT(resolver_->Output("out-dir/o.tif"),
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  EXPECT_THAT(resolver_->Output("../o.tif"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("outside")));
}

TEST_P(PathResolverTest, LinksThatStayInsideAreFollowedOnlyWithOpenat2) {
  absl::StatusOr<core::InputFile> in = resolver_->Input("in.tif");
  if (Walk()) {
    EXPECT_THAT(in, StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("symlink")));
  } else {
    ASSERT_OK(in);
    EXPECT_EQ(Contents(*in), "deeper");
  }
}

TEST_P(PathResolverTest, MissingDirectoriesAndOddFilesAreClearErrors) {
  EXPECT_THAT(resolver_->Input("nope.tif"), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(resolver_->Input("no/such/dir.tif"),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(resolver_->Input("sub"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a regular file")));
  // A FIFO would block an open for reading until a writer came: refused at once instead.
  EXPECT_THAT(resolver_->Input("fifo"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a regular file")));
  EXPECT_THAT(resolver_->Output("no/such/o.tif"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("does not exist")));
  EXPECT_THAT(resolver_->Output("out.tif"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("symlink")));
  ASSERT_OK_AND_ASSIGN(core::OutputTarget output, resolver_->Output("sub/new.tif"));
  EXPECT_EQ(output.name(), "new.tif");
  EXPECT_EQ(output.display(), "sub/new.tif");
  EXPECT_FALSE(output.Exists());
}

TEST_P(PathResolverTest, AnOutputGoesWhereItWasCheckedEvenIfItsDirectoryIsSwapped) {
  ASSERT_OK_AND_ASSIGN(core::OutputTarget output, resolver_->Output("sub/new.tif"));
  fs::rename(root_.path() / "sub", root_.path() / "was-sub");
  fs::create_directory_symlink(outside_.path(), root_.path() / "sub");
  const core::Stack stack = ::stackproc::testing::MakeStack({2, 8, 8}, core::PixelType::kUint8);
  ASSERT_OK(core::WriteTiff(output, stack));
  EXPECT_TRUE(fs::exists(root_.path() / "was-sub" / "new.tif"));
  EXPECT_FALSE(fs::exists(outside_.path() / "new.tif"));
  EXPECT_THAT(resolver_->Output("sub/other.tif"),
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
}

TEST_P(PathResolverTest, AnOpenInputIsWhatWasCheckedEvenIfItsPathIsSwapped) {
  ASSERT_OK_AND_ASSIGN(core::InputFile a, resolver_->Input("a.tif"));
  fs::remove(root_.File("a.tif"));
  fs::create_symlink(outside_.File("secret.tif"), root_.File("a.tif"));
  EXPECT_EQ(Contents(a), "inside");
  EXPECT_THAT(resolver_->Input("a.tif"),
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
}

INSTANTIATE_TEST_SUITE_P(Modes, PathResolverTest,
                         ::testing::Values(PathResolver::Mode::kAuto, PathResolver::Mode::kWalk),
                         [](const auto& param_info) {
                           return param_info.param == PathResolver::Mode::kAuto ? "Openat2"
                                                                                : "Walk";
                         });

}  // namespace
}  // namespace stackproc::server
