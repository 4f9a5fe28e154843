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
  grpc::Status ReadResult(grpc::ServerContext*, const v1::ReadResultRequest*,
                          grpc::ServerWriter<v1::ReadResultResponse>* writer) override {
    v1::ReadResultResponse message;
    Announce(message.mutable_header());
    writer->Write(message);
    message.mutable_chunk()->set_data(std::string(4, '\x7f'));
    writer->Write(message);
    return grpc::Status::OK;
  }

  grpc::Status ProcessStream(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<v1::ProcessStreamResponse, v1::ProcessStreamRequest>* stream)
      override {
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

}  // namespace
}  // namespace stackproc::client
