// Plane sequences written by tifffile: a folder, a printf pattern and a glob read as one stack
// in natural order, through a path job (ProcessFile), checked against tifffile's own pixels;
// gaps, mixed planes and empty matches refused naming the file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"
#include "core/io/sequence_io.h"
#include "core/io/tiff_io.h"
#include "core/process/process_file.h"
#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc::core {
namespace {

using ::stackproc::testing::Ops;
using ::stackproc::testing::RunCommand;
using ::stackproc::testing::SourceDir;
using ::stackproc::testing::StatusIs;
using ::stackproc::testing::TempDir;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(NaturalOrderTest, NumbersCompareByValue) {
  std::vector<std::string> names = {"z10.tif",  "z2.tif",  "z1.tif", "a.tif",
                                    "z002.tif", "z1b.tif", "z01.tif"};
  std::sort(names.begin(), names.end(), NaturalLess);
  // Equal numbers: the shorter run first, before what follows it is compared.
  EXPECT_THAT(
      names, ElementsAre("a.tif", "z1.tif", "z1b.tif", "z01.tif", "z2.tif", "z002.tif", "z10.tif"));
}

// tifffile's planes of `raw` (`planes` of them), inverted by hand.
Stack InvertedRaw(const std::string& raw, int64_t planes) {
  absl::StatusOr<Stack> stack = Stack::Allocate({planes, 40, 56}, PixelType::kUint16);
  std::ifstream in(raw, std::ios::binary);
  in.read(reinterpret_cast<char*>(stack->data()),
          static_cast<std::streamsize>(stack->size_bytes()));
  EXPECT_TRUE(in.good());
  auto* pixels = reinterpret_cast<uint16_t*>(stack->data());
  for (size_t i = 0; i < stack->size_bytes() / 2; ++i) pixels[i] = 65535 - pixels[i];
  return std::move(stack).value();
}

class SequenceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    ASSERT_EQ(RunCommand(absl::StrCat(STACKPROC_PYTHON, " ", SourceDir(),
                                      "/tests/core/plane_sequences.py ", dir_->path().string())),
              0);
  }
  static void TearDownTestSuite() { delete dir_; }

  // tifffile's planes, inverted by hand: the reference for an "invert" job.
  static Stack Expected() { return InvertedRaw(dir_->File("seq.raw"), 13); }

  static absl::StatusOr<Stack> Invert(const std::string& input) {
    ProcessRequest request;
    request.input_path = input;
    request.output_path = dir_->File("out.tif");
    request.ops = Ops({"invert"});
    STACKPROC_RETURN_IF_ERROR(ProcessFile(request).status());
    return ReadTiff(request.output_path);
  }

  static TempDir* dir_;
};
TempDir* SequenceTest::dir_ = nullptr;

TEST_F(SequenceTest, AFolderAGlobAndAPatternAreOneStack) {
  const Stack expected = Expected();
  for (const std::string& input :
       {dir_->File("seq"), dir_->File("seq/"), dir_->File("seq/p*.tif")}) {
    SCOPED_TRACE(input);
    ASSERT_OK_AND_ASSIGN(Stack out, Invert(input));
    EXPECT_TRUE(::stackproc::testing::StacksEqual(out, expected));
  }
  // A pattern: the numbered files, without the two-page one it does not make.
  ASSERT_OK_AND_ASSIGN(std::optional<PlaneFiles> planes,
                       ListPlanes(LocalFiles(), dir_->File("seq/p%d.tif")));
  ASSERT_TRUE(planes.has_value());
  EXPECT_EQ(planes->paths.size(), 12u);
  EXPECT_EQ(planes->paths.front(), dir_->File("seq/p1.tif"));
  EXPECT_EQ(planes->paths.back(), dir_->File("seq/p12.tif"));
  EXPECT_FALSE(planes->dims.has_value());
  // A single file is no sequence.
  ASSERT_OK_AND_ASSIGN(planes, ListPlanes(LocalFiles(), dir_->File("seq/p1.tif")));
  EXPECT_FALSE(planes.has_value());
}

TEST_F(SequenceTest, BadSequencesAreRefusedNamingTheFile) {
  std::filesystem::remove(dir_->File("out.tif"));
  EXPECT_THAT(Invert(dir_->File("gap/z%04d.tif")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("z0003.tif is missing"), HasSubstr("z0004.tif"))));
  EXPECT_THAT(Invert(dir_->File("mixed")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("a2.tif"), HasSubstr("56x40 uint16"))));
  EXPECT_THAT(Invert(dir_->File("seq/q*.tif")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("q*.tif")));
  EXPECT_THAT(Invert(dir_->File("seq/z%4x.tif")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("%0Nd")));
  EXPECT_FALSE(std::filesystem::exists(dir_->File("out.tif")));
}

TEST_F(SequenceTest, AFieldPatternReadsChannelsAndTimePoints) {
  // img_c{c}_z{z}: 2 channels of 3 slices numbered from 1, in c, z order.
  ASSERT_OK_AND_ASSIGN(Stack out, Invert(dir_->File("chan/img_c{c}_z{z}.tif")));
  EXPECT_TRUE(::stackproc::testing::StacksEqual(out, InvertedRaw(dir_->File("chan.raw"), 6)));
  EXPECT_EQ(out.metadata().dims.channels, 2);
  EXPECT_EQ(out.metadata().dims.times, 1);
  // T{t}_C{c}_Z{z}, unpadded from 1: 2 time points of 2 channels of 2 slices, in t, c, z order.
  ASSERT_OK_AND_ASSIGN(out, Invert(dir_->File("tcz/T{t}_C{c}_Z{z}.tif")));
  EXPECT_TRUE(::stackproc::testing::StacksEqual(out, InvertedRaw(dir_->File("tcz.raw"), 8)));
  EXPECT_EQ(out.metadata().dims.times, 2);
  EXPECT_EQ(out.metadata().dims.channels, 2);
  // Channels without z (one plane each): {z} may be left out.
  ASSERT_OK_AND_ASSIGN(std::optional<PlaneFiles> single,
                       ListPlanes(LocalFiles(), dir_->File("chan/img_c{c}_z0002.tif")));
  ASSERT_TRUE(single.has_value() && single->dims.has_value());
  EXPECT_EQ(single->dims->channels, 2);
  EXPECT_THAT(single->paths, ElementsAre(dir_->File("chan/img_c0_z0002.tif"),
                                         dir_->File("chan/img_c1_z0002.tif")));
  // Only the slices of one channel: a z-stack.
  ASSERT_OK_AND_ASSIGN(std::optional<PlaneFiles> planes,
                       ListPlanes(LocalFiles(), dir_->File("chan/img_c1_z{z}.tif")));
  ASSERT_TRUE(planes.has_value());
  EXPECT_THAT(planes->paths,
              ElementsAre(dir_->File("chan/img_c1_z0001.tif"), dir_->File("chan/img_c1_z0002.tif"),
                          dir_->File("chan/img_c1_z0003.tif")));
  EXPECT_FALSE(planes->dims.has_value());
}

TEST_F(SequenceTest, NamesThatCarryChannelsNeedAPatternThatSaysSo) {
  std::filesystem::remove(dir_->File("out.tif"));
  // A folder or a glob of them would be read as 6 z-slices: refused, with the way to say it.
  for (const std::string& input : {dir_->File("chan"), dir_->File("chan/*.tif")}) {
    EXPECT_THAT(Invert(input),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("carry a channel"), HasSubstr("img_c{c}_z{z}.tif"))))
        << input;
  }
  // Micro-Manager's names: channel and time tokens beside z.
  namespace fs = std::filesystem;
  fs::create_directories(dir_->File("mm"));
  for (int c = 0; c < 2; ++c) {
    for (int z = 0; z < 3; ++z) {
      fs::copy_file(dir_->File(absl::StrFormat("chan/img_c%d_z%04d.tif", c, z + 1)),
                    dir_->File(absl::StrFormat(
                        "mm/img_channel%03d_position000_time000000000_z%03d.tif", c, z)));
    }
  }
  EXPECT_THAT(Invert(dir_->File("mm")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("carry a channel")));
  ASSERT_OK_AND_ASSIGN(Stack mm,
                       Invert(dir_->File("mm/img_channel{c}_position000_time000000000_z{z}.tif")));
  EXPECT_EQ(mm.metadata().dims.channels, 2);
  // Not refused: single channels with no other axis (as before, a stack of them), and numbers
  // that are no indices (times of day).
  fs::create_directories(dir_->File("single"));
  fs::create_directories(dir_->File("clock"));
  for (int c = 0; c < 2; ++c) {
    const std::string from = dir_->File(absl::StrFormat("chan/img_c%d_z0001.tif", c));
    fs::copy_file(from, dir_->File(absl::StrFormat("single/img_c%d.tif", c)));
    fs::copy_file(from, dir_->File(absl::StrFormat("clock/run_T1030%02d_%03d.tif", c * 7, c)));
  }
  for (const char* folder : {"single", "clock"}) {
    ASSERT_OK_AND_ASSIGN(Stack read, Invert(dir_->File(folder)));
    EXPECT_EQ(read.shape().depth, 2) << folder;
    EXPECT_EQ(read.metadata().dims.channels, 1) << folder;
  }
  std::filesystem::remove(dir_->File("out.tif"));
  EXPECT_THAT(Invert(dir_->File("holes/img_c{c}_z{z}.tif")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no file of time point 0, channel 1, z-slice 2")));
  for (const char* pattern :
       {"chan/img_c{c}_z{q}.tif", "chan/img_c{c}_z{z}_{z}.tif", "chan/img_c{c}{z}.tif"}) {
    EXPECT_THAT(Invert(dir_->File(pattern)),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most once each")))
        << pattern;
  }
  EXPECT_THAT(Invert(dir_->File("chan/img_t{t}_z{z}.tif")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no file matches")));
  EXPECT_FALSE(std::filesystem::exists(dir_->File("out.tif")));
}

TEST_F(SequenceTest, AStackWrittenAsPlanesReadsBackInTifffile) {
  const Stack expected = Expected();
  ProcessRequest request;
  request.input_path = dir_->File("seq");
  request.ops = Ops({"invert"});
  request.output_path = dir_->File("written/");  // planes z0000.tif, z0001.tif, ...
  ASSERT_OK(ProcessFile(request));
  request.output_path = dir_->File("named/slice_%03d.tif");
  ASSERT_OK(ProcessFile(request));
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir_->File("named"))) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  ASSERT_EQ(names.size(), 14u);  // 13 planes and what made them
  EXPECT_EQ(names.front(), "slice_000.tif");
  EXPECT_EQ(names[12], "slice_012.tif");
  EXPECT_EQ(names.back(), "stackproc.json");

  // tifffile reads each plane file (one page each) and finds the pixels expected.
  {
    std::ofstream raw(dir_->File("expected.raw"), std::ios::binary);
    raw.write(reinterpret_cast<const char*>(expected.data()),
              static_cast<std::streamsize>(expected.size_bytes()));
  }
  for (const char* folder : {"written/z*.tif", "named/slice_*.tif"}) {
    EXPECT_EQ(
        RunCommand(absl::StrCat(STACKPROC_PYTHON, " -c '", R"(
import glob, sys, numpy, tifffile
files = sorted(glob.glob(sys.argv[1]))
pages = [len(tifffile.TiffFile(f).pages) for f in files]
planes = numpy.stack([tifffile.imread(f) for f in files])
expected = numpy.fromfile(sys.argv[2], numpy.uint16).reshape(planes.shape)
sys.exit(0 if pages == [1] * 13 and numpy.array_equal(planes, expected) else 1))",
                                "' \"", dir_->File(folder), "\" ", dir_->File("expected.raw"))),
        0)
        << folder;
  }
}

TEST_F(SequenceTest, ASequenceIsWrittenWholeOrNotAtAll) {
  ProcessRequest request;
  request.input_path = dir_->File("seq");
  request.ops = Ops({"invert"});
  // An existing folder is not written into, nor replaced without overwrite.
  std::filesystem::create_directory(dir_->File("taken"));
  request.output_path = dir_->File("taken/");
  request.write.overwrite = false;
  EXPECT_THAT(ProcessFile(request), StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("taken")));
  EXPECT_TRUE(std::filesystem::is_empty(dir_->File("taken")));
  // With overwrite, a folder of planes is replaced whole; a folder holding anything else is not.
  request.write.overwrite = true;
  std::ofstream(dir_->File("taken/old.tif")) << "an old plane";
  ASSERT_OK(ProcessFile(request));
  EXPECT_FALSE(std::filesystem::exists(dir_->File("taken/old.tif")));
  EXPECT_TRUE(std::filesystem::exists(dir_->File("taken/z0012.tif")));
  std::filesystem::create_directory(dir_->File("notes"));
  std::ofstream(dir_->File("notes/notes.txt")) << "keep";
  request.output_path = dir_->File("notes/");
  EXPECT_THAT(ProcessFile(request),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("files other than .tif")));
  EXPECT_TRUE(std::filesystem::exists(dir_->File("notes/notes.txt")));
  // A plane that cannot be read once planes are being written (truncated after it was
  // validated): the run fails, and neither the folder nor its temporary one stays.
  std::filesystem::copy(dir_->File("seq"), dir_->File("copy"));
  request.input_path = dir_->File("copy");
  request.on_stage = [&](absl::string_view) {
    std::filesystem::resize_file(dir_->File("copy/p7.tif"), 100);
  };
  request.output_path = dir_->File("cut/");
  EXPECT_THAT(ProcessFile(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("p7.tif")));
  for (const auto& entry : std::filesystem::directory_iterator(dir_->path())) {
    EXPECT_THAT(entry.path().filename().string(), ::testing::Not(HasSubstr("cut")));
  }
  // A pattern needs a folder of its own: refused before anything is read.
  request.input_path = dir_->File("seq");
  request.on_stage = nullptr;
  request.output_path = "z%04d.tif";
  EXPECT_THAT(ProcessFile(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("folder of its own")));
}

TEST(SequenceSweepTest, WhatAKilledWriteLeftIsRemoved) {
  // A process killed mid-sequence leaves its temporary folder, planes in it, beside the target;
  // the restart sweep (RemoveTempFiles with the job's tag) removes it and nothing else.
  TempDir dir;
  const std::string left = dir.File(TempNameFor("out", "job7"));
  std::filesystem::create_directory(left);
  std::ofstream(left + "/z0000.tif") << "plane";
  std::ofstream(left + "/.z0001.tif.tmp-1-2") << "half a plane";
  const std::string other = dir.File(TempNameFor("out", "job8"));
  std::filesystem::create_directory(other);
  ASSERT_OK_AND_ASSIGN(OutputTarget target, OutputTarget::ForPath(dir.File("out")));
  EXPECT_EQ(RemoveTempFiles(target, "job7"), 1);
  EXPECT_FALSE(std::filesystem::exists(left));
  EXPECT_TRUE(std::filesystem::exists(other));
}

}  // namespace
}  // namespace stackproc::core
