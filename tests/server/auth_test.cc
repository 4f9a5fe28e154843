// --auth-token-file: the token file's rules, and a real server on port 0 that wants tokens,
// with real clients as four callers (none, a wrong token, two users, an admin).
#include "server/api/auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "tests/server/service_fixture.h"

namespace stackproc {
namespace {

using ::stackproc::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kAlice[] = "alice-0123456789abcdef";
constexpr char kBob[] = "bob-0123456789abcdef";
constexpr char kAdmin[] = "admin-0123456789abcdef";

TEST(AdminsTest, AdminsThatWouldBeIgnoredAreRefused) {
  ::stackproc::testing::TempDir root;
  server::ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.jobs.data_root = root.path().string();
  options.admins = {"alice"};
  EXPECT_THAT(server::Server::Start(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs --tls-client-ca")));
  options.tls_client_ca = root.File("ca.pem");
  options.auth_token_file = root.File("tokens");
  EXPECT_THAT(server::Server::Start(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("in the token file")));
}

class TokenFileTest : public ::testing::Test {
 protected:
  absl::StatusOr<server::TokenAuth> Load(const std::string& text) {
    const std::string path = dir_.File("tokens");
    std::ofstream(path) << text;
    return server::TokenAuth::Load(path);
  }
  ::stackproc::testing::TempDir dir_;
};

TEST_F(TokenFileTest, ReadsCallersAndSkipsCommentsAndBlankLines) {
  ASSERT_OK_AND_ASSIGN(
      server::TokenAuth auth,
      Load(absl::StrCat("# lab tokens\n\nalice ", kAlice, "\n  root\t", kAdmin, "  admin \n")));
  EXPECT_EQ(auth.size(), 2u);
}

TEST_F(TokenFileTest, RefusesWhatItCannotTrust) {
  EXPECT_THAT(Load(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no callers")));
  EXPECT_THAT(Load("alice\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tokens:1: expected NAME")));
  EXPECT_THAT(Load(absl::StrCat("alice ", kAlice, " root\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected NAME TOKEN")));
  EXPECT_THAT(Load("# ok\nalice short\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tokens:2: the token of alice is shorter than 16")));
  EXPECT_THAT(Load(absl::StrCat("alice ", kAlice, "\nalice ", kBob, "\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("alice appears twice")));
  EXPECT_THAT(Load(absl::StrCat("alice ", kAlice, "\nbob ", kAlice, "\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("two callers")));
  EXPECT_THAT(server::TokenAuth::Load(dir_.File("missing")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cannot read")));
}

class AuthTest : public ServiceTest {
 protected:
  void SetUp() override {
    auth_token_file_ = root_.File("tokens");
    std::ofstream(auth_token_file_)
        << "alice " << kAlice << "\nbob " << kBob << "\nroot " << kAdmin << " admin\n";
    StartServer(uint64_t{1} << 30);
  }
  std::unique_ptr<client::Client> As(const std::string& token) const {
    return std::make_unique<client::Client>(absl::StrCat("127.0.0.1:", server_->port()), token);
  }
  static std::vector<std::string> Ids(const std::vector<v1::Job>& jobs) {
    std::vector<std::string> ids;
    for (const v1::Job& job : jobs) ids.push_back(job.id());
    return ids;
  }
};

TEST_F(AuthTest, EveryCallButHealthNeedsAKnownToken) {
  Input("in.tif", {3, 16, 16});
  for (const std::string& token : {std::string(), std::string("not-a-token-of-anyone")}) {
    std::unique_ptr<client::Client> stranger = As(token);
    const auto unauthenticated = StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_);
    EXPECT_THAT(stranger->Submit(Request("in.tif", {"invert"}, "")), unauthenticated);
    EXPECT_THAT(stranger->List(), unauthenticated);
    EXPECT_THAT(stranger->Get("anything"), unauthenticated);
    EXPECT_THAT(stranger->Cancel("anything"), unauthenticated);
    EXPECT_THAT(stranger->Delete("anything"), unauthenticated);
    EXPECT_THAT(stranger->ListOperations(), unauthenticated);
    EXPECT_THAT(stranger->Watch("anything", nullptr, 0), unauthenticated);
    EXPECT_THAT(stranger->Download("anything"), unauthenticated);
    ASSERT_OK_AND_ASSIGN(bool serving, stranger->Healthy());
    EXPECT_TRUE(serving);
  }
  EXPECT_THAT(As("")->List(),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("needs a token")));
  EXPECT_THAT(As("wrong-token-0123456789")->List(),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("unknown token")));
  EXPECT_THAT(RootEntries(), ::testing::ElementsAre("in.tif", "tokens"));  // nothing ran
}

TEST_F(AuthTest, CallersSeeOnlyTheirOwnJobsAndAdminsSeeAll) {
  const core::Stack input = Input("in.tif", {3, 16, 16});
  std::unique_ptr<client::Client> alice = As(kAlice), bob = As(kBob), admin = As(kAdmin);
  v1::SubmitJobRequest request = Request("in.tif", {"invert"}, "");
  request.set_request_id("run-1");
  ASSERT_OK_AND_ASSIGN(v1::Job job, alice->Submit(request));
  EXPECT_EQ(job.owner(), "alice");
  ASSERT_OK_AND_ASSIGN(v1::Job done, alice->Watch(job.id(), nullptr));
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);

  // Bob: as if the job did not exist.
  const auto not_found = StatusIs(absl::StatusCode::kNotFound, HasSubstr("no job"));
  ASSERT_OK_AND_ASSIGN(std::vector<v1::Job> bobs, bob->List());
  EXPECT_THAT(bobs, IsEmpty());
  EXPECT_THAT(bob->Get(job.id()), not_found);
  EXPECT_THAT(bob->Watch(job.id(), nullptr, 0), not_found);
  EXPECT_THAT(bob->Download(job.id()), not_found);
  EXPECT_THAT(bob->Cancel(job.id()), not_found);
  EXPECT_THAT(bob->Delete(job.id()), not_found);

  // The same request id is Bob's own: a job of his, not Alice's.
  request.mutable_spec()->clear_ops();
  *request.mutable_spec()->add_ops() = *client::ParseOpText("gaussian:ksize=3");
  ASSERT_OK_AND_ASSIGN(v1::Job bob_job, bob->Submit(request));
  EXPECT_NE(bob_job.id(), job.id());
  EXPECT_EQ(bob_job.owner(), "bob");
  ASSERT_OK(bob->Watch(bob_job.id(), nullptr));

  // Alice still has her result; the admin sees both jobs.
  ASSERT_OK_AND_ASSIGN(core::Stack result, alice->Download(job.id()));
  EXPECT_TRUE(::stackproc::testing::StacksEqual(result, CoreResult(input, {"invert"})));
  ASSERT_OK_AND_ASSIGN(std::vector<v1::Job> all, admin->List());
  EXPECT_THAT(Ids(all), ::testing::UnorderedElementsAre(job.id(), bob_job.id()));
  ASSERT_OK_AND_ASSIGN(std::vector<v1::Job> alices, alice->List());
  EXPECT_THAT(Ids(alices), ::testing::ElementsAre(job.id()));
  ASSERT_OK(admin->Delete(job.id()));
  EXPECT_THAT(alice->Get(job.id()), not_found);
}

TEST_F(AuthTest, StreamedJobsNeedATokenAndBelongToTheirCaller) {
  const core::Stack input = ::stackproc::testing::MakeStack({4, 8, 8}, core::PixelType::kUint8);
  client::Client::StreamSource source;
  source.shape = input.shape();
  source.type = input.pixel_type();
  source.read_slice = [&](int64_t z, uint8_t* dst) {
    std::memcpy(dst, input.slice_data(z), input.slice_bytes());
    return absl::OkStatus();
  };
  class Discard final : public client::Client::StreamSink {
    absl::Status Begin(const core::StackShape&, core::PixelType,
                       const core::StackMetadata&) override {
      return absl::OkStatus();
    }
    absl::Status Slice(int64_t, const uint8_t*) override { return absl::OkStatus(); }
  } sink;
  const std::vector<v1::OpSpec> ops = {*client::ParseOpText("invert")};
  EXPECT_THAT(As("")->ProcessStream(source, ops, sink, nullptr),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("needs a token")));
  ASSERT_OK_AND_ASSIGN(v1::Job job, As(kBob)->ProcessStream(source, ops, sink, nullptr));
  EXPECT_EQ(job.owner(), "bob");
  EXPECT_THAT(As(kAlice)->Get(job.id()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no job")));
}

}  // namespace
}  // namespace stackproc
