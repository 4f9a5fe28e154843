// ProcessStream end to end in one process: a real server on port 0 with a window of 1 MiB, the
// real client library, and a raw stub for streams the client library would never send.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/io/tiff_io.h"
#include "core/tiff/tiff_reader.h"
#include "proto/wire.h"
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
  v1::WireCompression wire = v1::WIRE_COMPRESSION_NONE;  // both ways
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
  client::Client::StreamSource source = SourceOf(input);
  source.wire_compression = GetParam().wire;
  ASSERT_OK_AND_ASSIGN(v1::Job job,
                       client_->ProcessStream(source, Specs(ops), sink,
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
    ::testing::Values(
        Case{core::PixelType::kUint8, {"gaussian:ksize=5"}},
        Case{core::PixelType::kUint16, {"gaussian:ksize=5"}},
        Case{core::PixelType::kUint8, {"gaussian:ksize=3", "resize:scale=0.5"}},
        Case{core::PixelType::kUint16, {"clahe", "resize:scale=0.5"}},
        Case{core::PixelType::kUint8, {"gaussian:ksize=5"}, v1::WIRE_COMPRESSION_LZ4},
        Case{core::PixelType::kUint16, {"gaussian:ksize=5"}, v1::WIRE_COMPRESSION_LZ4},
        Case{core::PixelType::kUint16, {"clahe", "resize:scale=0.5"}, v1::WIRE_COMPRESSION_ZSTD}),
    [](const ::testing::TestParamInfo<Case>& param_info) {
      // e.g. uint16_clahe_resize_zstd: the type, the operations' names, the wire compression.
      std::string name(core::PixelTypeName(param_info.param.type));
      for (const std::string& op : param_info.param.ops) {
        absl::StrAppend(&name, "_", op.substr(0, op.find(':')));
      }
      if (param_info.param.wire != v1::WIRE_COMPRESSION_NONE) {
        absl::StrAppend(&name, "_", wire::WireCompressionName(param_info.param.wire));
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

// The channels' colours and windows (an ImageJ hyperstack's LUTs and Ranges) go up with the
// stream and come back with the result: the written file is the path job's, byte for byte.
TEST_F(ServiceTest, ChannelColoursAndWindowsGoThroughAStreamedJob) {
  core::Stack input = ::stackproc::testing::MakeStack({6, 32, 40}, core::PixelType::kUint16, 4);
  input.metadata().description =
      "ImageJ=1.11a\nimages=6\nchannels=2\nslices=3\nhyperstack=true\nmode=composite\n";
  core::Dimensions& dims = input.metadata().dims;
  dims = ::stackproc::testing::TwoColouredChannels();
  dims.order = "CZT";
  ASSERT_OK(core::WriteTiff(root_.File("lut.tif"), input));
  const std::vector<std::string> ops = {"invert"};
  ASSERT_OK_AND_ASSIGN(v1::Job path_job, client_->Submit(Request("lut.tif", ops, "path.tif")));
  ASSERT_OK(client_->Watch(path_job.id(), nullptr));

  ::stackproc::testing::TempDir local;
  client::Client::ProcessOptions options;
  options.input_path = root_.File("lut.tif");
  options.output_path = local.File("streamed.tif");
  options.ops = Specs(ops);
  ASSERT_OK(client_->Process(options));
  ASSERT_OK_AND_ASSIGN(core::Stack streamed, core::ReadTiff(local.File("streamed.tif")));
  EXPECT_EQ(streamed.metadata().dims.channel_info, dims.channel_info);
  EXPECT_EQ(::stackproc::testing::SameOutput(local.File("streamed.tif"), root_.File("path.tif")),
            0);
}

// A raw ProcessStream call, for streams the client library never sends.
class RawStream {
 public:
  // `resume`: the call resumes a job (its metadata); `token`: the caller's (authorization).
  explicit RawStream(int port, const v1::StreamResume* resume = nullptr,
                     const std::string& token = "")
      : stub_(v1::StackProcessor::NewStub(grpc::CreateChannel(
            absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()))) {
    if (resume != nullptr) {
      context_.AddMetadata(wire::kResumeMetadataKey, resume->SerializeAsString());
    }
    if (!token.empty()) context_.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    stream_ = stub_->ProcessStream(&context_);
  }

  bool Header(const core::StackShape& shape, const std::vector<std::string>& ops,
              v1::PixelType type = v1::PIXEL_TYPE_UINT8,
              v1::WireCompression wire = v1::WIRE_COMPRESSION_UNSPECIFIED,
              const std::string& resume_token = "") {
    v1::ProcessStreamRequest request;
    v1::StreamHeader* header = request.mutable_header();
    header->set_wire_compression(wire);
    header->set_resume_token(resume_token);
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
  // A chunk said to hold `raw_size` bytes compressed.
  bool Packed(int64_t slice, int64_t offset, int64_t raw_size, std::string data) {
    v1::ProcessStreamRequest request;
    request.mutable_chunk()->set_slice(slice);
    request.mutable_chunk()->set_offset(offset);
    request.mutable_chunk()->set_raw_size(raw_size);
    request.mutable_chunk()->set_data(std::move(data));
    return stream_->Write(request);
  }
  bool WritesDone() { return stream_->WritesDone(); }
  grpc::Status Finish() { return stream_->Finish(); }
  bool Read(v1::ProcessStreamResponse& response) { return stream_->Read(&response); }
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
      {"unknown wire compression",
       [&](RawStream& s) {
         s.Header(shape, {"invert"}, v1::PIXEL_TYPE_UINT8, static_cast<v1::WireCompression>(9));
       },
       "wire compression 9 is not one this server takes"},
      {"compressed chunk in a stream without compression",
       [&](RawStream& s) {
         s.Header(shape, {"invert"});
         s.Packed(0, 0, 512, std::string(40, 'x'));
       },
       "asked for no wire compression"},
      {"compressed chunk larger than its pixels",
       [&](RawStream& s) {
         s.Header(shape, {"invert"}, v1::PIXEL_TYPE_UINT8, v1::WIRE_COMPRESSION_LZ4);
         s.Packed(0, 0, 100, std::string(200, 'x'));
       },
       "200 bytes compressed, more than its 100 bytes can"},
      {"compressed chunk that is not blosc",
       [&](RawStream& s) {
         s.Header(shape, {"invert"}, v1::PIXEL_TYPE_UINT8, v1::WIRE_COMPRESSION_ZSTD);
         s.Packed(0, 0, 512, std::string(100, 'x'));
       },
       "chunk at slice 0 offset 0: a compressed chunk: not a valid blosc stream"},
      {"compressed chunk past its slice",
       [&](RawStream& s) {
         s.Header(shape, {"invert"}, v1::PIXEL_TYPE_UINT8, v1::WIRE_COMPRESSION_LZ4);
         s.Packed(0, 0, 513, std::string(100, 'x'));
       },
       "overruns the slice's 512 bytes"},
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
  EXPECT_EQ(jobs.size(), 9u);  // the streams whose header was valid
  for (const v1::Job& job : jobs) {
    EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
    EXPECT_EQ(job.error().code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  }
}

// Wire compression both ways, as another client would send it: every uploaded chunk compressed
// (a smooth 16-bit ramp, which compresses), the result equal to the core's, and the results'
// chunks compressed too (raw_size set, smaller than their pixels), each one blosc frame.
TEST_F(ServiceTest, CompressedChunksBothWays) {
  const core::StackShape shape{4, 256, 300};
  ASSERT_OK_AND_ASSIGN(core::Stack input, core::Stack::Allocate(shape, core::PixelType::kUint16));
  for (int64_t z = 0; z < shape.depth; ++z) {
    auto* p = reinterpret_cast<uint16_t*>(input.slice_data(z));
    for (int64_t i = 0; i < shape.height * shape.width; ++i) {
      p[i] = static_cast<uint16_t>(1000 + 3 * z + i / shape.width + (i % shape.width) / 4);
    }
  }
  const std::vector<std::string> ops = {"gaussian:ksize=5"};
  RawStream stream(server_->port());
  ASSERT_TRUE(stream.Header(shape, ops, v1::PIXEL_TYPE_UINT16, v1::WIRE_COMPRESSION_LZ4));
  const size_t slice_bytes = input.slice_bytes();
  for (int64_t z = 0; z < shape.depth; ++z) {
    std::vector<uint8_t> packed;
    ASSERT_TRUE(
        wire::Compress(v1::WIRE_COMPRESSION_LZ4, input.slice_data(z), slice_bytes, 2, packed));
    ASSERT_TRUE(stream.Packed(z, 0, static_cast<int64_t>(slice_bytes),
                              std::string(packed.begin(), packed.end())));
  }
  ASSERT_TRUE(stream.WritesDone());
  ASSERT_OK_AND_ASSIGN(core::Stack result, core::Stack::Allocate(shape, core::PixelType::kUint16));
  v1::ProcessStreamResponse response;
  int compressed = 0;
  while (stream.Read(response)) {
    if (!response.has_chunk()) continue;
    const v1::SliceChunk& c = response.chunk();
    ASSERT_GT(c.raw_size(), 0);
    ASSERT_LT(c.data().size(), static_cast<size_t>(c.raw_size()));
    ASSERT_LE(static_cast<size_t>(c.offset() + c.raw_size()), slice_bytes);
    ASSERT_OK(wire::Decompress(reinterpret_cast<const uint8_t*>(c.data().data()), c.data().size(),
                               result.slice_data(c.slice()) + c.offset(),
                               static_cast<size_t>(c.raw_size())));
    ++compressed;
  }
  EXPECT_EQ(compressed, shape.depth);  // one chunk per 150 KiB slice
  EXPECT_TRUE(stream.Finish().ok());
  EXPECT_TRUE(StacksEqual(result, CoreResult(input, ops)));
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

// Reads a resumed or first call's responses into `result` until `until` result slices are
// whole (or the call ends); returns the last StreamAttached and the job's id.
struct Received {
  v1::StreamAttached attached;
  std::string job_id;
  int64_t slices = 0;
};
void ReadResults(RawStream& stream, core::Stack& result, int64_t until, Received& got) {
  v1::ProcessStreamResponse response;
  while (got.slices < until && stream.Read(response)) {
    if (response.has_attached()) got.attached = response.attached();
    if (response.has_job()) got.job_id = response.job().id();
    if (!response.has_chunk()) continue;
    const v1::SliceChunk& c = response.chunk();
    ASSERT_EQ(c.slice(), got.slices);
    std::memcpy(result.slice_data(c.slice()) + c.offset(), c.data().data(), c.data().size());
    if (c.offset() + static_cast<int64_t>(c.data().size()) ==
        static_cast<int64_t>(result.slice_bytes())) {
      ++got.slices;
    }
  }
}

std::string SliceOf(const core::Stack& stack, int64_t z) {
  return std::string(reinterpret_cast<const char*>(stack.slice_data(z)), stack.slice_bytes());
}

// A call that breaks (here cancelled, as a dead link's would be) leaves its job waiting; a call
// with the job's resume token takes it up: it goes on uploading from where the server says and
// gets the results from where it says, and the result is the whole run's.
TEST_F(ServiceTest, ABrokenCallIsResumedWhereItStopped) {
  server_.reset();
  configure_ = [](server::ServerOptions& o) { o.jobs.stream_grace = absl::Seconds(30); };
  StartServer(uint64_t{1} << 30);
  const core::StackShape shape{6, 64, 100};
  const core::Stack input = ::stackproc::testing::MakeStack(shape, core::PixelType::kUint8, 3);
  const std::vector<std::string> ops = {"gaussian:ksize=5"};
  const std::string token = "0123456789abcdef0123";
  ASSERT_OK_AND_ASSIGN(core::Stack result, core::Stack::Allocate(shape, core::PixelType::kUint8));
  Received got;
  {
    RawStream first(server_->port());
    ASSERT_TRUE(
        first.Header(shape, ops, v1::PIXEL_TYPE_UINT8, v1::WIRE_COMPRESSION_UNSPECIFIED, token));
    for (int64_t z = 0; z < 3; ++z) ASSERT_TRUE(first.Packed(z, 0, 0, SliceOf(input, z)));
    ReadResults(first, result, 2, got);
    ASSERT_EQ(got.slices, 2);
    EXPECT_EQ(got.attached.resume_token(), token);
    EXPECT_EQ(got.attached.grace_seconds(), 30);

    // A token is one job's: a second header with it is refused; a short one too.
    RawStream twin(server_->port());
    twin.Header(shape, ops, v1::PIXEL_TYPE_UINT8, v1::WIRE_COMPRESSION_UNSPECIFIED, token);
    EXPECT_EQ(twin.End().error_code(), grpc::StatusCode::ALREADY_EXISTS);
    RawStream short_token(server_->port());
    short_token.Header(shape, ops, v1::PIXEL_TYPE_UINT8, v1::WIRE_COMPRESSION_UNSPECIFIED, "abc");
    grpc::Status refused = short_token.End();
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(refused.error_message(), HasSubstr("16 to 128"));

    first.context().TryCancel();  // the link breaks
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_OK_AND_ASSIGN(v1::Job waiting, client_->Get(got.job_id));
  EXPECT_EQ(waiting.state(), v1::JOB_STATE_RUNNING);  // waiting for its client

  v1::StreamResume resume;
  resume.set_resume_token("ffffffffffffffffffff");
  RawStream unknown(server_->port(), &resume);
  EXPECT_EQ(unknown.Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  resume.set_resume_token(token);
  resume.set_result_slice(5);
  RawStream ahead(server_->port(), &resume);
  grpc::Status past = ahead.Finish();
  EXPECT_EQ(past.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(past.error_message(), HasSubstr("past what was sent"));

  resume.set_result_slice(got.slices);
  RawStream second(server_->port(), &resume);
  Received more;
  more.slices = got.slices;
  ReadResults(second, result, got.slices, more);  // up to its StreamAttached: no new results
  v1::ProcessStreamResponse response;
  while (more.attached.resume_token().empty() && second.Read(response)) {
    if (response.has_attached()) more.attached = response.attached();
    if (response.has_job()) more.job_id = response.job().id();
  }
  EXPECT_EQ(more.job_id, got.job_id);
  ASSERT_EQ(more.attached.upload_offset(), 0);
  ASSERT_LE(more.attached.upload_slice(), 3);
  for (int64_t z = more.attached.upload_slice(); z < shape.depth; ++z) {
    ASSERT_TRUE(second.Packed(z, 0, 0, SliceOf(input, z)));
  }
  // No half-close (an older client's way): the server takes the upload as whole a moment after
  // the last result, and, not told the client has them all, keeps the job for the grace.
  ReadResults(second, result, shape.depth, more);
  EXPECT_EQ(more.slices, shape.depth);
  while (second.Read(response)) {
  }
  EXPECT_TRUE(second.Finish().ok());
  EXPECT_TRUE(StacksEqual(result, CoreResult(input, ops)));
  ASSERT_OK_AND_ASSIGN(v1::Job done, client_->Get(got.job_id));
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);

  // Done, it is kept for the grace all the same (the last results may have been lost with
  // the link): a client that has them all gets the job's end again, and no result.
  resume.set_result_slice(shape.depth);
  RawStream again(server_->port(), &resume);
  ASSERT_TRUE(again.WritesDone());
  int chunks = 0;
  v1::Job last;
  while (again.Read(response)) {
    chunks += response.has_chunk();
    if (response.has_job()) last = response.job();
  }
  EXPECT_TRUE(again.Finish().ok());
  EXPECT_EQ(chunks, 0);
  EXPECT_EQ(last.state(), v1::JOB_STATE_SUCCEEDED);
}

// No call comes back: after the grace the job is cancelled, saying why, and its memory freed.
// Meanwhile another caller cannot take it up, token or not.
TEST_F(ServiceTest, AJobNoCallResumesIsCancelledAfterTheGrace) {
  server_.reset();
  const std::string alice = "alice-token-0123456789", bob = "bob-token-0123456789ab";
  auth_token_file_ = root_.File("tokens");
  std::ofstream(auth_token_file_) << "alice " << alice << "\nbob " << bob << "\n";
  configure_ = [](server::ServerOptions& o) { o.jobs.stream_grace = absl::Seconds(1); };
  StartServer(uint64_t{1} << 30);
  const core::StackShape shape{4, 64, 100};
  const core::Stack input = ::stackproc::testing::MakeStack(shape, core::PixelType::kUint8, 3);
  const std::string token = "abcdefabcdefabcdef01";
  Received got;
  {
    RawStream first(server_->port(), nullptr, alice);
    ASSERT_TRUE(first.Header(shape, {"invert"}, v1::PIXEL_TYPE_UINT8,
                             v1::WIRE_COMPRESSION_UNSPECIFIED, token));
    ASSERT_TRUE(first.Packed(0, 0, 0, SliceOf(input, 0)));
    ASSERT_OK_AND_ASSIGN(core::Stack result, core::Stack::Allocate(shape, core::PixelType::kUint8));
    ReadResults(first, result, 1, got);
    first.context().TryCancel();
  }
  v1::StreamResume resume;
  resume.set_resume_token(token);
  RawStream other(server_->port(), &resume, bob);
  EXPECT_EQ(other.Finish().error_code(), grpc::StatusCode::NOT_FOUND);

  auto job = server_->jobs().Get(got.job_id);
  ASSERT_OK(job);
  ASSERT_TRUE(Eventually([&] { return (*job)->Snapshot().state == server::JobState::kCancelled; }));
  EXPECT_THAT((*job)->Snapshot().error.message(), HasSubstr("--stream-grace"));
  EXPECT_TRUE(Eventually([&] { return server_->jobs().memory_in_use() == 0; }));
  RawStream late(server_->port(), &resume, alice);
  EXPECT_EQ(late.Finish().error_code(), grpc::StatusCode::NOT_FOUND);

  // A job that succeeded is kept for the grace too (its last results may be lost with the
  // link), then forgotten.
  const std::string done_token = "0000000000000000done";
  {
    RawStream whole(server_->port(), nullptr, alice);
    ASSERT_TRUE(whole.Header(shape, {"invert"}, v1::PIXEL_TYPE_UINT8,
                             v1::WIRE_COMPRESSION_UNSPECIFIED, done_token));
    for (int64_t z = 0; z < shape.depth; ++z) ASSERT_TRUE(whole.Packed(z, 0, 0, SliceOf(input, z)));
    EXPECT_TRUE(whole.End().ok());
  }
  resume.set_resume_token(done_token);
  resume.set_result_slice(shape.depth);
  RawStream soon(server_->port(), &resume, alice);
  soon.WritesDone();
  v1::ProcessStreamResponse response;
  while (soon.Read(response)) {
  }
  EXPECT_TRUE(soon.Finish().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  RawStream after(server_->port(), &resume, alice);
  EXPECT_EQ(after.Finish().error_code(), grpc::StatusCode::NOT_FOUND);
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
