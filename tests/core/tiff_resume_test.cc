// TiffPageWriter::Resume: a writer that ended before Commit leaves its temporary file and its
// progress(); another takes the file up from there, and Commit makes the bytes one writer would
// have made (issue 32: `stackproc process --resume` after the client's process ended).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/io/tiff_io.h"
#include "core/tiff/tiff_writer.h"
#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc::core {
namespace {

namespace fs = std::filesystem;
using ::stackproc::testing::MakeStack;
using ::stackproc::testing::StatusIs;
using ::stackproc::testing::TempDir;
using ::testing::HasSubstr;

std::string Bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

StackMetadata Described() {
  StackMetadata metadata;
  metadata.description = "ImageJ=1.11a\nimages=6\nslices=6\n";
  return metadata;
}

// The first `pages` pages written by a writer that then ends without Commit, its file kept; with
// `past`, it had also written the next page when it ended (its progress, taken before, does
// not know of it: a process killed between a page and its record).
TiffPageWriter::Progress WriteAndEnd(const std::string& path, const Stack& stack,
                                     const WriteOptions& options, int64_t pages, bool past) {
  auto writer =
      TiffPageWriter::Create(path, stack.shape(), stack.pixel_type(), Described(), options);
  EXPECT_OK(writer.status());
  for (int64_t z = 0; z < pages; ++z) EXPECT_OK((*writer)->WritePage(stack.slice_data(z)));
  TiffPageWriter::Progress at = (*writer)->progress();
  if (past) EXPECT_OK((*writer)->WritePage(stack.slice_data(pages)));
  (*writer)->Keep();
  return at;
}

TEST(TiffResumeTest, ATakenUpFileIsTheBytesOfOneWriter) {
  const Stack stack = MakeStack({6, 64, 96}, PixelType::kUint16);
  for (Compression c : {Compression::kNone, Compression::kDeflate, Compression::kZstd}) {
    for (bool bigtiff : {false, true}) {
      for (int64_t pages : {0, 1, 4, 6}) {
        for (bool past : {false, true}) {
          if (past && pages == 6) continue;
          SCOPED_TRACE(absl::StrCat(CompressionName(c), bigtiff ? " BigTIFF" : "", " after ", pages,
                                    past ? " pages and one more" : " pages"));
          TempDir dir;
          WriteOptions options;
          options.compression = c;
          if (bigtiff) options.bigtiff_threshold = 0;
          ASSERT_OK_AND_ASSIGN(std::unique_ptr<TiffPageWriter> whole,
                               TiffPageWriter::Create(dir.File("whole.tif"), stack.shape(),
                                                      stack.pixel_type(), Described(), options));
          for (int64_t z = 0; z < 6; ++z) ASSERT_OK(whole->WritePage(stack.slice_data(z)));
          ASSERT_OK(whole->Commit());

          const std::string path = dir.File("out.tif");
          const TiffPageWriter::Progress at = WriteAndEnd(path, stack, options, pages, past);
          ASSERT_TRUE(fs::exists(dir.File(at.temp)));
          ASSERT_FALSE(fs::exists(path));
          ASSERT_OK_AND_ASSIGN(OutputTarget target, OutputTarget::ForPath(path));
          ASSERT_OK_AND_ASSIGN(std::unique_ptr<TiffPageWriter> writer,
                               TiffPageWriter::Resume(target, at, stack.shape(), stack.pixel_type(),
                                                      Described(), options));
          EXPECT_EQ(writer->pages_written(), pages);
          for (int64_t z = pages; z < 6; ++z) ASSERT_OK(writer->WritePage(stack.slice_data(z)));
          ASSERT_OK(writer->Commit());
          EXPECT_TRUE(Bytes(path) == Bytes(dir.File("whole.tif")));
          EXPECT_FALSE(fs::exists(dir.File(at.temp)));
        }
      }
    }
  }
}

TEST(TiffResumeTest, AFileThatIsNotWhatTheProgressSaysIsRefused) {
  const Stack stack = MakeStack({6, 64, 96}, PixelType::kUint8);
  for (Compression c : {Compression::kNone, Compression::kDeflate}) {
    SCOPED_TRACE(CompressionName(c));
    TempDir dir;
    WriteOptions options;
    options.compression = c;
    const std::string path = dir.File("out.tif");
    const TiffPageWriter::Progress at = WriteAndEnd(path, stack, options, 3, false);
    ASSERT_OK_AND_ASSIGN(OutputTarget target, OutputTarget::ForPath(path));
    auto resume = [&](const TiffPageWriter::Progress& from) {
      return TiffPageWriter::Resume(target, from, stack.shape(), stack.pixel_type(), Described(),
                                    options)
          .status();
    };
    TiffPageWriter::Progress more = at;  // a page more than the file has
    more.pages = 4;
    if (c == Compression::kNone) more.end += stack.slice_bytes();
    EXPECT_THAT(resume(more), StatusIs(absl::StatusCode::kDataLoss, HasSubstr(at.temp)));
    TiffPageWriter::Progress elsewhere = at;
    elsewhere.temp = "../" + at.temp;
    EXPECT_THAT(resume(elsewhere),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no unfinished file")));
    TiffPageWriter::Progress beyond = at;
    beyond.pages = 7;
    EXPECT_THAT(resume(beyond),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page 7 of 6")));
    // Another layout: the same pages compressed otherwise, or not at all.
    WriteOptions other = options;
    other.compression = c == Compression::kNone ? Compression::kDeflate : Compression::kNone;
    EXPECT_THAT(
        TiffPageWriter::Resume(target, at, stack.shape(), stack.pixel_type(), Described(), other)
            .status(),
        StatusIs(absl::StatusCode::kDataLoss, HasSubstr("cannot be taken up")));
    if (c == Compression::kDeflate) {  // the same pages, read as another codec's
      other.compression = Compression::kZstd;
      EXPECT_THAT(
          TiffPageWriter::Resume(target, at, stack.shape(), stack.pixel_type(), Described(), other)
              .status(),
          StatusIs(absl::StatusCode::kDataLoss, HasSubstr("compression")));
    }
    fs::resize_file(dir.File(at.temp), at.end - 1);  // cut short
    EXPECT_THAT(resume(at), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("bytes of the")));
    fs::remove(dir.File(at.temp));
    EXPECT_THAT(resume(at), StatusIs(absl::StatusCode::kNotFound, HasSubstr("is gone")));
  }
}

TEST(TiffResumeTest, AFileStillBeingWrittenIsNotTakenUp) {
  const Stack stack = MakeStack({4, 32, 32}, PixelType::kUint8);
  TempDir dir;
  const std::string path = dir.File("out.tif");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TiffPageWriter> writer,
                       TiffPageWriter::Create(path, stack.shape(), stack.pixel_type(), {}));
  ASSERT_OK(writer->WritePage(stack.slice_data(0)));
  ASSERT_OK_AND_ASSIGN(OutputTarget target, OutputTarget::ForPath(path));
  EXPECT_THAT(
      TiffPageWriter::Resume(target, writer->progress(), stack.shape(), stack.pixel_type(), {})
          .status(),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("another process")));
  for (int64_t z = 1; z < 4; ++z) ASSERT_OK(writer->WritePage(stack.slice_data(z)));
  EXPECT_OK(writer->Commit());  // untouched by the refused Resume
  ASSERT_OK_AND_ASSIGN(Stack back, ReadTiff(path));
  EXPECT_TRUE(::stackproc::testing::StacksEqual(back, stack));
}

}  // namespace
}  // namespace stackproc::core
