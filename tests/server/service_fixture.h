// A real server on port 0 over a temporary data root, and the real client.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "client/client.h"
#include "core/io/stack_io.h"
#include "core/io/tiff_io.h"
#include "core/tiff/tiff_writer.h"
#include "server/api/server.h"
#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc {

namespace v1 = ::stackproc::v1;

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(uint64_t{1} << 30); }

  void StartServer(uint64_t memory_budget, uint64_t stream_window = uint64_t{1} << 20) {
    server::ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.jobs.data_root = root_.path().string();
    options.jobs.threads = 2;
    options.jobs.memory_budget = memory_budget;
    options.jobs.stream_window_bytes = stream_window;
    // A streamed job whose call breaks is cancelled at once, as without resumes: the tests of
    // resumes ask for a grace (configure_).
    options.jobs.stream_grace = absl::ZeroDuration();
    options.auth_token_file = auth_token_file_;
    if (configure_) configure_(options);
    absl::StatusOr<std::unique_ptr<server::Server>> started = server::Server::Start(options);
    ASSERT_OK(started);
    server_ = std::move(started).value();
    client_ = std::make_unique<client::Client>(absl::StrCat("127.0.0.1:", server_->port()));
  }

  // Writes a stack into the data root.
  core::Stack Input(const std::string& name, const core::StackShape& shape,
                    core::PixelType type = core::PixelType::kUint16) {
    core::Stack stack = ::stackproc::testing::MakeStack(shape, type, 11);
    EXPECT_OK(core::WriteTiff(root_.File(name), stack));
    return stack;
  }

  static v1::SubmitJobRequest Request(const std::string& input, const std::vector<std::string>& ops,
                                      const std::string& output) {
    absl::StatusOr<v1::SubmitJobRequest> request = client::PathJobRequest(input, ops, output);
    EXPECT_OK(request);
    return request.value_or(v1::SubmitJobRequest());
  }

  // The core's own result for the same input and pipeline: the reference.
  static core::Stack CoreResult(const core::Stack& input, const std::vector<std::string>& ops) {
    return CoreResult(input, ::stackproc::testing::Ops(ops));
  }
  static core::Stack CoreResult(const core::Stack& input, const std::vector<core::OpSpec>& ops) {
    absl::StatusOr<core::Pipeline> pipeline = core::Pipeline::Create(ops);
    absl::StatusOr<core::Stack> out =
        core::Execute(::stackproc::testing::CopyStack(input), *pipeline);
    EXPECT_OK(out);
    return std::move(out).value();
  }

  // Waits until the job is running and has done at least one slice.
  void WaitUntilProcessing(const std::string& id) {
    for (int i = 0; i < 2000; ++i) {
      absl::StatusOr<v1::Job> job = client_->Get(id);
      ASSERT_OK(job);
      if (job->progress().slices_done() > 0) return;
      ASSERT_LT(job->state(), v1::JOB_STATE_SUCCEEDED) << "finished before it could be observed";
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    FAIL() << "job " << id << " never started processing";
  }

  std::vector<std::string> RootEntries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(root_.path()))
      names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }

  // A job slow enough to observe and cancel: a wide bilateral filter.
  const std::vector<std::string> kSlowOps = {"bilateral:d=25,sigma_color=50,sigma_space=9"};

  ::stackproc::testing::TempDir root_;
  std::string auth_token_file_;                            // StartServer's --auth-token-file
  std::function<void(server::ServerOptions&)> configure_;  // more of StartServer's options
  std::unique_ptr<server::Server> server_;
  std::unique_ptr<client::Client> client_;
};

}  // namespace stackproc
