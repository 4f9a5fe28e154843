// The job manager under concurrent callers, without gRPC: submitters, cancellers, deleters,
// readers and a shutdown all at once, over a job store. Checks the invariants that must hold
// after any interleaving. tests/run.sh also runs this file under ThreadSanitizer: the manager's
// threads, locks, jobs and store are instrumented, oneTBB's scheduler is not (it would hand
// tasks between threads unseen), so here TBB runs every task on the thread that asks (no worker
// threads, one job at a time).
#include "server/jobs/job_manager.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <atomic>
#include <random>
#include <set>
#include <thread>

#include "core/io/tiff_io.h"
#include "core/tiff/tiff_writer.h"
#include "server/jobs/job_store.h"
#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc {
namespace {

using server::JobManager;
using server::JobSpec;
using server::JobState;
using ::stackproc::testing::Ops;
using ::stackproc::testing::StatusIs;

class JobManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const core::Stack input = ::stackproc::testing::MakeStack({4, 48, 48}, core::PixelType::kUint8);
    ASSERT_OK(core::WriteTiff(root_.File("in.tif"), input));
    stack_bytes_ = input.size_bytes();
  }

  std::unique_ptr<JobManager> Manager() {
    server::JobManagerOptions options;
    options.data_root = root_.path().string();
    options.state_dir = state_.path().string();
    options.threads = 1;
    options.max_running_jobs = 1;
    options.memory_budget = uint64_t{1} << 30;
    options.max_jobs_per_caller = 100000;
    absl::StatusOr<std::unique_ptr<JobManager>> manager = JobManager::Create(options);
    EXPECT_OK(manager);
    return manager.ok() ? *std::move(manager) : nullptr;
  }

  static JobSpec Spec(int n) {
    JobSpec spec;
    spec.input_path = "in.tif";
    spec.ops = Ops({"gaussian:ksize=3", "invert"});
    if (n % 2 == 0) {
      spec.output_path = absl::StrCat("out", n % 8, ".tif");
      spec.overwrite = true;
    }
    spec.owner = absl::StrCat("caller", n % 3);
    return spec;
  }

  const tbb::global_control no_tbb_workers_{tbb::global_control::max_allowed_parallelism, 1};
  ::stackproc::testing::TempDir root_, state_;
  uint64_t stack_bytes_ = 0;
};

TEST_F(JobManagerTest, ConcurrentCallersLeaveAConsistentTableAndStore) {
  std::unique_ptr<JobManager> manager = Manager();
  ASSERT_NE(manager, nullptr);
  std::atomic<bool> submitting{true};
  std::atomic<int> submitted{0}, deleted{0};
  std::mutex ids_mutex;
  std::vector<std::string> ids;

  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        absl::StatusOr<std::shared_ptr<server::Job>> job =
            manager->Submit(Spec(t * 100 + i), i % 5 == 0 ? absl::StrCat("r", t, "-", i) : "");
        ASSERT_OK(job);
        ++submitted;
        std::lock_guard lock(ids_mutex);
        ids.push_back((*job)->id());
      }
    });
  }
  threads.emplace_back([&] {  // cancels and deletes what it finds
    std::mt19937 random(7);
    while (submitting) {
      for (const std::shared_ptr<server::Job>& job : manager->List()) {
        const server::JobSnapshot s = job->Snapshot();
        if (random() % 4 == 0 && !server::IsTerminal(s.state)) (void)manager->Cancel(s.id);
        if (random() % 4 == 0 && server::IsTerminal(s.state) && manager->Delete(s.id).ok()) {
          ++deleted;
        }
      }
      std::this_thread::yield();
    }
  });
  threads.emplace_back([&] {  // reads everything, all the time
    while (submitting) {
      (void)manager->Counts();
      (void)manager->memory_in_use();
      for (const std::shared_ptr<server::Job>& job : manager->List()) {
        (void)manager->Get(job->id());
        (void)job->Snapshot();
      }
    }
  });
  for (int t = 0; t < 3; ++t) threads[t].join();
  // Let every job end, then stop the readers.
  for (int i = 0; i < 2000; ++i) {
    bool all_ended = true;
    for (const auto& job : manager->List()) all_ended &= server::IsTerminal(job->Snapshot().state);
    if (all_ended) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  submitting = false;
  for (size_t t = 3; t < threads.size(); ++t) threads[t].join();

  // Invariants: every job ended; the memory in use is the results held; the store has exactly
  // the jobs listed, in the same states.
  const std::vector<std::shared_ptr<server::Job>> listed = manager->List();
  EXPECT_EQ(static_cast<int>(listed.size()), submitted - deleted);
  uint64_t held = 0;
  for (const auto& job : listed) {
    const server::JobSnapshot s = job->Snapshot();
    EXPECT_TRUE(server::IsTerminal(s.state)) << s.id << " " << server::JobStateName(s.state);
    if (job->result()) held += job->result()->size_bytes();
  }
  EXPECT_EQ(manager->memory_in_use(), held);
  std::map<std::string, JobState> in_memory;
  for (const auto& job : listed) in_memory[job->id()] = job->Snapshot().state;
  manager.reset();  // nothing runs: the store is final
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<server::JobStore> store,
                       server::JobStore::Open(state_.path().string()));
  ASSERT_OK_AND_ASSIGN(std::vector<server::JobSnapshot> stored, store->Load());
  std::map<std::string, JobState> on_disk;
  for (const server::JobSnapshot& s : stored) on_disk[s.id] = s.state;
  EXPECT_EQ(on_disk, in_memory);
}

TEST_F(JobManagerTest, ShutdownDuringSubmitsKeepsTheQueueForTheNextStart) {
  std::unique_ptr<JobManager> manager = Manager();
  ASSERT_NE(manager, nullptr);
  // Each submitter goes on until the shutdown refuses it.
  std::atomic<int> accepted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100000; ++i) {
        absl::StatusOr<std::shared_ptr<server::Job>> job = manager->Submit(Spec(t * 100 + i), "");
        if (!job.ok()) {
          EXPECT_THAT(job.status(), StatusIs(absl::StatusCode::kUnavailable,
                                             ::testing::HasSubstr("shutting down")));
          return;
        }
        ++accepted;
      }
      ADD_FAILURE() << "never refused";
    });
  }
  while (accepted < 30) std::this_thread::yield();
  manager->Shutdown(absl::ZeroDuration());
  for (std::thread& t : threads) t.join();
  // Ended, or queued and left in the job table (a path job that had not started).
  std::map<std::string, JobState> before;
  for (const auto& job : manager->List()) {
    const server::JobSnapshot s = job->Snapshot();
    before[s.id] = s.state;
    EXPECT_TRUE(s.state == JobState::kQueued || server::IsTerminal(s.state))
        << s.id << " " << server::JobStateName(s.state);
  }
  EXPECT_EQ(manager->List().size(), static_cast<size_t>(accepted.load()));
  manager.reset();
  // The next start runs what waited, and only that.
  manager = Manager();
  ASSERT_NE(manager, nullptr);
  for (int i = 0; i < 2000; ++i) {
    bool all_ended = true;
    for (const auto& job : manager->List()) all_ended &= server::IsTerminal(job->Snapshot().state);
    if (all_ended) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(manager->List().size(), static_cast<size_t>(accepted.load()));
  for (const auto& job : manager->List()) {
    const server::JobSnapshot s = job->Snapshot();
    ASSERT_TRUE(before.contains(s.id)) << s.id;
    EXPECT_EQ(s.state, before[s.id] == JobState::kQueued ? JobState::kSucceeded : before[s.id])
        << s.id << " " << s.error;
  }
  // Whatever the interleaving, nothing is left half-written in the data root.
  for (const auto& entry : std::filesystem::directory_iterator(root_.path())) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
  }
}

}  // namespace
}  // namespace stackproc
