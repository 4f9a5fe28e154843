// The gRPC service end to end in one process: a real server on port 0, the real client.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "client/client.h"
#include "core/io/stack_io.h"
#include "core/io/tiff_io.h"
#include "core/pipeline/operation_registry.h"
#include "core/process/process_file.h"
#include "core/tiff/tiff_reader.h"
#include "core/tiff/tiff_writer.h"
#include "server/api/server.h"
#include "tests/server/service_fixture.h"
#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc {
namespace {

namespace fs = std::filesystem;
using ::stackproc::testing::MakeStack;
using ::stackproc::testing::StacksEqual;
using ::stackproc::testing::StatusIs;
using ::stackproc::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST_F(ServiceTest, SubmitWatchFinishEqualsCore) {
  core::Stack input = Input("in.tif", {12, 96, 80});
  const std::vector<std::string> ops = {"gaussian:ksize=5", "resize:scale=0.5"};
  ASSERT_OK_AND_ASSIGN(v1::Job job, client_->Submit(Request("in.tif", ops, "result.tif")));
  EXPECT_EQ(job.input_shape().depth(), 12);
  EXPECT_EQ(job.output_shape().width(), 40);
  std::vector<v1::JobState> states;
  ASSERT_OK_AND_ASSIGN(v1::Job last, client_->Watch(job.id(), [&](const v1::Job& j) {
    states.push_back(j.state());
  }));
  EXPECT_EQ(last.state(), v1::JOB_STATE_SUCCEEDED) << last.error().message();
  EXPECT_EQ(last.progress().slices_done(), 12);
  ASSERT_FALSE(states.empty());
  EXPECT_EQ(states.back(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_TRUE(std::is_sorted(states.begin(), states.end()));
  ASSERT_OK_AND_ASSIGN(core::Stack written, core::ReadTiff(root_.File("result.tif")));
  EXPECT_TRUE(StacksEqual(written, CoreResult(input, ops)));
}

TEST_F(ServiceTest, InMemoryResultDownloadsAndResumesFromAnOffset) {
  core::Stack input = Input("in.tif", {5, 700, 900});  // 1.26 MB slices: two chunks each
  const std::vector<std::string> ops = {"invert"};
  ASSERT_OK_AND_ASSIGN(v1::Job job, client_->Submit(Request("in.tif", ops, "")));
  ASSERT_OK(client_->Watch(job.id(), nullptr));
  ASSERT_OK_AND_ASSIGN(core::Stack result, client_->Download(job.id()));
  const core::Stack want = CoreResult(input, ops);
  EXPECT_TRUE(StacksEqual(result, want));

  // Resume at slice 3, byte 1000: the first chunk starts exactly there.
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::StackProcessor::NewStub(channel);
  grpc::ClientContext context;
  v1::ReadResultRequest request;
  request.set_job_id(job.id());
  request.set_start_slice(3);
  request.set_start_offset(1000);
  auto reader = stub->ReadResult(&context, request);
  v1::ReadResultResponse message;
  ASSERT_TRUE(reader->Read(&message));
  ASSERT_TRUE(message.has_header());
  EXPECT_EQ(message.header().total_bytes(), static_cast<int64_t>(want.size_bytes()));
  ASSERT_TRUE(reader->Read(&message));
  ASSERT_TRUE(message.has_chunk());
  EXPECT_EQ(message.chunk().slice(), 3);
  EXPECT_EQ(message.chunk().offset(), 1000);
  EXPECT_LE(message.chunk().data().size(), size_t{1} << 20);
  EXPECT_EQ(0, std::memcmp(message.chunk().data().data(), want.slice_data(3) + 1000,
                           message.chunk().data().size()));
  context.TryCancel();
}

TEST_F(ServiceTest, BadRequestsGetTheRightCodes) {
  Input("in.tif", {2, 16, 16});
  EXPECT_THAT(client_->Submit(Request("in.tif", {"blur"}, "o.tif")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown operation 'blur'")));
  EXPECT_THAT(client_->Submit(Request("in.tif", {"gaussian:ksize=4"}, "o.tif")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must be odd")));
  EXPECT_THAT(client_->Submit(Request("in.tif", {"clahe", "convert:to=float32", "clahe"}, "o.tif")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("operation 3 (clahe)")));
  EXPECT_THAT(client_->Submit(Request("missing.tif", {"invert"}, "o.tif")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.tif")));
  EXPECT_THAT(client_->Submit(Request("in.tif", {"invert"}, "no/such/dir/o.tif")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("does not exist")));
  // A level the codec does not take, and a level for a codec without levels.
  v1::SubmitJobRequest leveled = Request("in.tif", {"invert"}, "o.tif");
  leveled.mutable_spec()->mutable_output()->set_compression(v1::COMPRESSION_DEFLATE);
  leveled.mutable_spec()->mutable_output()->set_compression_level(42);
  EXPECT_THAT(client_->Submit(leveled),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("level 42 is outside 1-9")));
  leveled.mutable_spec()->mutable_output()->set_compression(v1::COMPRESSION_LZW);
  leveled.mutable_spec()->mutable_output()->set_compression_level(3);
  EXPECT_THAT(client_->Submit(leveled),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lzw takes no level")));
  std::ofstream(root_.File("corrupt.tif")) << "II*\0garbage";
  EXPECT_THAT(client_->Submit(Request("corrupt.tif", {"invert"}, "o.tif")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("corrupt.tif")));
  EXPECT_THAT(client_->Get("nope"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_TRUE(RootEntries() == std::vector<std::string>({"corrupt.tif", "in.tif"}));
}

TEST_F(ServiceTest, PathsOutsideTheDataRootArePermissionDenied) {
  Input("in.tif", {2, 16, 16});
  TempDir outside;
  ASSERT_OK(
      core::WriteTiff(outside.File("secret.tif"), MakeStack({1, 8, 8}, core::PixelType::kUint8)));
  fs::create_symlink(outside.File("secret.tif"), root_.File("link.tif"));
  fs::create_directory_symlink(outside.path(), root_.File("out-link"));
  for (const std::string& input : {std::string("../x.tif"), outside.File("secret.tif"),
                                   std::string("link.tif"), std::string("sub/../../x.tif")}) {
    EXPECT_THAT(client_->Submit(Request(input, {"invert"}, "o.tif")),
                StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_))
        << input;
  }
  EXPECT_THAT(client_->Submit(Request("in.tif", {"invert"}, "out-link/o.tif")),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("outside")));
  EXPECT_THAT(client_->Submit(Request("in.tif", {"invert"}, "../o.tif")),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("outside")));
  EXPECT_FALSE(fs::exists(outside.File("o.tif")));
}

TEST_F(ServiceTest, APathJobReadsAFolderOfPlanesBeneathTheRoot) {
  const core::Stack input = MakeStack({5, 32, 40}, core::PixelType::kUint16, 4);
  fs::create_directory(root_.File("planes"));
  for (int64_t z = 0; z < input.depth(); ++z) {  // z1.tif .. z5.tif: one plane each
    ASSERT_OK_AND_ASSIGN(core::Stack plane, core::Stack::Allocate({1, 32, 40}, input.pixel_type()));
    std::memcpy(plane.data(), input.slice_data(z), input.slice_bytes());
    ASSERT_OK(core::WriteTiff(root_.File(absl::StrCat("planes/z", z + 1, ".tif")), plane));
  }
  const core::Stack expected = CoreResult(input, {"invert"});
  for (const char* planes : {"planes", "planes/z%d.tif", "planes/*.tif"}) {
    SCOPED_TRACE(planes);
    ASSERT_OK_AND_ASSIGN(v1::Job job, client_->Submit(Request(planes, {"invert"}, "out.tif")));
    EXPECT_EQ(job.input_shape().depth(), 5);
    ASSERT_OK_AND_ASSIGN(v1::Job last, client_->Watch(job.id(), nullptr));
    ASSERT_EQ(last.state(), v1::JOB_STATE_SUCCEEDED) << last.error().message();
    ASSERT_OK_AND_ASSIGN(core::Stack out, core::ReadTiff(root_.File("out.tif")));
    EXPECT_TRUE(StacksEqual(out, expected));
    fs::remove(root_.File("out.tif"));
  }
  // Written as planes, into a folder of its own beneath the root; read back as a sequence.
  ASSERT_OK_AND_ASSIGN(v1::Job job, client_->Submit(Request("planes", {"invert"}, "inverted/")));
  ASSERT_OK_AND_ASSIGN(v1::Job last, client_->Watch(job.id(), nullptr));
  ASSERT_EQ(last.state(), v1::JOB_STATE_SUCCEEDED) << last.error().message();
  EXPECT_TRUE(fs::exists(root_.File("inverted/z0004.tif")));
  core::ProcessRequest back;
  back.input_path = root_.File("inverted");
  ASSERT_OK_AND_ASSIGN(core::ProcessSummary read, core::ProcessFile(back));
  EXPECT_TRUE(StacksEqual(*read.result, expected));
  EXPECT_THAT(client_->Submit(Request("planes", {"invert"}, "inverted/")),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("inverted")));
  EXPECT_THAT(client_->Submit(Request("planes", {"invert"}, "../escaped/")),
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));

  // Every plane is opened beneath the root: a link in the folder that leads out is refused, as
  // are folders and patterns outside it.
  TempDir outside;
  ASSERT_OK(core::WriteTiff(outside.File("secret.tif"),
                            MakeStack({1, 32, 40}, core::PixelType::kUint16)));
  fs::create_directory(root_.File("leaky"));
  fs::copy_file(root_.File("planes/z1.tif"), root_.File("leaky/a1.tif"));
  fs::create_symlink(outside.File("secret.tif"), root_.File("leaky/a2.tif"));
  for (const std::string& planes :
       {std::string("leaky"), std::string("../planes/z%d.tif"), outside.path().string()}) {
    EXPECT_THAT(client_->Submit(Request(planes, {"invert"}, "out.tif")),
                StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_))
        << planes;
  }
  EXPECT_FALSE(fs::exists(root_.File("out.tif")));
}

TEST_F(ServiceTest, APathJobWritesAndReadsOmeZarrBeneathTheRoot) {
  const core::Stack input = Input("in.tif", {9, 48, 40});
  const core::Stack expected = CoreResult(input, {"invert"});
  v1::SubmitJobRequest request = Request("in.tif", {"invert"}, "out.ome.zarr");
  v1::OutputSpec* output = request.mutable_spec()->mutable_output();
  output->set_pyramid_levels(2);
  output->mutable_chunks()->set_depth(4);
  output->mutable_chunks()->set_height(32);
  output->mutable_chunks()->set_width(32);
  output->set_compression(v1::COMPRESSION_LZ4);
  output->mutable_zarr_shards()->set_depth(8);
  output->mutable_zarr_shards()->set_height(32);
  output->mutable_zarr_shards()->set_width(32);
  ASSERT_OK_AND_ASSIGN(v1::Job job, client_->Submit(request));
  ASSERT_OK_AND_ASSIGN(v1::Job last, client_->Watch(job.id(), nullptr));
  ASSERT_EQ(last.state(), v1::JOB_STATE_SUCCEEDED) << last.error().message();
  // The job states what it was asked for.
  EXPECT_EQ(last.spec().output().pyramid_levels(), 2);
  EXPECT_EQ(last.spec().output().chunks().depth(), 4);
  EXPECT_EQ(last.spec().output().zarr_shards().depth(), 8);
  EXPECT_EQ(last.spec().output().zarr_format(), 3);
  EXPECT_EQ(last.spec().output().compression(), v1::COMPRESSION_LZ4);
  // NGFF 0.5: zarr.json, and shards of 8 slices by 32 x 32 (the second z-shard holds slice 8).
  for (const char* file : {"out.ome.zarr/zarr.json", "out.ome.zarr/0/zarr.json",
                           "out.ome.zarr/2/zarr.json", "out.ome.zarr/0/c/1/1/1"}) {
    EXPECT_TRUE(fs::exists(root_.File(file))) << file;
  }
  // NGFF 0.4 when asked: a file per chunk.
  output->set_path("v2.ome.zarr");
  output->clear_zarr_shards();
  output->set_zarr_format(2);
  ASSERT_OK_AND_ASSIGN(job, client_->Submit(request));
  ASSERT_OK_AND_ASSIGN(last, client_->Watch(job.id(), nullptr));
  ASSERT_EQ(last.state(), v1::JOB_STATE_SUCCEEDED) << last.error().message();
  for (const char* file : {"v2.ome.zarr/.zattrs", "v2.ome.zarr/0/.zarray", "v2.ome.zarr/2/.zarray",
                           "v2.ome.zarr/0/2/1/1"}) {
    EXPECT_TRUE(fs::exists(root_.File(file))) << file;
  }
  // Read back by a path job: the store is an input like any other, beneath the root.
  ASSERT_OK_AND_ASSIGN(job, client_->Submit(Request("out.ome.zarr", {}, "back.tif")));
  ASSERT_OK_AND_ASSIGN(last, client_->Watch(job.id(), nullptr));
  ASSERT_EQ(last.state(), v1::JOB_STATE_SUCCEEDED) << last.error().message();
  ASSERT_OK_AND_ASSIGN(core::Stack back, core::ReadTiff(root_.File("back.tif")));
  EXPECT_TRUE(StacksEqual(back, expected));

  // Refused at submission: an existing store, options of another format, a path outside.
  EXPECT_THAT(client_->Submit(Request("in.tif", {"invert"}, "out.ome.zarr")),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("out.ome.zarr")));
  // With overwrite a store is replaced; a folder of something else is refused at submission.
  v1::SubmitJobRequest again = Request("in.tif", {}, "out.ome.zarr");
  again.mutable_spec()->mutable_output()->set_overwrite(true);
  ASSERT_OK_AND_ASSIGN(job, client_->Submit(again));
  ASSERT_OK_AND_ASSIGN(last, client_->Watch(job.id(), nullptr));
  ASSERT_EQ(last.state(), v1::JOB_STATE_SUCCEEDED) << last.error().message();
  EXPECT_FALSE(fs::exists(root_.File("out.ome.zarr/2")));
  fs::create_directory(root_.File("results.zarr"));
  std::ofstream(root_.File("results.zarr/notes.txt")) << "keep";
  v1::SubmitJobRequest clobber = Request("in.tif", {}, "results.zarr");
  clobber.mutable_spec()->mutable_output()->set_overwrite(true);
  EXPECT_THAT(client_->Submit(clobber),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("results.zarr")));
  EXPECT_TRUE(fs::exists(root_.File("results.zarr/notes.txt")));
  v1::SubmitJobRequest lzw = Request("in.tif", {"invert"}, "lzw.zarr");
  lzw.mutable_spec()->mutable_output()->set_compression(v1::COMPRESSION_LZW);
  EXPECT_THAT(client_->Submit(lzw),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lzw is not an OME-Zarr")));
  EXPECT_THAT(client_->Submit(Request("in.tif", {"invert"}, "../escaped.zarr")),
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  // Every file of a store is opened beneath the root: a dataset path that leads out is refused.
  TempDir outside;
  fs::create_directory(root_.File("leaky.zarr"));
  std::ofstream(root_.File("leaky.zarr/.zattrs"))
      << R"({"multiscales": [{"version": "0.4", "datasets": [{"path": "../../secret"}]}]})";
  EXPECT_THAT(client_->Submit(Request("leaky.zarr", {"invert"}, "o.tif")),
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  EXPECT_FALSE(fs::exists(root_.File("o.tif")));
  EXPECT_FALSE(fs::exists(root_.File("lzw.zarr")));
}

TEST_F(ServiceTest, ExistingOutputNeedsOverwrite) {
  Input("in.tif", {2, 16, 16});
  std::ofstream(root_.File("o.tif")) << "keep";
  EXPECT_THAT(client_->Submit(Request("in.tif", {"invert"}, "o.tif")),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("overwrite")));
  v1::SubmitJobRequest replace = Request("in.tif", {"invert"}, "o.tif");
  replace.mutable_spec()->mutable_output()->set_overwrite(true);
  ASSERT_OK_AND_ASSIGN(v1::Job job, client_->Submit(replace));
  ASSERT_OK_AND_ASSIGN(v1::Job last, client_->Watch(job.id(), nullptr));
  EXPECT_EQ(last.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_GT(fs::file_size(root_.File("o.tif")), 4u);
}

TEST_F(ServiceTest, CancelMidJobLeavesNoOutput) {
  Input("in.tif", {200, 256, 256}, core::PixelType::kUint8);
  ASSERT_OK_AND_ASSIGN(v1::Job job, client_->Submit(Request("in.tif", kSlowOps, "o.tif")));
  WaitUntilProcessing(job.id());
  ASSERT_OK(client_->Cancel(job.id()));
  ASSERT_OK_AND_ASSIGN(v1::Job last, client_->Watch(job.id(), nullptr));
  EXPECT_EQ(last.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(last.error().code(), static_cast<int>(absl::StatusCode::kCancelled));
  EXPECT_LT(last.progress().slices_done(), 200);
  EXPECT_TRUE(RootEntries() == std::vector<std::string>({"in.tif"}));
}

TEST_F(ServiceTest, ACallerHasAtMostItsShareOfJobsQueuedOrRunning) {
  server_.reset();
  configure_ = [](server::ServerOptions& options) { options.jobs.max_jobs_per_caller = 2; };
  StartServer(uint64_t{1} << 30);
  Input("in.tif", {200, 256, 256}, core::PixelType::kUint8);
  ASSERT_OK_AND_ASSIGN(v1::Job running, client_->Submit(Request("in.tif", kSlowOps, "")));
  ASSERT_OK_AND_ASSIGN(v1::Job queued, client_->Submit(Request("in.tif", kSlowOps, "")));
  EXPECT_THAT(client_->Submit(Request("in.tif", {"invert"}, "")),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("has 2 jobs queued or running, the most a caller may have at "
                                 "once (2, --max-jobs-per-caller)")));
  for (const v1::Job& job : {running, queued}) {
    ASSERT_OK(client_->Cancel(job.id()));
    ASSERT_OK(client_->Watch(job.id(), nullptr));
  }
  EXPECT_OK(client_->Submit(Request("in.tif", {"invert"}, "")));  // finished jobs do not count
}

TEST_F(ServiceTest, AFullDiskFailsTheJobCleanlyAndTheServerGoesOn) {
  Input("in.tif", {16, 256, 256}, core::PixelType::kUint16);  // 2 MiB
  std::ofstream(root_.File("o.tif")) << "keep";
  for (const char* mode : {"path job, streaming", "path job, in memory"}) {
    SCOPED_TRACE(mode);
    // normalize over the stack needs the whole stack: the in-memory mode.
    const std::vector<std::string> ops = std::string(mode).find("memory") != std::string::npos
                                             ? std::vector<std::string>{"normalize:scope=stack"}
                                             : std::vector<std::string>{"invert"};
    v1::SubmitJobRequest request = Request("in.tif", ops, "o.tif");
    request.mutable_spec()->mutable_output()->set_overwrite(true);
    v1::Job last;
    {
      ::stackproc::testing::FileSizeLimit full(256 << 10);
      ASSERT_OK_AND_ASSIGN(v1::Job job, client_->Submit(request));
      ASSERT_OK_AND_ASSIGN(last, client_->Watch(job.id(), nullptr));
    }
    EXPECT_EQ(last.state(), v1::JOB_STATE_FAILED);
    EXPECT_EQ(last.error().code(), static_cast<int>(absl::StatusCode::kResourceExhausted));
    EXPECT_THAT(last.error().message(), HasSubstr("o.tif"));
    EXPECT_EQ(fs::file_size(root_.File("o.tif")), 4u);  // the old output, untouched
    EXPECT_TRUE(RootEntries() == std::vector<std::string>({"in.tif", "o.tif"}));
  }
  // Room again: the same job succeeds.
  v1::SubmitJobRequest request = Request("in.tif", {"invert"}, "o.tif");
  request.mutable_spec()->mutable_output()->set_overwrite(true);
  ASSERT_OK_AND_ASSIGN(v1::Job job, client_->Submit(request));
  ASSERT_OK_AND_ASSIGN(v1::Job last, client_->Watch(job.id(), nullptr));
  EXPECT_EQ(last.state(), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(ServiceTest, MemoryBudgetQueuesAndRejects) {
  server_.reset();
  StartServer(uint64_t{20} << 20);                           // 20 MiB, 1 MiB stream window
  Input("in.tif", {48, 512, 512}, core::PixelType::kUint8);  // 12 MiB: one fits at a time
  core::Stack big = Input("big.tif", {100, 512, 512}, core::PixelType::kUint8);  // 25 MiB
  // The whole stack in memory (a whole-stack step, a result kept in memory) never fits.
  EXPECT_THAT(client_->Submit(Request("big.tif", {"normalize:scope=stack"}, "o.tif")),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("memory budget"), HasSubstr("needs the whole stack"))));
  EXPECT_THAT(client_->Submit(Request("big.tif", {"invert"}, "")),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("kept in memory")));

  // A per-slice pipeline into a file streams through the window: larger than the budget is fine.
  ASSERT_OK_AND_ASSIGN(v1::Job streaming,
                       client_->Submit(Request("big.tif", {"invert"}, "big-out.tif")));
  EXPECT_EQ(streaming.mode(), v1::PROCESSING_MODE_STREAMING);
  EXPECT_LT(streaming.memory_bytes(), 4 << 20);
  ASSERT_OK_AND_ASSIGN(v1::Job streamed, client_->Watch(streaming.id(), nullptr));
  EXPECT_EQ(streamed.state(), v1::JOB_STATE_SUCCEEDED) << streamed.error().message();
  ASSERT_OK_AND_ASSIGN(core::Stack out, core::ReadTiff(root_.File("big-out.tif")));
  EXPECT_TRUE(StacksEqual(out, CoreResult(big, {"invert"})));

  // In-memory jobs wait in the queue for memory.
  ASSERT_OK_AND_ASSIGN(v1::Job first, client_->Submit(Request("in.tif", kSlowOps, "")));
  EXPECT_EQ(first.mode(), v1::PROCESSING_MODE_IN_MEMORY);
  WaitUntilProcessing(first.id());
  ASSERT_OK_AND_ASSIGN(v1::Job second, client_->Submit(Request("in.tif", {"invert"}, "")));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_OK_AND_ASSIGN(v1::Job waiting, client_->Get(second.id()));
  EXPECT_EQ(waiting.state(), v1::JOB_STATE_QUEUED);
  // and says why: the one worker is busy.
  EXPECT_THAT(waiting.progress().stage(),
              HasSubstr("waiting for a worker: 1 jobs run, the most at once (--max-running-jobs)"));
  ASSERT_OK(client_->Cancel(first.id()));
  ASSERT_OK_AND_ASSIGN(v1::Job done, client_->Watch(second.id(), nullptr));
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
}

// A job that waits because results kept in memory hold the budget says so, and runs once one
// is deleted.
TEST_F(ServiceTest, AJobWaitingForMemoryHeldByResultsSaysSo) {
  server_.reset();
  configure_ = [](server::ServerOptions& o) { o.jobs.max_running_jobs = 2; };
  StartServer(uint64_t{20} << 20);
  Input("in.tif", {48, 512, 512}, core::PixelType::kUint8);  // 12 MiB: one result fits
  ASSERT_OK_AND_ASSIGN(v1::Job kept, client_->Submit(Request("in.tif", {"invert"}, "")));
  ASSERT_OK(client_->Watch(kept.id(), nullptr));
  ASSERT_OK_AND_ASSIGN(v1::Job second, client_->Submit(Request("in.tif", {"invert"}, "")));
  v1::Job waiting;
  for (int i = 0; i < 100 && waiting.progress().stage().find("memory") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_OK_AND_ASSIGN(waiting, client_->Get(second.id()));
  }
  EXPECT_EQ(waiting.state(), v1::JOB_STATE_QUEUED);
  EXPECT_THAT(waiting.progress().stage(),
              AllOf(HasSubstr("waiting for memory"), HasSubstr("0 running jobs and 1 results kept"),
                    HasSubstr("--memory-budget"), HasSubstr("stackproc delete")));
  ASSERT_OK(client_->Delete(kept.id()));
  ASSERT_OK_AND_ASSIGN(v1::Job done, client_->Watch(second.id(), nullptr));
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(ServiceTest, RequestIdMakesSubmitIdempotent) {
  Input("in.tif", {2, 16, 16});
  v1::SubmitJobRequest request = Request("in.tif", {"gaussian:sigma=1,ksize=3"}, "o.tif");
  request.set_request_id("run-42");
  ASSERT_OK_AND_ASSIGN(v1::Job a, client_->Submit(request));
  ASSERT_OK_AND_ASSIGN(v1::Job b, client_->Submit(request));
  EXPECT_EQ(a.id(), b.id());
  v1::SubmitJobRequest other = Request("in.tif", {"invert"}, "o.tif");
  other.set_request_id("run-42");
  EXPECT_THAT(client_->Submit(other),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("run-42")));
  ASSERT_OK_AND_ASSIGN(std::vector<v1::Job> jobs, client_->List());
  EXPECT_EQ(jobs.size(), 1u);
}

TEST_F(ServiceTest, DroppedWatchDoesNotCancelAndReattaches) {
  Input("in.tif", {24, 256, 256}, core::PixelType::kUint8);
  ASSERT_OK_AND_ASSIGN(v1::Job job, client_->Submit(Request("in.tif", kSlowOps, "o.tif")));
  {
    auto stub = v1::StackProcessor::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    v1::WatchJobRequest request;
    request.set_job_id(job.id());
    auto reader = stub->WatchJob(&context, request);
    v1::WatchJobResponse first;
    ASSERT_TRUE(reader->Read(&first));  // the current state comes at once
    EXPECT_EQ(first.job().id(), job.id());
    context.TryCancel();  // the client goes away mid-watch
  }
  ASSERT_OK_AND_ASSIGN(v1::Job last, client_->Watch(job.id(), nullptr));
  EXPECT_EQ(last.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_TRUE(fs::exists(root_.File("o.tif")));
}

TEST_F(ServiceTest, ShutdownInterruptsRunningJobsWithoutPartialFiles) {
  Input("in.tif", {200, 256, 256}, core::PixelType::kUint8);
  ASSERT_OK_AND_ASSIGN(v1::Job job, client_->Submit(Request("in.tif", kSlowOps, "o.tif")));
  WaitUntilProcessing(job.id());
  server_->Shutdown(absl::ZeroDuration());
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<server::Job> record, server_->jobs().Get(job.id()));
  EXPECT_EQ(record->Snapshot().state, server::JobState::kInterrupted);
  EXPECT_THAT(record->Snapshot().error, StatusIs(absl::StatusCode::kAborted,
                                                 HasSubstr("shut down while the job was running")));
  EXPECT_TRUE(RootEntries() == std::vector<std::string>({"in.tif"}));
}

TEST_F(ServiceTest, DeleteNeedsAFinishedJob) {
  Input("in.tif", {200, 256, 256}, core::PixelType::kUint8);
  ASSERT_OK_AND_ASSIGN(v1::Job job, client_->Submit(Request("in.tif", kSlowOps, "")));
  EXPECT_THAT(client_->Delete(job.id()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cancel it first")));
  EXPECT_THAT(client_->Download(job.id()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not succeeded")));
  ASSERT_OK(client_->Cancel(job.id()));
  ASSERT_OK(client_->Watch(job.id(), nullptr));
  ASSERT_OK(client_->Delete(job.id()));
  EXPECT_THAT(client_->Get(job.id()), StatusIs(absl::StatusCode::kNotFound, HasSubstr(job.id())));
  EXPECT_EQ(server_->jobs().memory_in_use(), 0u);
}

TEST_F(ServiceTest, InMemoryResultsExpireAfterTheirRetention) {
  Input("in.tif", {3, 32, 32});
  v1::SubmitJobRequest request = Request("in.tif", {"invert"}, "");
  request.mutable_spec()->mutable_output()->mutable_in_memory()->set_retention_seconds(1);
  ASSERT_OK_AND_ASSIGN(v1::Job job, client_->Submit(request));
  ASSERT_OK(client_->Watch(job.id(), nullptr));
  ASSERT_OK(client_->Download(job.id()));
  EXPECT_GT(server_->jobs().memory_in_use(), 0u);
  // The manager looks for expired results at least once a second.
  absl::StatusOr<core::Stack> later;
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    later = client_->Download(job.id());
    if (!later.ok()) break;
  }
  EXPECT_THAT(later, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("expired")));
  EXPECT_EQ(server_->jobs().memory_in_use(), 0u);
  ASSERT_OK_AND_ASSIGN(v1::Job still, client_->Get(job.id()));
  EXPECT_EQ(still.state(), v1::JOB_STATE_SUCCEEDED);  // the record stays; only memory is freed
}

TEST_F(ServiceTest, HealthAndOperations) {
  ASSERT_OK_AND_ASSIGN(bool serving, client_->Healthy());
  EXPECT_TRUE(serving);
  ASSERT_OK_AND_ASSIGN(auto ops, client_->ListOperations());
  const auto local = core::OperationRegistry::Builtin().List();
  ASSERT_EQ(ops.size(), local.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    EXPECT_EQ(ops[i].name(), local[i]->name);
    EXPECT_EQ(ops[i].params_size(), static_cast<int>(local[i]->params.size()));
  }
}

}  // namespace
}  // namespace stackproc
