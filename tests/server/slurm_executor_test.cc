// The SLURM executor's loop against a fake cluster (fake_slurm.h), whose tasks run the real
// worker: shards that fail then succeed, fail past their retries, sbatch refusing for now and
// for good, the controller forgetting an array, the server stopping in each phase (and between
// sbatch and the job table) and starting again, and a cancel in each phase. Each finished job's
// output must be byte for byte what the server's own threads make (LocalExecutor), and a job that
// does not finish leaves nothing beside its output. (tests/slurm/ runs a real cluster.)
#include "server/executors/slurm_executor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_join.h"
#include "core/io/tiff_io.h"
#include "core/process/process_file.h"
#include "server/executors/local_executor.h"
#include "tests/server/fake_slurm.h"
#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc {
namespace {

using server::Job;
using server::JobSnapshot;
using server::JobSpec;
using ::stackproc::testing::FakeSlurm;
using ::stackproc::testing::SameOutput;
using ::stackproc::testing::StatusIs;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;

// Keeps what the executor records: the job table's last record of the job, and the log.
class Recorder final : public server::JobRecorder {
 public:
  void Save(const Job& job) override {
    std::lock_guard lock(mutex_);
    if (!frozen) saved = job.Snapshot();
  }
  void Log(const JobSnapshot&, const std::string& event, const std::string& extra) override {
    std::lock_guard lock(mutex_);
    events.push_back(event + extra);
  }
  std::string Events() {
    std::lock_guard lock(mutex_);
    return absl::StrJoin(events, "\n");
  }
  JobSnapshot Saved() {
    std::lock_guard lock(mutex_);
    return saved;
  }
  std::atomic<bool> frozen{false};  // the server died: no record written from now on

 private:
  std::mutex mutex_;
  JobSnapshot saved;
  std::vector<std::string> events;
};

class SlurmExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const core::Stack input =
        ::stackproc::testing::MakeStack({12, 48, 64}, core::PixelType::kUint16);
    ASSERT_OK(core::WriteTiff(root_.File("in.tif"), input));
    resolver_ = std::make_unique<server::PathResolver>(*server::PathResolver::Create(root_.path()));
    options_.worker = STACKPROC_LOCAL;
    options_.poll = absl::Milliseconds(5);
    options_.retries = 2;
  }

  JobSpec Spec(std::vector<std::string> ops = {"gaussian:ksize=3"}) const {
    JobSpec spec;
    spec.input_path = "in.tif";
    spec.ops = ::stackproc::testing::Ops(ops);
    spec.output_path = "out.tif";
    spec.shards = 3;
    return spec;
  }
  // `spec` planned by `executor`, as the job manager plans it, and started.
  std::shared_ptr<Job> Planned(const JobSpec& spec, const server::JobExecutor& executor) {
    absl::StatusOr<core::ProcessRequest> request =
        server::PathRequest(spec, *resolver_, core::StackLimits{}, uint64_t{64} << 20);
    EXPECT_OK(request);
    absl::StatusOr<core::ProcessPlan> plan = core::PlanProcess(*request, 2);
    EXPECT_OK(plan);
    JobSnapshot s;
    s.id = absl::StrCat("job", ++jobs_);
    s.spec = spec;
    s.input_shape = plan->input.shape;
    s.input_type = plan->input.type;
    s.progress.bytes_total = *core::StackBytes(plan->input.shape, plan->input.type);
    s.mode = plan->mode;
    EXPECT_OK(executor.Plan(s, *plan));
    auto job = std::make_shared<Job>(s);
    job->Start(absl::Now());
    return job;
  }
  // What the server's own threads make of `spec` (the file's path): the reference every cluster
  // run must equal.
  std::string Local(JobSpec spec) {
    spec.shards = 0;
    spec.output_path = "local.tif";
    server::LocalExecutor local(2, *resolver_, core::StackLimits{}, uint64_t{64} << 20);
    std::shared_ptr<Job> job = Planned(spec, local);
    Recorder recorder;
    EXPECT_OK(local.Run(*job, job->Snapshot(), recorder).status);
    return root_.File("local.tif");
  }
  server::RunOutcome RunOnCluster(Job& job, Recorder& recorder) {
    server::SlurmExecutor executor(options_, fake_, *resolver_);
    return executor.Run(job, job.Snapshot(), recorder);
  }
  // Only the input, and the output when there is one, beneath the data root.
  std::vector<std::string> Entries() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(root_.path())) {
      if (entry.path().filename() != "local.tif") names.push_back(entry.path().filename());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  // Under ThreadSanitizer: oneTBB's scheduler is not instrumented (it would hand tasks between
  // threads unseen), so TBB runs every task on the thread that asks, as in job_manager_test.
  const tbb::global_control no_tbb_workers_{tbb::global_control::max_allowed_parallelism, 1};
  ::stackproc::testing::TempDir root_;
  std::unique_ptr<server::PathResolver> resolver_;
  server::SlurmOptions options_;
  std::shared_ptr<FakeSlurm> fake_ = std::make_shared<FakeSlurm>();
  int jobs_ = 0;
};

TEST_F(SlurmExecutorTest, AShardWhoseNodeDiesIsSubmittedAgainAloneAndTheOutputIsALocalRuns) {
  fake_->fate = [](const std::string&, int index, int attempt) {
    return index == 1 && attempt == 1 ? FakeSlurm::Fate::kNodeFail : FakeSlurm::Fate::kRun;
  };
  server::SlurmExecutor planner(options_, fake_, *resolver_);
  std::shared_ptr<Job> job = Planned(Spec(), planner);
  ASSERT_EQ(job->Snapshot().execution.executor, server::Executor::kSlurm);
  Recorder recorder;
  const server::RunOutcome outcome = RunOnCluster(*job, recorder);
  ASSERT_OK(outcome.status);
  EXPECT_FALSE(outcome.detached);
  EXPECT_EQ(SameOutput(root_.File("out.tif"), Local(Spec())), 0);
  EXPECT_EQ(fake_->Submitted("stackproc-job1-shard"), 2);  // the array, then shard 1 alone
  EXPECT_EQ(job->Snapshot().execution.shards_failed, 1);
  EXPECT_EQ(job->Snapshot().execution.slurm_job_ids.size(), 2u);
  EXPECT_THAT(recorder.Events(), AllOf(HasSubstr("shard_retried"),
                                       HasSubstr("shard 1 of 3 (slices 4-7) failed on "
                                                 "fake-node (NODE_FAIL)"),
                                       HasSubstr("node died")));
  EXPECT_EQ(Entries(), (std::vector<std::string>{"in.tif", "out.tif"}));
}

TEST_F(SlurmExecutorTest, AShardThatFailsPastItsRetriesFailsTheJobNamingItAndLeavesNothing) {
  fake_->fate = [](const std::string&, int index, int) {
    return index == 2 ? FakeSlurm::Fate::kNodeFail : FakeSlurm::Fate::kRun;
  };
  server::SlurmExecutor planner(options_, fake_, *resolver_);
  std::shared_ptr<Job> job = Planned(Spec(), planner);
  Recorder recorder;
  const server::RunOutcome outcome = RunOnCluster(*job, recorder);
  EXPECT_THAT(outcome.status,
              StatusIs(absl::StatusCode::kInternal,
                       AllOf(HasSubstr("shard 2 of 3 (slices 8-11) failed on fake-node"),
                             HasSubstr("node died"), HasSubstr("3 attempts"))));
  EXPECT_EQ(fake_->Submitted("stackproc-job1-shard"), 3);  // the array, then 2 retries
  EXPECT_EQ(fake_->Unfinished(), 0);
  EXPECT_EQ(Entries(), std::vector<std::string>{"in.tif"});
}

TEST_F(SlurmExecutorTest, ASubmitLimitIsWaitedOutAndShownInTheStage) {
  fake_->refusals = 2;
  server::SlurmExecutor planner(options_, fake_, *resolver_);
  std::shared_ptr<Job> job = Planned(Spec(), planner);
  std::vector<std::string> stages;
  std::mutex stages_mutex;
  job->Subscribe([&] {
    std::lock_guard lock(stages_mutex);
    stages.push_back(job->Snapshot().stage);
  });
  Recorder recorder;
  ASSERT_OK(RunOnCluster(*job, recorder).status);
  EXPECT_EQ(SameOutput(root_.File("out.tif"), Local(Spec())), 0);
  EXPECT_EQ(fake_->submit_calls(), 3);
  EXPECT_THAT(stages,
              Contains(AllOf(HasSubstr("waiting to submit its shards"),
                             HasSubstr("QOSMaxSubmitJobPerUserLimit"), HasSubstr("(attempt 3)"))));
  EXPECT_THAT(recorder.Events(), HasSubstr("sbatch_refused"));
}

TEST_F(SlurmExecutorTest, ARefusalForGoodFailsTheJobAndLeavesNothing) {
  fake_->refusals = 1;
  fake_->refusal = "sbatch: error: Batch job submission failed: Invalid partition name specified";
  server::SlurmExecutor planner(options_, fake_, *resolver_);
  std::shared_ptr<Job> job = Planned(Spec(), planner);
  Recorder recorder;
  EXPECT_THAT(RunOnCluster(*job, recorder).status,
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("Invalid partition")));
  EXPECT_EQ(fake_->submit_calls(), 1);
  EXPECT_EQ(Entries(), std::vector<std::string>{"in.tif"});
}

TEST_F(SlurmExecutorTest, AnArrayTheControllerForgetsIsSubmittedAgain) {
  fake_->on_poll = [this](int poll) {
    if (poll == 2) fake_->Forget("1000");  // its tasks were running
  };
  server::SlurmExecutor planner(options_, fake_, *resolver_);
  std::shared_ptr<Job> job = Planned(Spec(), planner);
  Recorder recorder;
  ASSERT_OK(RunOnCluster(*job, recorder).status);
  EXPECT_EQ(SameOutput(root_.File("out.tif"), Local(Spec())), 0);
  EXPECT_EQ(fake_->Submitted("stackproc-job1-shard"), 3);  // each lost shard again, alone
}

// A whole-stack step: the "stats" phase, then the "shard" phase, then the assembly.
const std::vector<std::string> kTwoPhases = {"gaussian:ksize=3", "normalize:scope=stack"};

TEST_F(SlurmExecutorTest, AServerThatStopsInEachPhaseReattachesAndSubmitsNothingTwice) {
  const std::string local = Local(Spec(kTwoPhases));
  // The n-th squeue of the run: 1-2 the statistics, 3 the pieces, 4 the last pieces end: the
  // assembly.
  for (const int stop_at : {1, 2, 3, 4}) {
    SCOPED_TRACE(stop_at);
    std::filesystem::remove(root_.File("out.tif"));
    fake_ = std::make_shared<FakeSlurm>();
    server::SlurmExecutor planner(options_, fake_, *resolver_);
    std::shared_ptr<Job> job = Planned(Spec(kTwoPhases), planner);
    const std::string id = job->id();
    fake_->on_poll = [&](int poll) {
      if (poll == stop_at) job->Interrupt("the server stops");
    };
    Recorder recorder;
    recorder.Save(*job);
    const server::RunOutcome first = RunOnCluster(*job, recorder);
    ASSERT_TRUE(first.detached) << first.status;
    // The next start: the job as the table has it, a new executor, the same cluster.
    fake_->on_poll = [](int) {};
    auto again = std::make_shared<Job>(recorder.Saved());
    ASSERT_OK(RunOnCluster(*again, recorder).status);
    EXPECT_EQ(SameOutput(root_.File("out.tif"), local), 0);
    EXPECT_EQ(fake_->Submitted(absl::StrCat("stackproc-", id, "-stats")), 1);
    EXPECT_EQ(fake_->Submitted(absl::StrCat("stackproc-", id, "-shard")), 1);
    EXPECT_THAT(recorder.Events(), HasSubstr("shards_reattached"));
    EXPECT_EQ(Entries(), (std::vector<std::string>{"in.tif", "out.tif"}));
  }
}

TEST_F(SlurmExecutorTest, AServerThatDiesBetweenSbatchAndItsRecordFindsTheArrayByName) {
  server::SlurmExecutor planner(options_, fake_, *resolver_);
  std::shared_ptr<Job> job = Planned(Spec(), planner);
  Recorder recorder;
  recorder.Save(*job);  // as the job manager records a job as it starts
  fake_->on_submit = [&](const std::string&) {
    recorder.frozen = true;  // sbatch answered; the job table never hears of it
    job->Interrupt("the server dies");
  };
  ASSERT_TRUE(RunOnCluster(*job, recorder).detached);
  // The array runs; the job table knows nothing of it.
  EXPECT_EQ(fake_->Submitted("stackproc-job1-shard"), 1);
  EXPECT_TRUE(recorder.Saved().execution.slurm_job_ids.empty());
  fake_->on_submit = [](const std::string&) {};
  recorder.frozen = false;
  auto again = std::make_shared<Job>(recorder.Saved());
  ASSERT_OK(RunOnCluster(*again, recorder).status);
  EXPECT_EQ(SameOutput(root_.File("out.tif"), Local(Spec())), 0);
  EXPECT_EQ(fake_->Submitted("stackproc-job1-shard"), 1);
  EXPECT_EQ(again->Snapshot().execution.slurm_job_ids, std::vector<std::string>{"1000"});
}

// sbatch submitted, then timed out before it printed the array's id: the next try finds the
// array by its name instead of submitting it again.
TEST_F(SlurmExecutorTest, AnSbatchThatTimesOutAfterSubmittingIsNotSubmittedTwice) {
  fake_->lost_answers = 1;
  server::SlurmExecutor planner(options_, fake_, *resolver_);
  std::shared_ptr<Job> job = Planned(Spec(), planner);
  Recorder recorder;
  ASSERT_OK(RunOnCluster(*job, recorder).status);
  EXPECT_EQ(SameOutput(root_.File("out.tif"), Local(Spec())), 0);
  EXPECT_EQ(fake_->Submitted("stackproc-job1-shard"), 1);
  EXPECT_EQ(job->Snapshot().execution.slurm_job_ids, std::vector<std::string>{"1000"});
}

// A server of the previous version named a job's arrays "stackproc-JOB": the new one, restarted
// over its job table, follows that array rather than submitting the shards again.
TEST_F(SlurmExecutorTest, AnArrayOfThePreviousVersionIsFollowedNotSubmittedAgain) {
  server::SlurmExecutor planner(options_, fake_, *resolver_);
  std::shared_ptr<Job> job = Planned(Spec(), planner);
  Recorder recorder;
  recorder.Save(*job);
  fake_->on_submit = [&](const std::string& id) {
    fake_->Rename(id, "stackproc-job1");
    job->Interrupt("the old server stops");
  };
  ASSERT_TRUE(RunOnCluster(*job, recorder).detached);
  fake_->on_submit = [](const std::string&) {};
  auto again = std::make_shared<Job>(recorder.Saved());
  ASSERT_OK(RunOnCluster(*again, recorder).status);
  EXPECT_EQ(SameOutput(root_.File("out.tif"), Local(Spec())), 0);
  EXPECT_EQ(fake_->Submitted("stackproc-job1"), 1);
  EXPECT_EQ(fake_->Submitted("stackproc-job1-shard"), 0);
}

TEST_F(SlurmExecutorTest, ACancelInEachPhaseCancelsTheTasksAndLeavesNothing) {
  // The n-th squeue: 1-2 the statistics, 3 the pieces, 4 the last pieces end: the assembly;
  // 0: while sbatch refuses.
  for (const int cancel_at : {0, 1, 2, 3, 4}) {
    SCOPED_TRACE(cancel_at);
    fake_ = std::make_shared<FakeSlurm>();
    server::SlurmExecutor planner(options_, fake_, *resolver_);
    std::shared_ptr<Job> job = Planned(Spec(kTwoPhases), planner);
    if (cancel_at == 0) {
      fake_->refusals = 1000;
      fake_->on_submit = [](const std::string&) {};
      std::thread canceller([&] {
        while (fake_->submit_calls() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        job->RequestCancel();
      });
      Recorder recorder;
      EXPECT_THAT(RunOnCluster(*job, recorder).status,
                  StatusIs(absl::StatusCode::kCancelled, HasSubstr("cancelled")));
      canceller.join();
    } else {
      fake_->on_poll = [&](int poll) {
        if (poll == cancel_at) job->RequestCancel();
      };
      Recorder recorder;
      EXPECT_THAT(
          RunOnCluster(*job, recorder).status,
          StatusIs(absl::StatusCode::kCancelled,
                   HasSubstr(cancel_at == 4 ? "assembly cancelled" : "cancelled on the cluster")));
    }
    EXPECT_EQ(fake_->Unfinished(), 0);
    EXPECT_EQ(Entries(), std::vector<std::string>{"in.tif"});
  }
}

}  // namespace
}  // namespace stackproc
