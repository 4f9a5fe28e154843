// The client against a fake server that announces a pixel type this client does not know (a
// newer server's): both download paths refuse it with DATA_LOSS instead of reading the bytes as
// another type.
#include "client/client.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "tests/test_util/status_matchers.h"

namespace stackproc::client {
namespace {

using ::stackproc::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr auto kUnknownType = static_cast<v1::PixelType>(9);

void Announce(v1::ResultHeader* header) {
  header->mutable_shape()->set_depth(1);
  header->mutable_shape()->set_height(2);
  header->mutable_shape()->set_width(2);
  header->set_pixel_type(kUnknownType);
  header->set_total_bytes(4);
}

class FutureServer final : public v1::StackProcessor::Service {
  // An older server's: it names no wire compression.
  grpc::Status GetServerInfo(grpc::ServerContext*, const v1::GetServerInfoRequest*,
                             v1::GetServerInfoResponse* response) override {
    response->set_version("0.0.1");
    return grpc::Status::OK;
  }

  grpc::Status ReadResult(grpc::ServerContext*, const v1::ReadResultRequest*,
                          grpc::ServerWriter<v1::ReadResultResponse>* writer) override {
    v1::ReadResultResponse message;
    Announce(message.mutable_header());
    writer->Write(message);
    message.mutable_chunk()->set_data(std::string(4, '\x7f'));
    writer->Write(message);
    return grpc::Status::OK;
  }

  grpc::Status ProcessStream(grpc::ServerContext*,
                             grpc::ServerReaderWriter<v1::ProcessStreamResponse,
                                                      v1::ProcessStreamRequest>* stream) override {
    v1::ProcessStreamRequest request;
    if (!stream->Read(&request)) return grpc::Status::OK;
    v1::ProcessStreamResponse message;
    message.mutable_job()->set_id("j1");
    message.mutable_job()->set_state(v1::JOB_STATE_RUNNING);
    stream->Write(message);
    Announce(message.mutable_result_header());
    stream->Write(message);
    while (stream->Read(&request)) {
    }
    return grpc::Status::OK;
  }
};

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    client_ = std::make_unique<Client>("127.0.0.1:" + std::to_string(port));
  }
  void TearDown() override { server_->Shutdown(); }

  FutureServer service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(ClientTest, DownloadRefusesAnUnknownPixelType) {
  EXPECT_THAT(client_->Download("j1"),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr("pixel type 9"), HasSubstr("does not know"))));
}

class DiscardSink final : public Client::StreamSink {
 public:
  absl::Status Begin(const core::StackShape&, core::PixelType,
                     const core::StackMetadata&) override {
    began = true;
    return absl::OkStatus();
  }
  absl::Status Slice(int64_t, const uint8_t*) override { return absl::OkStatus(); }
  bool began = false;
};

TEST_F(ClientTest, ProcessStreamRefusesAnUnknownPixelType) {
  Client::StreamSource source;
  source.shape = {1, 2, 2};
  source.read_slice = [](int64_t, uint8_t* dst) {
    std::fill(dst, dst + 4, uint8_t{1});
    return absl::OkStatus();
  };
  DiscardSink sink;
  EXPECT_THAT(client_->ProcessStream(source, {}, sink, nullptr),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("pixel type 9")));
  EXPECT_FALSE(sink.began);
}

TEST(IsLocalTargetTest, LoopbackLocalhostAndSocketsAreThisMachine) {
  for (const char* local : {"127.0.0.1:50051", "localhost:50051", "[::1]:50051", "127.0.1.1:1",
                            "dns:///127.0.0.1:50051", "ipv4:127.0.0.1:5", "ipv6:[::1]:5",
                            "unix:/run/stackproc.sock", "unix-abstract:stackproc"}) {
    EXPECT_TRUE(IsLocalTarget(local)) << local;
  }
  for (const char* remote :
       {"10.1.2.3:50051", "server.lab.org:50051", "[fd00::2]:50051", "dns:///gpu7:50051",
        "ipv4:192.168.1.20:50051", "128.0.0.1:1", "localhost.example.org:5"}) {
    EXPECT_FALSE(IsLocalTarget(remote)) << remote;
  }
}

// A server that takes no wire compression (an older one): asked for one, the client says so
// before sending anything. (Auto on loopback is none, whatever the server takes.)
TEST_F(ClientTest, WireCompressionOnlyWhatTheServerTakes) {
  EXPECT_THAT(client_->WireCompressionFor(v1::WIRE_COMPRESSION_LZ4),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("stackprocd 0.0.1"), HasSubstr("no lz4"))));
  ASSERT_OK_AND_ASSIGN(v1::WireCompression none,
                       client_->WireCompressionFor(v1::WIRE_COMPRESSION_NONE));
  EXPECT_EQ(none, v1::WIRE_COMPRESSION_NONE);
  ASSERT_OK_AND_ASSIGN(v1::WireCompression automatic, client_->WireCompressionFor(std::nullopt));
  EXPECT_EQ(automatic, v1::WIRE_COMPRESSION_NONE);  // on loopback, whatever the server takes
}

}  // namespace
}  // namespace stackproc::client
