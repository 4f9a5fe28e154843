// --metrics-listen: a real server on port 0 with its metrics on another port 0, scraped over
// HTTP after jobs that succeed, fail validation, do not fit, and calls that fail.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "tests/server/service_fixture.h"

namespace stackproc {
namespace {

using ::stackproc::testing::StatusIs;
using ::testing::HasSubstr;

// GET http://127.0.0.1:port/metrics, the body.
std::string Scrape(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string request = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
    if (::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buffer[4096];
      for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;) response.append(buffer, n);
    }
  }
  ::close(fd);
  const size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

// The value of the sample `name` (with its labels, as written), or -1 when absent.
double Sample(const std::string& metrics, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    if (line.size() > name.size() && line.substr(0, name.size()) == name &&
        line[name.size()] == ' ') {
      double value = 0;
      if (absl::SimpleAtod(line.substr(name.size() + 1), &value)) return value;
    }
  }
  return -1;
}

// A taken port is refused, naming it, on each of the server's three listeners (gRPC's and
// httplib's SO_REUSEPORT let a second server start and share the port's callers); addresses
// without a port or with one out of range are refused before anything starts.
TEST_F(ServiceTest, EveryListenerRefusesATakenPortAndABadAddress) {
  server_.reset();
  configure_ = [](server::ServerOptions& options) {
    options.metrics_listen = "127.0.0.1:0";
    options.http_listen = "127.0.0.1:0";
  };
  StartServer(uint64_t{1} << 30);
  const auto on = [](int port) { return absl::StrCat("127.0.0.1:", port); };
  server::ServerOptions second;
  second.jobs.data_root = root_.path().string();
  second.listen = on(server_->port());
  EXPECT_THAT(
      server::Server::Start(second),
      StatusIs(absl::StatusCode::kUnavailable,
               HasSubstr(absl::StrCat("(--listen): port ", server_->port(), " is in use"))));
  second.listen = "127.0.0.1:0";
  second.http_listen = on(server_->http_port());
  EXPECT_THAT(server::Server::Start(second),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("(--http-listen): port")));
  second.http_listen.clear();
  second.metrics_listen = on(server_->metrics_port());
  EXPECT_THAT(server::Server::Start(second),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("(--metrics-listen): port")));
  second.metrics_listen.clear();
  for (const char* bad :
       {"localhost", "127.0.0.1:99999", "127.0.0.1:-1", "127.0.0.1:", ":50051x"}) {
    second.listen = bad;
    EXPECT_THAT(server::Server::Start(second),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("HOST:PORT")))
        << bad;
  }
  second.listen = "127.0.0.1:0";
  second.http_listen = "[::1";
  EXPECT_THAT(server::Server::Start(second),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--http-listen")));
  // The first server still serves.
  EXPECT_GE(Sample(Scrape(server_->metrics_port()), "stackproc_queue_length"), 0);
}

TEST_F(ServiceTest, MetricsCountJobsRejectionsAndCalls) {
  server_.reset();
  configure_ = [](server::ServerOptions& options) { options.metrics_listen = "127.0.0.1:0"; };
  StartServer(uint64_t{8} << 20);  // 8 MiB: the big stack cannot be held
  ASSERT_GT(server_->metrics_port(), 0);
  Input("in.tif", {4, 64, 64}, core::PixelType::kUint16);
  Input("big.tif", {40, 512, 512}, core::PixelType::kUint8);  // 10 MiB
  std::ofstream(root_.File("corrupt.tif")) << "II*\0 not a TIFF after all";

  ASSERT_OK_AND_ASSIGN(v1::Job job, client_->Submit(Request("in.tif", {"invert"}, "")));
  ASSERT_OK(client_->Watch(job.id(), nullptr));
  EXPECT_THAT(client_->Submit(Request("big.tif", {"invert"}, "")),
              StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
  EXPECT_THAT(client_->Submit(Request("corrupt.tif", {"invert"}, "o.tif")),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(client_->Get("nope"), StatusIs(absl::StatusCode::kNotFound, ::testing::_));

  const std::string metrics = Scrape(server_->metrics_port());
  ASSERT_FALSE(metrics.empty());
  EXPECT_EQ(Sample(metrics, "stackproc_jobs{state=\"succeeded\"}"), 1) << metrics;
  EXPECT_EQ(Sample(metrics, "stackproc_jobs{state=\"queued\"}"), 0);
  EXPECT_EQ(Sample(metrics, "stackproc_queue_length"), 0);
  EXPECT_EQ(Sample(metrics, "stackproc_jobs_submitted_total"), 1);
  EXPECT_EQ(Sample(metrics, "stackproc_job_rejections_total{code=\"RESOURCE_EXHAUSTED\"}"), 1);
  EXPECT_EQ(Sample(metrics, "stackproc_job_rejections_total{code=\"INVALID_ARGUMENT\"}"), 1);
  EXPECT_EQ(Sample(metrics, "stackproc_tiff_validation_failures_total"), 1);
  EXPECT_EQ(Sample(metrics, "stackproc_slices_processed_total"), 4);
  EXPECT_EQ(Sample(metrics, "stackproc_bytes_processed_total"), 4 * 64 * 64 * 2);
  EXPECT_EQ(Sample(metrics, "stackproc_job_duration_seconds_count{state=\"succeeded\"}"), 1);
  EXPECT_EQ(Sample(metrics,
                   "stackproc_grpc_calls_total{code=\"NOT_FOUND\",method=\"/"
                   "stackproc.v1.StackProcessor/GetJob\"}"),
            1);
  EXPECT_EQ(Sample(metrics,
                   "stackproc_grpc_calls_total{code=\"OK\",method=\"/"
                   "stackproc.v1.StackProcessor/SubmitJob\"}"),
            1);
}

TEST_F(ServiceTest, AJobTableThatCannotBeWrittenIsCountedAndTheJobsGoOn) {
  ::stackproc::testing::TempDir state;
  server_.reset();
  configure_ = [&](server::ServerOptions& options) {
    options.metrics_listen = "127.0.0.1:0";
    options.jobs.state_dir = state.path().string();
  };
  StartServer(uint64_t{1} << 30);
  Input("in.tif", {4, 64, 64}, core::PixelType::kUint16);
  const std::string before = Scrape(server_->metrics_port());
  EXPECT_EQ(Sample(before, "stackproc_job_store_failures_total"), 0) << before;
  v1::Job job;
  {
    // The state directory's disk is full: no file of this process may grow.
    ::stackproc::testing::FileSizeLimit full(1);
    ASSERT_OK_AND_ASSIGN(job, client_->Submit(Request("in.tif", {"invert"}, "")));
    ASSERT_OK_AND_ASSIGN(job, client_->Watch(job.id(), nullptr));
    server_->jobs().FlushStore();  // the job's records are written while the disk is full
  }
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED) << job.error().message();
  ASSERT_OK(client_->Download(job.id()));
  const std::string after = Scrape(server_->metrics_port());
  EXPECT_GE(Sample(after, "stackproc_job_store_failures_total"), 1) << after;

  // With room again the store takes records again: the next job outlives a restart.
  ASSERT_OK_AND_ASSIGN(v1::Job next, client_->Submit(Request("in.tif", {"invert"}, "")));
  ASSERT_OK(client_->Watch(next.id(), nullptr));
  server_.reset();
  StartServer(uint64_t{1} << 30);
  ASSERT_OK_AND_ASSIGN(v1::Job listed, client_->Get(next.id()));
  EXPECT_EQ(listed.state(), v1::JOB_STATE_SUCCEEDED);
}

}  // namespace
}  // namespace stackproc
