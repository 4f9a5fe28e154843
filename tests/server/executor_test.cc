// Where the job manager runs a path job (--executor, the spec's shards), without a cluster: what
// a server that runs jobs itself refuses, which jobs a SLURM server keeps for itself (a
// whole-stack step goes when its statistics add up over ranges), how many
// shards it cuts when the spec leaves it the choice, and a cluster that cannot be reached.
// (tests/slurm/executor_test.sh runs the shards on a real SLURM cluster.)
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <tbb/global_control.h>

#include <filesystem>
#include <fstream>
#include <tuple>

#include "core/io/tiff_io.h"
#include "core/tiff/tiff_writer.h"
#include "server/jobs/job_manager.h"
#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc {
namespace {

using server::Executor;
using server::JobManager;
using server::JobSpec;
using server::JobState;
using ::stackproc::testing::Ops;
using ::stackproc::testing::StatusIs;
using ::testing::HasSubstr;

// SLURM_CONF at a configuration that names no cluster while it lives: sbatch fails at once.
class NoCluster {
 public:
  NoCluster() {
    std::ofstream(dir_.File("slurm.conf")) << "NotASlurmKey=1\n";
    ::setenv("SLURM_CONF", dir_.File("slurm.conf").c_str(), 1);
  }
  ~NoCluster() { ::unsetenv("SLURM_CONF"); }

 private:
  ::stackproc::testing::TempDir dir_;
};

class ExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const core::Stack input = ::stackproc::testing::MakeStack({4, 64, 64}, core::PixelType::kUint8);
    ASSERT_OK(core::WriteTiff(root_.File("in.tif"), input));
    stack_bytes_ = input.size_bytes();
  }

  server::JobManagerOptions Options(Executor executor) const {
    server::JobManagerOptions options;
    options.data_root = root_.path().string();
    options.state_dir = state_.path().string();
    options.threads = 1;
    options.executor = executor;
    options.slurm.worker = "/usr/local/bin/stackproc-local";
    options.slurm.poll = absl::Seconds(1);
    return options;
  }
  std::unique_ptr<JobManager> Manager(server::JobManagerOptions options) const {
    absl::StatusOr<std::unique_ptr<JobManager>> manager = JobManager::Create(std::move(options));
    EXPECT_OK(manager);
    return manager.ok() ? *std::move(manager) : nullptr;
  }
  static JobSpec Spec(const std::string& output, int shards,
                      std::vector<std::string> ops = {"gaussian:ksize=3"}) {
    JobSpec spec;
    spec.input_path = "in.tif";
    spec.ops = Ops(ops);
    if (!output.empty()) spec.output_path = output;
    spec.shards = shards;
    return spec;
  }
  static server::JobSnapshot WaitEnded(server::Job& job) {
    for (int i = 0; i < 3000 && !server::IsTerminal(job.Snapshot().state); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return job.Snapshot();
  }

  // Under ThreadSanitizer (tests/run.sh tsan) TBB runs every task on the thread that asks.
  const tbb::global_control no_tbb_workers_{tbb::global_control::max_allowed_parallelism, 1};
  ::stackproc::testing::TempDir root_, state_;
  uint64_t stack_bytes_ = 0;
};

TEST_F(ExecutorTest, ALocalServerRefusesShardsAndRunsTheRest) {
  std::unique_ptr<JobManager> manager = Manager(Options(Executor::kLocal));
  ASSERT_NE(manager, nullptr);
  EXPECT_THAT(manager->Submit(Spec("out.tif", 4), ""),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("--executor slurm")));
  for (int shards : {0, 1}) {
    absl::StatusOr<std::shared_ptr<server::Job>> job =
        manager->Submit(Spec(absl::StrCat("out", shards, ".tif"), shards), "");
    ASSERT_OK(job);
    EXPECT_EQ(WaitEnded(**job).state, JobState::kSucceeded);
    EXPECT_EQ((*job)->Snapshot().execution.executor, Executor::kLocal);
  }
}

TEST_F(ExecutorTest, ASlurmServerNeedsAJobTableAndAWorker) {
  server::JobManagerOptions options = Options(Executor::kSlurm);
  options.state_dir.clear();
  EXPECT_THAT(JobManager::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--state-dir")));
  options = Options(Executor::kSlurm);
  options.slurm.worker.clear();
  EXPECT_THAT(JobManager::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--slurm-worker")));
}

TEST_F(ExecutorTest, JobsThatCannotBeCutAreRefusedShardsAndRunHereWithout) {
  server::JobManagerOptions options = Options(Executor::kSlurm);
  options.slurm.shard_bytes = 1;  // shards 0 would cut every job as finely as it can
  std::unique_ptr<JobManager> manager = Manager(options);
  ASSERT_NE(manager, nullptr);
  const struct {
    JobSpec spec;
    std::string why;
  } cases[] = {
      {Spec("", 2), "kept in memory"},
      // A store of 4 slices has one file along z (its shards hold 16): one writer.
      {Spec("out.zarr", 2), "at most 1"},
      {Spec("planes/", 2), "only TIFF outputs"},
      {Spec("float.tif", 2, {"convert:to=float32", "normalize:scope=stack"}),
       "statistics do not add up"},
      {Spec("twice.tif", 2, {"normalize:scope=stack", "normalize:scope=stack"}),
       "several whole-stack steps"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.why);
    EXPECT_THAT(manager->Submit(c.spec, ""),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.why)));
    JobSpec left_to_the_server = c.spec;
    left_to_the_server.shards = 0;
    absl::StatusOr<std::shared_ptr<server::Job>> job = manager->Submit(left_to_the_server, "");
    ASSERT_OK(job);
    EXPECT_EQ((*job)->Snapshot().execution.executor, Executor::kLocal);
    EXPECT_EQ(WaitEnded(**job).state, JobState::kSucceeded) << (*job)->Snapshot().error;
  }
  EXPECT_THAT(
      manager->Submit(Spec("out.tif", 5), ""),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("5 shards for a stack of 4 slices")));
}

TEST_F(ExecutorTest, AWholeStackStepOfIntegerPixelsGoesToTheCluster) {
  const NoCluster no_cluster;  // the job is planned, then cannot be submitted
  // A budget the whole stack does not fit: the server could not run the job itself.
  server::JobManagerOptions options = Options(Executor::kLocal);
  options.memory_budget = stack_bytes_ / 2;
  const JobSpec spec = Spec("whole.tif", 0, {"gaussian:ksize=3", "normalize:scope=stack"});
  EXPECT_THAT(Manager(options)->Submit(spec, ""),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--memory-budget")));
  options.executor = Executor::kSlurm;
  std::unique_ptr<JobManager> manager = Manager(options);
  ASSERT_NE(manager, nullptr);
  JobSpec two = spec;
  two.shards = 2;
  absl::StatusOr<std::shared_ptr<server::Job>> job = manager->Submit(two, "");
  ASSERT_OK(job);
  EXPECT_EQ((*job)->Snapshot().execution.executor, Executor::kSlurm);
  EXPECT_EQ((*job)->Snapshot().memory_bytes, 0u);  // nothing held: the statistics come from files
  EXPECT_THAT(WaitEnded(**job).error,
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("sbatch")));
}

TEST_F(ExecutorTest, TheServerCutsOneShardPerShardSizeAndKeepsSmallJobs) {
  const NoCluster no_cluster;  // the job is planned, then cannot be submitted
  const struct {
    uint64_t shard_bytes;
    Executor executor;
    int shards;
  } cases[] = {
      {stack_bytes_ / 2, Executor::kSlurm, 2},
      {stack_bytes_ / 3, Executor::kSlurm, 3},
      {stack_bytes_ / 100, Executor::kSlurm, 4},  // at most one per slice
      {stack_bytes_ * 2 / 3, Executor::kLocal, 0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.shard_bytes);
    server::JobManagerOptions options = Options(Executor::kSlurm);
    options.slurm.shard_bytes = c.shard_bytes;
    std::unique_ptr<JobManager> manager = Manager(options);
    ASSERT_NE(manager, nullptr);
    absl::StatusOr<std::shared_ptr<server::Job>> job = manager->Submit(Spec("out.tif", 0), "");
    ASSERT_OK(job);
    const server::JobSnapshot s = WaitEnded(**job);
    EXPECT_EQ(s.execution.executor, c.executor);
    EXPECT_EQ(s.execution.shards, c.shards);
    if (c.executor == Executor::kSlurm) {
      // sbatch refuses for good (no cluster configured): the job fails saying so, and leaves
      // nothing.
      EXPECT_EQ(s.state, JobState::kFailed);
      EXPECT_THAT(s.error, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("sbatch")));
      EXPECT_EQ(s.memory_bytes, 0u);
      for (const auto& entry : std::filesystem::directory_iterator(root_.path())) {
        EXPECT_EQ(entry.path().filename(), "in.tif");
      }
    } else {
      EXPECT_EQ(s.state, JobState::kSucceeded) << s.error;
      std::filesystem::remove(root_.File("out.tif"));
    }
  }
}

// The pipeline's cost counts too: a small stack through an expensive filter goes to the cluster
// when one slice's time, times the slices, would keep a shard busier than shard_seconds.
TEST_F(ExecutorTest, AnExpensivePipelineIsCutByItsCostOnOneSlice) {
  const NoCluster no_cluster;  // the job is planned, then cannot be submitted
  const core::Stack input = ::stackproc::testing::MakeStack({4, 512, 512}, core::PixelType::kUint8);
  ASSERT_OK(core::WriteTiff(root_.File("costly.tif"), input));
  JobSpec spec = Spec("costly-out.tif", 0, {"bilateral:d=9"});
  spec.input_path = "costly.tif";
  for (const auto& [seconds, executor, shards] :
       {std::tuple{absl::Milliseconds(1), Executor::kSlurm, 4},  // ~30 ms a slice: 4 shards
        std::tuple{absl::Hours(1), Executor::kLocal, 0}}) {
    server::JobManagerOptions options = Options(Executor::kSlurm);
    options.slurm.shard_bytes = uint64_t{1} << 40;  // by size, one shard: here
    options.slurm.shard_seconds = seconds;
    std::unique_ptr<JobManager> manager = Manager(options);
    ASSERT_NE(manager, nullptr);
    absl::StatusOr<std::shared_ptr<server::Job>> job = manager->Submit(spec, "");
    ASSERT_OK(job);
    EXPECT_EQ((*job)->Snapshot().execution.executor, executor);
    EXPECT_EQ((*job)->Snapshot().execution.shards, shards);
    WaitEnded(**job);
    std::filesystem::remove(root_.File("costly-out.tif"));
  }
}

}  // namespace
}  // namespace stackproc
