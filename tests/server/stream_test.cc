// ProcessStream end to end in one process: a real server on port 0 with a window of 1 MiB, the
// real client library, and a raw stub for streams the client library would never send.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <thread>

#include "core/io/tiff_io.h"
#include "core/tiff/tiff_reader.h"
#include "tests/server/service_fixture.h"

namespace stackproc {
namespace {

using ::stackproc::testing::StacksEqual;
using ::stackproc::testing::StatusIs;
using ::testing::HasSubstr;

// Collects a streamed result in memory.
class StackSink final : public client::Client::StreamSink {
 public:
  absl::Status Begin(const core::StackShape& shape, core::PixelType type,
                     const core::StackMetadata& metadata) override {
    absl::StatusOr<core::Stack> stack = core::Stack::Allocate(shape, type);
    if (!stack.ok()) return stack.status();
    stack_ = *std::move(stack);
    stack_.metadata() = metadata;
    return absl::OkStatus();
  }
  absl::Status Slice(int64_t z, const uint8_t* data) override {
    std::memcpy(stack_.slice_data(z), data, stack_.slice_bytes());
    ++slices_;
    return absl::OkStatus();
  }
  core::Stack& stack() { return stack_; }
  int64_t slices() const { return slices_; }

 private:
  core::Stack stack_;
  int64_t slices_ = 0;
};

client::Client::StreamSource SourceOf(const core::Stack& stack) {
  client::Client::StreamSource source;
  source.shape = stack.shape();
  source.type = stack.pixel_type();
  source.metadata = stack.metadata();
  source.read_slice = [&stack](int64_t z, uint8_t* dst) {
    std::memcpy(dst, stack.slice_data(z), stack.slice_bytes());
    return absl::OkStatus();
  };
  return source;
}

std::vector<v1::OpSpec> Specs(const std::vector<std::string>& ops) {
  std::vector<v1::OpSpec> specs;
  for (const std::string& op : ops) specs.push_back(*client::ParseOpText(op));
  return specs;
}

struct Case {
  core::PixelType type;
  std::vector<std::string> ops;
};

class StreamEqualsPathJob : public ServiceTest, public ::testing::WithParamInterface<Case> {};

// The streamed result, the path job's result and the core's are the same bytes; the window
// (1 MiB: a few of these slices) is recycled many times over.
TEST_P(StreamEqualsPathJob, BitForBit) {
  Input("in.tif", {30, 300, 260}, GetParam().type);
  ASSERT_OK_AND_ASSIGN(const core::Stack input, core::ReadTiff(root_.File("in.tif")));
  const std::vector<std::string>& ops = GetParam().ops;
  ASSERT_OK_AND_ASSIGN(v1::Job path_job, client_->Submit(Request("in.tif", ops, "")));
  ASSERT_OK(client_->Watch(path_job.id(), nullptr));
  ASSERT_OK_AND_ASSIGN(core::Stack path_result, client_->Download(path_job.id()));

  StackSink sink;
  std::vector<v1::Job> updates;
  ASSERT_OK_AND_ASSIGN(v1::Job job,
                       client_->ProcessStream(SourceOf(input), Specs(ops), sink,
                                              [&](const v1::Job& j) { updates.push_back(j); }));
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_TRUE(job.spec().streamed());
  EXPECT_EQ(job.progress().slices_done(), 30);
  EXPECT_LT(job.memory_bytes(), static_cast<int64_t>(input.size_bytes()));  // a window only
  ASSERT_FALSE(updates.empty());
  EXPECT_EQ(updates.front().id(), job.id());
  EXPECT_EQ(sink.slices(), 30);
  EXPECT_TRUE(StacksEqual(sink.stack(), path_result));
  EXPECT_TRUE(StacksEqual(sink.stack(), CoreResult(input, ops)));
  EXPECT_EQ(sink.stack().metadata().description, path_result.metadata().description);

  // Both kinds of job are listed together.
  ASSERT_OK_AND_ASSIGN(std::vector<v1::Job> jobs, client_->List());
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_FALSE(jobs[0].spec().streamed());
  EXPECT_TRUE(jobs[1].spec().streamed());
  EXPECT_EQ(server_->jobs().memory_in_use(), path_result.size_bytes());  // the held result
}

INSTANTIATE_TEST_SUITE_P(
    Pipelines, StreamEqualsPathJob,
    ::testing::Values(Case{core::PixelType::kUint8, {"gaussian:ksize=5"}},
                      Case{core::PixelType::kUint16, {"gaussian:ksize=5"}},
                      Case{core::PixelType::kUint8, {"gaussian:ksize=3", "resize:scale=0.5"}},
                      Case{core::PixelType::kUint16, {"clahe", "resize:scale=0.5"}}),
    [](const ::testing::TestParamInfo<Case>& param_info) {
      // e.g. uint16_clahe_resize: the type and the operations' names.
      std::string name(core::PixelTypeName(param_info.param.type));
      for (const std::string& op : param_info.param.ops) {
        absl::StrAppend(&name, "_", op.substr(0, op.find(':')));
      }
      return name;
    });

// --stream-window bounds what its help says: the slices in flight (here 1 MiB holds one slice of
// 600x600 uint8 with the blur's output beside it: 2 buffers); the feed's ring holds one input
// slice more, on top. (The blur is the only step: no thread needs an intermediate slice.)
TEST_F(ServiceTest, StreamWindowBoundsTheSlicesInFlight) {
  const core::Stack input =
      ::stackproc::testing::MakeStack({12, 600, 600}, core::PixelType::kUint8, 5);
  StackSink sink;
  ASSERT_OK_AND_ASSIGN(v1::Job job,
                       client_->ProcessStream(SourceOf(input), Specs({"gaussian:ksize=5"}), sink,
                                              [](const v1::Job&) {}));
  ASSERT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  const int64_t slice = 600 * 600;
  EXPECT_EQ(job.memory_bytes(), 2 * slice + slice);
  EXPECT_TRUE(StacksEqual(sink.stack(), CoreResult(input, {"gaussian:ksize=5"})));
}

// File to file, as `stackproc process` does: the written file equals the path job's file,
// metadata included (the resize halves the pixel size in the ImageJ description).
TEST_F(ServiceTest, ProcessFileToFileMatchesThePathJob) {
  core::Stack input = ::stackproc::testing::MakeStack({9, 64, 80}, core::PixelType::kUint16, 3);
  input.metadata().description = "ImageJ=1.11a\nimages=9\nslices=9\nspacing=2\nunit=micron\n";
  input.metadata().x_resolution = 2.0;
  input.metadata().y_resolution = 2.0;
  input.metadata().resolution_unit = core::ResolutionUnit::kCentimeter;
  ASSERT_OK(core::WriteTiff(root_.File("in.tif"), input));
  const std::vector<std::string> ops = {"resize:scale=0.5"};
  ASSERT_OK_AND_ASSIGN(v1::Job path_job, client_->Submit(Request("in.tif", ops, "path.tif")));
  ASSERT_OK(client_->Watch(path_job.id(), nullptr));

  ::stackproc::testing::TempDir local;
  client::Client::ProcessOptions options;
  options.input_path = root_.File("in.tif");
  options.output_path = local.File("streamed.tif");
  options.ops = Specs(ops);
  options.write.compression = core::Compression::kZstd;
  options.write.overwrite = false;
  ASSERT_OK(client_->Process(options));
  ASSERT_OK_AND_ASSIGN(core::Stack streamed, core::ReadTiff(local.File("streamed.tif")));
  ASSERT_OK_AND_ASSIGN(core::Stack path, core::ReadTiff(root_.File("path.tif")));
  EXPECT_TRUE(StacksEqual(streamed, path));
  EXPECT_EQ(streamed.metadata().description, path.metadata().description);
  EXPECT_THAT(streamed.metadata().description, HasSubstr("images=9"));
  EXPECT_EQ(streamed.metadata().x_resolution, 1.0);
  EXPECT_EQ(streamed.metadata().resolution_unit, core::ResolutionUnit::kCentimeter);

  // An existing output is kept unless overwrite is asked for.
  EXPECT_THAT(client_->Process(options),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("streamed.tif")));
}

// A raw ProcessStream call, for streams the client library never sends.
class RawStream {
 public:
  explicit RawStream(int port)
      : stub_(v1::StackProcessor::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                                              grpc::InsecureChannelCredentials()))),
        stream_(stub_->ProcessStream(&context_)) {}

  bool Header(const core::StackShape& shape, const std::vector<std::string>& ops,
              v1::PixelType type = v1::PIXEL_TYPE_UINT8) {
    v1::ProcessStreamRequest request;
    v1::StreamHeader* header = request.mutable_header();
    header->mutable_shape()->set_depth(shape.depth);
    header->mutable_shape()->set_height(shape.height);
    header->mutable_shape()->set_width(shape.width);
    header->set_pixel_type(type);
    for (const std::string& op : ops) *header->add_ops() = *client::ParseOpText(op);
    return stream_->Write(request);
  }
  bool Chunk(int64_t slice, int64_t offset, size_t bytes) {
    v1::ProcessStreamRequest request;
    request.mutable_chunk()->set_slice(slice);
    request.mutable_chunk()->set_offset(offset);
    request.mutable_chunk()->set_data(std::string(bytes, '\x07'));
    return stream_->Write(request);
  }
  // Reads until the job id is known.
  std::string JobId() {
    v1::ProcessStreamResponse response;
    while (stream_->Read(&response)) {
      if (response.has_job()) return response.job().id();
    }
    return "";
  }
  // Half-closes, drains and returns the call's status.
  grpc::Status End() {
    stream_->WritesDone();
    v1::ProcessStreamResponse response;
    while (stream_->Read(&response)) {
    }
    return stream_->Finish();
  }
  // Reads every response without half-closing: the results' bytes, and the last job message.
  grpc::Status DrainWithoutHalfClose(size_t& result_bytes, v1::Job& last_job) {
    v1::ProcessStreamResponse response;
    while (stream_->Read(&response)) {
      if (response.has_chunk()) result_bytes += response.chunk().data().size();
      if (response.has_job()) last_job = response.job();
    }
    return stream_->Finish();
  }
  grpc::ClientContext& context() { return context_; }

 private:
  std::unique_ptr<v1::StackProcessor::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::ProcessStreamRequest, v1::ProcessStreamResponse>>
      stream_;
};

TEST_F(ServiceTest, MalformedStreamsEndWithInvalidArgument) {
  struct Bad {
    std::string name;
    std::function<void(RawStream&)> send;
    std::string message;
  };
  const core::StackShape shape{3, 16, 32};  // 512-byte uint8 slices
  const std::vector<Bad> cases = {
      {"chunk first", [](RawStream& s) { s.Chunk(0, 0, 10); }, "first message"},
      {"no header at all", [](RawStream&) {}, "before its StreamHeader"},
      {"empty shape",
       [&](RawStream& s) {
         s.Header({0, 16, 32}, {"invert"});
       },
       "positive"},
      {"unknown op", [&](RawStream& s) { s.Header(shape, {"sharpen"}); }, "sharpen"},
      {"bad parameter", [&](RawStream& s) { s.Header(shape, {"gaussian:ksize=4"}); }, "ksize"},
      {"no pixel type",
       [&](RawStream& s) { s.Header(shape, {"invert"}, v1::PIXEL_TYPE_UNSPECIFIED); },
       "pixel type"},
      {"skipped slice",
       [&](RawStream& s) {
         s.Header(shape, {"invert"});
         s.Chunk(1, 0, 512);
       },
       "slice 1 offset 0 is out of order: expected slice 0 offset 0"},
      {"duplicated chunk",
       [&](RawStream& s) {
         s.Header(shape, {"invert"});
         s.Chunk(0, 0, 256);
         s.Chunk(0, 0, 256);
       },
       "slice 0 offset 0 is out of order: expected slice 0 offset 256"},
      {"oversized chunk",
       [&](RawStream& s) {
         s.Header(shape, {"invert"});
         s.Chunk(0, 0, 513);
       },
       "overruns the slice's 512 bytes"},
      {"missing slices",
       [&](RawStream& s) {
         s.Header(shape, {"invert"});
         s.Chunk(0, 0, 512);
       },
       "upload ended at slice 1 offset 0"},
      {"extra slice",
       [&](RawStream& s) {
         s.Header(shape, {"invert"});
         for (int z = 0; z < 4; ++z) s.Chunk(z, 0, 512);
       },
       "all have arrived"},
  };
  for (const Bad& bad : cases) {
    SCOPED_TRACE(bad.name);
    RawStream stream(server_->port());
    bad.send(stream);
    grpc::Status status = stream.End();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(bad.message));
  }
  // The server keeps serving, holds no memory, and every job it took ended failed.
  ASSERT_OK_AND_ASSIGN(bool serving, client_->Healthy());
  EXPECT_TRUE(serving);
  EXPECT_EQ(server_->jobs().memory_in_use(), 0u);
  ASSERT_OK_AND_ASSIGN(std::vector<v1::Job> jobs, client_->List());
  EXPECT_EQ(jobs.size(), 5u);  // the five streams whose header was valid
  for (const v1::Job& job : jobs) {
    EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
    EXPECT_EQ(job.error().code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  }
}

// A client that sends every slice but never half-closes: once every result is out the call
// waits a moment for the half-close (a stray chunk would still fail it), then the job ends and
// the call with it.
TEST_F(ServiceTest, AStreamWithoutHalfCloseEndsAfterItsLastResult) {
  RawStream stream(server_->port());
  ASSERT_TRUE(stream.Header({4, 64, 64}, {"invert"}));
  for (int z = 0; z < 4; ++z) ASSERT_TRUE(stream.Chunk(z, 0, 64 * 64));
  size_t bytes = 0;
  v1::Job job;
  const absl::Time start = absl::Now();
  grpc::Status status = stream.DrainWithoutHalfClose(bytes, job);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(bytes, 4u * 64 * 64);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job.progress().slices_done(), 4);
}

// Polls until `done` or about 10 s have passed.
bool Eventually(const std::function<bool()>& done) {
  for (int i = 0; i < 1000 && !done(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

TEST_F(ServiceTest, ClientThatVanishesCancelsItsJobAndFreesItsMemory) {
  RawStream stream(server_->port());
  ASSERT_TRUE(stream.Header({200, 256, 256}, {"gaussian:ksize=5"}));
  const std::string id = stream.JobId();
  ASSERT_FALSE(id.empty());
  for (int z = 0; z < 5; ++z) ASSERT_TRUE(stream.Chunk(z, 0, 256 * 256));
  ASSERT_TRUE(Eventually([&] { return server_->jobs().memory_in_use() > 0; }));
  stream.context().TryCancel();  // as a killed client's connection would
  EXPECT_FALSE(stream.End().ok());
  EXPECT_TRUE(Eventually([&] {
    absl::StatusOr<v1::Job> job = client_->Get(id);
    return job.ok() && job->state() == v1::JOB_STATE_CANCELLED;
  }));
  EXPECT_EQ(server_->jobs().memory_in_use(), 0u);
}

TEST_F(ServiceTest, AMessageOverTheSizeLimitEndsTheCallAndTheServerGoesOn) {
  RawStream stream(server_->port());
  ASSERT_TRUE(stream.Header({4, 2048, 2048}, {"invert"}));
  ASSERT_FALSE(stream.JobId().empty());
  stream.Chunk(0, 0, size_t{5} << 20);  // gRPC's default limit is 4 MiB
  grpc::Status status = stream.End();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_TRUE(Eventually([&] { return server_->jobs().memory_in_use() == 0; }));
  ASSERT_OK_AND_ASSIGN(bool serving, client_->Healthy());
  EXPECT_TRUE(serving);
  // The job ended, one way or the other: gRPC cancels the call, and the server may see the
  // failed read before the cancellation (then: the upload ended early).
  ASSERT_OK_AND_ASSIGN(std::vector<v1::Job> jobs, client_->List());
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_THAT(jobs[0].state(), ::testing::AnyOf(v1::JOB_STATE_CANCELLED, v1::JOB_STATE_FAILED));
  EXPECT_THAT(jobs[0].error().message(),
              ::testing::AnyOf(HasSubstr("went away"), HasSubstr("4 MiB limit")));
}

TEST_F(ServiceTest, StreamsBeyondTheLimitAreRefused) {
  server_.reset();
  configure_ = [](server::ServerOptions& options) { options.jobs.max_streams = 1; };
  StartServer(uint64_t{1} << 30);
  RawStream first(server_->port());
  ASSERT_TRUE(first.Header({10, 64, 64}, {"invert"}));
  ASSERT_FALSE(first.JobId().empty());

  RawStream second(server_->port());
  second.Header({10, 64, 64}, {"invert"});
  grpc::Status refused = second.End();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("1 streamed jobs are open"));
  EXPECT_THAT(refused.error_message(), HasSubstr("--max-streams"));

  EXPECT_FALSE(first.End().ok());  // ends early: its job fails and frees the place
  RawStream third(server_->port());
  ASSERT_TRUE(third.Header({10, 64, 64}, {"invert"}));
  EXPECT_FALSE(third.JobId().empty());
}

TEST_F(ServiceTest, CancelJobEndsAStreamedJob) {
  RawStream stream(server_->port());
  ASSERT_TRUE(stream.Header({50, 64, 64}, {"invert"}));
  const std::string id = stream.JobId();
  ASSERT_TRUE(stream.Chunk(0, 0, 64 * 64));
  ASSERT_OK(client_->Cancel(id));
  grpc::Status status = stream.End();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();
  ASSERT_OK_AND_ASSIGN(v1::Job job, client_->Get(id));
  EXPECT_EQ(job.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(Eventually([&] { return server_->jobs().memory_in_use() == 0; }));
}

TEST_F(ServiceTest, WholeStackPipelineMustFitTheBudget) {
  server_.reset();
  StartServer(/*memory_budget=*/uint64_t{4} << 20);
  const std::vector<std::string> ops = {"normalize:scope=stack"};
  // 16 x 256 x 256 uint16 = 2 MiB: fits a 4 MiB budget, assembled whole.
  const core::Stack small =
      ::stackproc::testing::MakeStack({16, 256, 256}, core::PixelType::kUint16, 4);
  StackSink sink;
  ASSERT_OK_AND_ASSIGN(v1::Job job,
                       client_->ProcessStream(SourceOf(small), Specs(ops), sink, nullptr));
  // The stack, and the upload's buffers until the stack is whole: 2 threads x 2 slices in
  // flight (kSlicesPerThread) and one arriving, 128 KiB each.
  EXPECT_EQ(job.memory_bytes(), static_cast<int64_t>(small.size_bytes() + 5 * (256 * 256 * 2)));
  EXPECT_TRUE(StacksEqual(sink.stack(), CoreResult(small, ops)));
  // 64 slices = 8 MiB: never fits, and the message says why.
  const core::Stack big =
      ::stackproc::testing::MakeStack({64, 256, 256}, core::PixelType::kUint16, 4);
  EXPECT_THAT(client_->ProcessStream(SourceOf(big), Specs(ops), sink, nullptr),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("whole stack")));
  // A per-slice pipeline streams the same big stack through the small budget.
  ASSERT_OK(client_->ProcessStream(SourceOf(big), Specs({"gaussian:ksize=3"}), sink, nullptr));
  EXPECT_TRUE(StacksEqual(sink.stack(), CoreResult(big, {"gaussian:ksize=3"})));
}

}  // namespace
}  // namespace stackproc
