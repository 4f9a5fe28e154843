// Jobs across restarts (--state-dir): the job store itself, a graceful restart with jobs queued
// and running, and the records a crash leaves (a RUNNING row, a temporary output file). The
// kill -9 of a real server process is tests/e2e/restart_test.sh.
#include <sqlite3.h>

#include <fstream>

#include "core/io/tiff_io.h"
#include "server/api/proto_convert.h"
#include "server/jobs/job_store.h"
#include "tests/server/service_fixture.h"

namespace stackproc {
namespace {

namespace fs = std::filesystem;
using ::stackproc::testing::Ops;
using ::stackproc::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

server::JobSpec StreamedSpec(const std::string& owner) {
  server::JobSpec spec;
  spec.ops = Ops({"invert"});
  spec.streamed = true;
  spec.owner = owner;
  return spec;
}

server::JobSnapshot PathJob(const std::string& id, server::JobState state) {
  server::JobSnapshot s;
  s.id = id;
  s.spec.input_path = "in.tif";
  s.spec.ops = Ops({"gaussian:ksize=5,sigma=0", "invert"});
  s.spec.output_path = "sub/o.tif";
  s.spec.compression = core::Compression::kDeflate;
  s.spec.owner = "alice";
  s.request_id = "r-" + id;
  s.state = state;
  s.stage = "streaming";
  s.progress.slices_done = 3;
  s.progress.slices_total = 8;
  s.progress.bytes_done = 3 * 64 * 64 * 2;
  s.progress.bytes_total = 8 * 64 * 64 * 2;
  s.input_shape = {8, 64, 64};
  s.output_shape = {8, 64, 64};
  s.input_type = s.output_type = core::PixelType::kUint16;
  s.create_time = absl::FromUnixMillis(1'700'000'000'123);
  s.start_time = absl::FromUnixMillis(1'700'000'001'000);
  s.mode = core::ProcessMode::kStreaming;
  s.memory_bytes = 12345;
  return s;
}

TEST(JobStoreTest, KeepsJobsInOrderAcrossReopening) {
  ::stackproc::testing::TempDir dir;
  const std::string state = (dir.path() / "state").string();  // created by Open
  server::JobSnapshot a = PathJob("a1", server::JobState::kRunning);
  server::JobSnapshot b = PathJob("b2", server::JobState::kQueued);
  b.spec.output_path.reset();
  b.spec.retention = absl::Seconds(60);
  b.spec.owner = "";
  server::JobSnapshot c = PathJob("c3", server::JobState::kQueued);
  c.spec = StreamedSpec("bob");
  c.progress.slices_done = c.progress.slices_total;  // a finished stream keeps its progress
  // A job on a cluster keeps where it runs: the array ids a restarted server re-attaches to.
  a.spec.shards = 4;
  a.execution = {server::Executor::kSlurm, 4, {"4242", "4250"}, 2, 1, 1, 1};
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<server::JobStore> store, server::JobStore::Open(state));
    ASSERT_OK(store->Put(a));
    ASSERT_OK(store->Put(b));
    ASSERT_OK(store->Put(c));
    // Replacing a row keeps its place; a failed job keeps its error.
    a.state = server::JobState::kFailed;
    a.error = absl::InvalidArgumentError("slice 3: bad");
    a.end_time = absl::FromUnixMillis(1'700'000'002'000);
    ASSERT_OK(store->Put(a));
    ASSERT_OK(store->Remove("b2"));
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<server::JobStore> store, server::JobStore::Open(state));
  ASSERT_OK_AND_ASSIGN(std::vector<server::JobSnapshot> jobs, store->Load());
  ASSERT_EQ(jobs.size(), 2u);
  const server::JobSnapshot& x = jobs[0];
  EXPECT_EQ(x.id, "a1");
  EXPECT_EQ(x.spec, a.spec);
  EXPECT_EQ(x.request_id, "r-a1");
  EXPECT_EQ(x.state, server::JobState::kFailed);
  EXPECT_THAT(x.error, StatusIs(absl::StatusCode::kInvalidArgument, "slice 3: bad"));
  EXPECT_EQ(x.progress.slices_done, 3);
  EXPECT_EQ(x.progress.bytes_total, a.progress.bytes_total);
  EXPECT_EQ(x.input_shape, a.input_shape);
  EXPECT_EQ(x.output_type, core::PixelType::kUint16);
  EXPECT_EQ(x.create_time, a.create_time);
  EXPECT_EQ(x.start_time, a.start_time);
  EXPECT_EQ(x.end_time, a.end_time);
  EXPECT_EQ(x.mode, core::ProcessMode::kStreaming);
  EXPECT_EQ(x.memory_bytes, 12345u);
  EXPECT_EQ(x.execution, a.execution);
  EXPECT_EQ(jobs[1].id, "c3");
  EXPECT_EQ(jobs[1].progress.slices_done, 8);
  EXPECT_EQ(jobs[1].execution.executor, server::Executor::kLocal);
  EXPECT_EQ(jobs[1].spec, c.spec);
  EXPECT_EQ(jobs[1].end_time, absl::InfinitePast());

  // What another SQLite reader sees: WAL journal, one row per job.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(store->path().c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "wal");
  sqlite3_finalize(stmt);
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT id FROM jobs ORDER BY seq", -1, &stmt, nullptr),
            SQLITE_OK);
  std::vector<std::string> ids;
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    ids.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  EXPECT_THAT(ids, ElementsAre("a1", "c3"));
}

TEST(JobStoreTest, OneServerPerStateDirectory) {
  ::stackproc::testing::TempDir dir;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<server::JobStore> first,
                         server::JobStore::Open(dir.path().string()));
    EXPECT_THAT(server::JobStore::Open(dir.path().string()),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         ::testing::AllOf(HasSubstr("another stackprocd"),
                                          HasSubstr(absl::StrCat("pid ", ::getpid())))));
  }
  // Closed (or its process gone), the directory is free again.
  EXPECT_OK(server::JobStore::Open(dir.path().string()));
}

TEST(JobStoreTest, RefusesAFileThatIsNotItsJobTable) {
  ::stackproc::testing::TempDir dir;
  std::ofstream(dir.File("jobs.sqlite3")) << std::string(8192, 'x');
  EXPECT_THAT(server::JobStore::Open(dir.path().string()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       ::testing::AllOf(HasSubstr("jobs.sqlite3"), HasSubstr("not a database"))));

  ::stackproc::testing::TempDir newer;
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(newer.File("jobs.sqlite3").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=7", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  EXPECT_THAT(server::JobStore::Open(newer.path().string()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("version 7")));
}

class RestartTest : public ServiceTest {
 protected:
  void SetUp() override {
    configure_ = [this](server::ServerOptions& o) {
      o.jobs.state_dir = state_.path().string();
      o.jobs.max_running_jobs = 1;
    };
    ServiceTest::SetUp();
  }

  void Restart() {
    server_->Shutdown(absl::ZeroDuration());
    server_.reset();
    StartServer(uint64_t{1} << 30);
  }

  ::stackproc::testing::TempDir state_;
};

TEST_F(RestartTest, AGracefulRestartKeepsTheQueueAndInterruptsTheRunningJob) {
  core::Stack input = Input("in.tif", {12, 96, 96});
  const std::vector<std::string> ops = {"gaussian:ksize=5", "invert"};
  ASSERT_OK_AND_ASSIGN(v1::Job done, client_->Submit(Request("in.tif", ops, "done.tif")));
  ASSERT_OK(client_->Watch(done.id(), nullptr));
  Input("big.tif", {200, 256, 256}, core::PixelType::kUint8);
  ASSERT_OK_AND_ASSIGN(v1::Job running, client_->Submit(Request("big.tif", kSlowOps, "slow.tif")));
  v1::SubmitJobRequest later_request = Request("in.tif", ops, "later.tif");
  later_request.set_request_id("later-1");
  ASSERT_OK_AND_ASSIGN(v1::Job queued, client_->Submit(later_request));
  WaitUntilProcessing(running.id());

  server_->Shutdown(absl::ZeroDuration());
  // Stopped before it ran, the queued job waits in the job table for the next start.
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<server::Job> waiting, server_->jobs().Get(queued.id()));
  EXPECT_EQ(waiting->Snapshot().state, server::JobState::kQueued);
  // No partial output under a final name, no temporary file.
  EXPECT_EQ(RootEntries(), (std::vector<std::string>{"big.tif", "done.tif", "in.tif"}));
  server_.reset();
  StartServer(uint64_t{1} << 30);

  ASSERT_OK_AND_ASSIGN(std::vector<v1::Job> jobs, client_->List());
  ASSERT_EQ(jobs.size(), 3u);
  EXPECT_EQ(jobs[0].id(), done.id());
  EXPECT_EQ(jobs[0].state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(jobs[0].spec().output().path(), "done.tif");
  EXPECT_EQ(jobs[0].progress().slices_done(), 12);
  EXPECT_GT(jobs[0].end_time_ms(), 0);
  EXPECT_EQ(jobs[1].id(), running.id());
  EXPECT_EQ(jobs[1].state(), v1::JOB_STATE_INTERRUPTED);
  EXPECT_EQ(jobs[1].error().code(), static_cast<int>(absl::StatusCode::kAborted));
  EXPECT_THAT(jobs[1].error().message(), HasSubstr("shut down while the job was running"));
  EXPECT_EQ(jobs[2].id(), queued.id());
  // The queued job runs by itself, under its id, created when it was submitted.
  ASSERT_OK_AND_ASSIGN(v1::Job last, client_->Watch(queued.id(), nullptr));
  EXPECT_EQ(last.state(), v1::JOB_STATE_SUCCEEDED) << last.error().message();
  EXPECT_EQ(last.create_time_ms(), queued.create_time_ms());
  // Request ids outlive the restart: the same id and spec is the same job.
  ASSERT_OK_AND_ASSIGN(v1::Job same, client_->Submit(later_request));
  EXPECT_EQ(same.id(), queued.id());

  // Only an interrupted job resumes; then it runs from its first slice.
  EXPECT_THAT(client_->Resume(done.id()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("only an interrupted")));
  ASSERT_OK_AND_ASSIGN(v1::Job resumed, client_->Resume(running.id()));
  EXPECT_EQ(resumed.id(), running.id());
  EXPECT_THAT(resumed.state(), ::testing::AnyOf(v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING));
  EXPECT_THAT(client_->Resume(running.id()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("only an interrupted")));
  ASSERT_OK(client_->Cancel(running.id()));  // resumed jobs run to the end in the crash test
  ASSERT_OK(client_->Watch(running.id(), nullptr));
  const core::Stack expected = CoreResult(input, ops);
  for (const char* name : {"done.tif", "later.tif"}) {
    ASSERT_OK_AND_ASSIGN(core::Stack out, core::ReadTiff(root_.File(name)));
    EXPECT_TRUE(::stackproc::testing::StacksEqual(out, expected)) << name;
  }

  // Deleted jobs stay deleted; the resumed one keeps its place.
  ASSERT_OK(client_->Delete(done.id()));
  Restart();
  ASSERT_OK_AND_ASSIGN(jobs, client_->List());
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].id(), running.id());
  EXPECT_EQ(jobs[0].state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(jobs[1].id(), queued.id());
}

// Without a job table nothing can be resumed after the restart: the interrupted job says so.
TEST_F(ServiceTest, WithoutAJobTableAnInterruptedJobSaysToSubmitItAgain) {
  Input("big.tif", {200, 256, 256}, core::PixelType::kUint8);
  ASSERT_OK_AND_ASSIGN(v1::Job running, client_->Submit(Request("big.tif", kSlowOps, "slow.tif")));
  WaitUntilProcessing(running.id());
  server_->Shutdown(absl::ZeroDuration());
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<server::Job> job, server_->jobs().Get(running.id()));
  EXPECT_EQ(job->Snapshot().state, server::JobState::kInterrupted);
  EXPECT_THAT(job->Snapshot().error,
              StatusIs(absl::StatusCode::kAborted, HasSubstr("--state-dir: submit it again")));
}

TEST_F(RestartTest, AfterACrashRunningJobsAreInterruptedAndQueuedOnesRunAgain) {
  core::Stack input = Input("in.tif", {8, 64, 64});
  fs::create_directory(root_.path() / "sub");
  server_->Shutdown(absl::ZeroDuration());
  server_.reset();
  // What a server killed mid-write leaves: RUNNING and QUEUED rows, its temporary output (and
  // another job's, which must stay), an in-memory job's RUNNING row, a streamed job's.
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<server::JobStore> store,
                         server::JobStore::Open(state_.path().string()));
    ASSERT_OK(store->Put(PathJob("aaaa000001", server::JobState::kRunning)));
    server::JobSnapshot streamed = PathJob("aaaa000002", server::JobState::kRunning);
    streamed.spec = StreamedSpec("alice");
    ASSERT_OK(store->Put(streamed));
    server::JobSnapshot in_memory = PathJob("aaaa000003", server::JobState::kSucceeded);
    in_memory.spec.output_path.reset();
    ASSERT_OK(store->Put(in_memory));
    // Queued when the server died: one that can still run, one whose input has gone.
    server::JobSnapshot queued = PathJob("aaaa000004", server::JobState::kQueued);
    queued.spec.output_path = "sub/q.tif";
    ASSERT_OK(store->Put(queued));
    server::JobSnapshot orphan = PathJob("aaaa000005", server::JobState::kQueued);
    orphan.spec.input_path = "gone.tif";
    ASSERT_OK(store->Put(orphan));
  }
  std::ofstream(root_.File("sub/.o.tif.tmp-aaaa000001-12345")) << "half a TIFF";
  std::ofstream(root_.File("sub/.o.tif.tmp-bbbb000009-1")) << "someone else's";
  StartServer(uint64_t{1} << 30);

  ASSERT_OK_AND_ASSIGN(std::vector<v1::Job> jobs, client_->List());
  ASSERT_EQ(jobs.size(), 5u);
  EXPECT_EQ(jobs[0].state(), v1::JOB_STATE_INTERRUPTED);
  EXPECT_THAT(jobs[0].error().message(), HasSubstr("server stopped while the job was running"));
  EXPECT_EQ(jobs[0].progress().slices_done(), 3);  // how far it got
  EXPECT_EQ(jobs[0].owner(), "alice");
  EXPECT_EQ(jobs[1].state(), v1::JOB_STATE_INTERRUPTED);
  EXPECT_THAT(jobs[1].error().message(), HasSubstr("send it again"));
  // A finished job is listed as it ended; its in-memory result did not outlive the process.
  EXPECT_EQ(jobs[2].state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(jobs[2].memory_bytes(), 0);
  EXPECT_THAT(client_->Download("aaaa000003"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("server restarted")));
  // The queued job runs; the one whose input has gone fails saying so.
  EXPECT_EQ(jobs[4].state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(jobs[4].error().code(), static_cast<int>(absl::StatusCode::kNotFound));
  EXPECT_THAT(jobs[4].error().message(),
              ::testing::AllOf(HasSubstr("when the server restarted"), HasSubstr("gone.tif")));
  ASSERT_OK_AND_ASSIGN(v1::Job ran, client_->Watch("aaaa000004", nullptr));
  EXPECT_EQ(ran.state(), v1::JOB_STATE_SUCCEEDED) << ran.error().message();
  ASSERT_OK_AND_ASSIGN(core::Stack q, core::ReadTiff(root_.File("sub/q.tif")));
  EXPECT_TRUE(::stackproc::testing::StacksEqual(
      q, CoreResult(input, PathJob("", server::JobState::kQueued).spec.ops)));
  EXPECT_FALSE(fs::exists(root_.File("sub/.o.tif.tmp-aaaa000001-12345")));
  EXPECT_TRUE(fs::exists(root_.File("sub/.o.tif.tmp-bbbb000009-1")));
  EXPECT_FALSE(fs::exists(root_.File("sub/o.tif")));

  EXPECT_THAT(client_->Resume("aaaa000002"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("send it again")));
  ASSERT_OK(client_->Resume("aaaa000001"));
  ASSERT_OK_AND_ASSIGN(v1::Job last, client_->Watch("aaaa000001", nullptr));
  EXPECT_EQ(last.state(), v1::JOB_STATE_SUCCEEDED) << last.error().message();
  ASSERT_OK_AND_ASSIGN(core::Stack out, core::ReadTiff(root_.File("sub/o.tif")));
  EXPECT_TRUE(::stackproc::testing::StacksEqual(
      out, CoreResult(input, PathJob("", server::JobState::kQueued).spec.ops)));
}

TEST_F(RestartTest, ALockedJobTableHoldsUpNoCall) {
  // Another program holds the table's write lock (a backup, a hung network filesystem). Calls
  // answer and the job runs meanwhile: each RPC below has a deadline shorter than the store's
  // busy timeout (5 s), which a call that waited on the table would wait out.
  core::Stack input = Input("in.tif", {6, 48, 48});
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(state_.File("jobs.sqlite3").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  auto stub = v1::StackProcessor::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials()));
  auto within = [](grpc::ClientContext& context) {
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  };
  v1::SubmitJobResponse submitted;
  {
    grpc::ClientContext context;
    within(context);
    grpc::Status status =
        stub->SubmitJob(&context, Request("in.tif", {"invert"}, "out.tif"), &submitted);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  const std::string id = submitted.job().id();
  v1::GetJobResponse got;
  for (int i = 0; got.job().state() != v1::JOB_STATE_SUCCEEDED; ++i) {
    ASSERT_LT(i, 400) << "the job did not finish";
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
    grpc::ClientContext context;
    within(context);
    v1::GetJobRequest request;
    request.set_job_id(id);
    grpc::Status status = stub->GetJob(&context, request, &got);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  ASSERT_EQ(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);

  // Nothing was lost: the records written once the lock went say what happened.
  Restart();
  ASSERT_OK_AND_ASSIGN(std::vector<v1::Job> jobs, client_->List());
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].id(), id);
  EXPECT_EQ(jobs[0].state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_OK_AND_ASSIGN(core::Stack out, core::ReadTiff(root_.File("out.tif")));
  EXPECT_TRUE(::stackproc::testing::StacksEqual(out, CoreResult(input, {"invert"})));
}

TEST_F(RestartTest, AnUnreadableJobTableStopsTheServerFromStarting) {
  server_->Shutdown(absl::ZeroDuration());
  server_.reset();
  fs::remove(state_.File("jobs.sqlite3-wal"));
  fs::remove(state_.File("jobs.sqlite3-shm"));
  std::ofstream(state_.File("jobs.sqlite3"), std::ios::trunc) << std::string(4096, '\x7f');
  server::ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.jobs.data_root = root_.path().string();
  options.jobs.state_dir = state_.path().string();
  EXPECT_THAT(server::Server::Start(options),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("jobs.sqlite3")));
}

TEST_F(RestartTest, OnlyTheNewestEndedJobsAreKept) {
  Input("in.tif", {2, 32, 32});
  server_.reset();
  configure_ = [this](server::ServerOptions& o) {
    o.jobs.state_dir = state_.path().string();
    o.jobs.job_history = 3;
  };
  StartServer(uint64_t{1} << 30);
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    ASSERT_OK_AND_ASSIGN(v1::Job job, client_->Submit(Request("in.tif", {"invert"}, "")));
    ASSERT_OK(client_->Watch(job.id(), nullptr));
    ids.push_back(job.id());
  }
  // The manager sweeps a few times a second.
  std::vector<v1::Job> jobs;
  for (int i = 0; i < 50; ++i) {
    ASSERT_OK_AND_ASSIGN(jobs, client_->List());
    if (jobs.size() == 3) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(jobs.size(), 3u);
  EXPECT_EQ(jobs[0].id(), ids[3]);
  EXPECT_EQ(jobs[2].id(), ids[5]);
  EXPECT_THAT(client_->Get(ids[0]), StatusIs(absl::StatusCode::kNotFound, HasSubstr(ids[0])));
  EXPECT_EQ(server_->jobs().memory_in_use(),
            3 * core::StackBytes({2, 32, 32}, core::PixelType::kUint16).value());
  Restart();
  ASSERT_OK_AND_ASSIGN(jobs, client_->List());
  ASSERT_EQ(jobs.size(), 3u);
  EXPECT_EQ(jobs[0].id(), ids[3]);
}

TEST(JobManagerTest, RefusesAStateDirectoryInsideTheDataRoot) {
  ::stackproc::testing::TempDir root;
  server::JobManagerOptions options;
  options.data_root = root.path().string();
  options.state_dir = root.File("state");
  EXPECT_THAT(server::JobManager::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("inside the data root")));
  options.state_dir = root.path().string();
  EXPECT_THAT(server::JobManager::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("inside the data root")));
}

}  // namespace
}  // namespace stackproc
