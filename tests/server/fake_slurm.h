// A SLURM cluster in the test's process, behind the executor's SlurmCommands: sbatch queues an
// array's tasks, each squeue moves them on one step (pending, then running, then ended), and a
// task that runs runs its script for real (the worker, stackproc-local, over the test's files),
// or its node dies first, as the test decides. The test can also make sbatch refuse, the
// controller forget an array, and hook each squeue.
#pragma once

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "server/executors/command.h"
#include "server/executors/slurm.h"

namespace stackproc::testing {

class FakeSlurm final : public server::SlurmCommands {
 public:
  enum class Fate { kRun, kNodeFail };

  // Decides task `index` of the arrays named `name`, on its `attempt` (1, 2...).
  std::function<Fate(const std::string& name, int index, int attempt)> fate =
      [](const std::string&, int, int) { return Fate::kRun; };
  // Called before each squeue looks (1, 2...), and after each accepted sbatch, with the array.
  std::function<void(int)> on_poll = [](int) {};
  std::function<void(const std::string&)> on_submit = [](const std::string&) {};
  // sbatch refuses this many times with `refusal` before it accepts.
  int refusals = 0;
  std::string refusal = "sbatch: error: QOSMaxSubmitJobPerUserLimit";
  // sbatch submits, then fails this many times as if it timed out before printing the id.
  int lost_answers = 0;

  absl::StatusOr<std::string> Submit(const std::string& script, const std::string& indices,
                                     const std::string& name, const std::string& log) override {
    std::string id;
    {
      std::lock_guard lock(mutex_);
      ++submit_calls_;
      if (refusals > 0) {
        --refusals;
        const std::string message = "sbatch refused the shards: " + refusal;
        return server::SubmitMayPass(refusal) ? absl::UnavailableError(message)
                                              : absl::FailedPreconditionError(message);
      }
      id = absl::StrCat(next_id_++);
      int first = 0, last = 0;
      const size_t dash = indices.find('-');
      first = std::stoi(indices.substr(0, dash));
      last = dash == std::string::npos ? first : std::stoi(indices.substr(dash + 1));
      for (int i = first; i <= last; ++i) {
        tasks_.push_back({id, name, i, script, log, server::TaskState::kPending, "PENDING",
                          ++attempts_[{name, i}]});
      }
      arrays_.push_back({id, name});
    }
    on_submit(id);
    std::lock_guard lock(mutex_);
    if (lost_answers > 0) {
      --lost_answers;
      return absl::UnavailableError("sbatch: timed out after 60s");
    }
    return id;
  }

  absl::StatusOr<std::map<int, server::TaskInfo>> Tasks(
      const std::vector<std::string>& job_ids) override {
    on_poll(++polls_);
    std::lock_guard lock(mutex_);
    for (Task& task : tasks_) Step(task);
    std::map<int, server::TaskInfo> listed;
    for (const std::string& id : job_ids) {  // the later array of an index wins
      for (const Task& task : tasks_) {
        if (task.array == id) listed[task.index] = {task.state, task.slurm_state, "fake-node"};
      }
    }
    return listed;
  }

  absl::StatusOr<std::vector<std::string>> ArraysNamed(const std::string& name) override {
    std::lock_guard lock(mutex_);
    std::vector<std::string> ids;
    for (const auto& [id, array_name] : arrays_) {
      if (array_name == name) ids.push_back(id);
    }
    return ids;
  }

  absl::Status Cancel(const std::vector<std::string>& job_ids) override {
    std::lock_guard lock(mutex_);
    for (Task& task : tasks_) {
      if (std::find(job_ids.begin(), job_ids.end(), task.array) != job_ids.end() &&
          task.state != server::TaskState::kEnded) {
        task.state = server::TaskState::kEnded;
        task.slurm_state = "CANCELLED";
      }
    }
    return absl::OkStatus();
  }

  // The controller forgets array `id` (its tasks never run, squeue no longer lists it).
  void Forget(const std::string& id) {
    std::lock_guard lock(mutex_);
    std::erase_if(tasks_, [&](const Task& t) { return t.array == id; });
    std::erase_if(arrays_, [&](const auto& a) { return a.first == id; });
  }
  // Array `id` goes by `name` from now on (as an earlier version of the server named it).
  void Rename(const std::string& id, const std::string& name) {
    std::lock_guard lock(mutex_);
    for (auto& [array, array_name] : arrays_) {
      if (array == id) array_name = name;
    }
    for (Task& task : tasks_) {
      if (task.array == id) task.name = name;
    }
  }
  // Arrays accepted under `name`; sbatch calls, refused or not.
  int Submitted(const std::string& name) {
    std::lock_guard lock(mutex_);
    return static_cast<int>(std::count_if(arrays_.begin(), arrays_.end(),
                                          [&](const auto& a) { return a.second == name; }));
  }
  int submit_calls() {
    std::lock_guard lock(mutex_);
    return submit_calls_;
  }
  // Tasks neither ended nor cancelled.
  int Unfinished() {
    std::lock_guard lock(mutex_);
    return static_cast<int>(std::count_if(tasks_.begin(), tasks_.end(), [](const Task& t) {
      return t.state != server::TaskState::kEnded;
    }));
  }

 private:
  struct Task {
    std::string array, name;
    int index = 0;
    std::string script, log;
    server::TaskState state = server::TaskState::kPending;
    std::string slurm_state;
    int attempt = 0;
  };

  void Step(Task& task) {
    if (task.state == server::TaskState::kPending) {
      task.state = server::TaskState::kRunning;
      task.slurm_state = "RUNNING";
      return;
    }
    if (task.state != server::TaskState::kRunning) return;
    task.state = server::TaskState::kEnded;
    const std::string log =
        absl::StrReplaceAll(task.log, {{"%a", absl::StrCat(task.index)}, {"%A", task.array}});
    if (fate(task.name, task.index, task.attempt) == Fate::kNodeFail) {
      (void)server::RunCommand(
          {"/bin/sh", "-c", "printf 'on fake-node\\nslurmstepd: *** node died ***\\n' >> \"$0\"",
           log});
      task.slurm_state = "NODE_FAIL";
      return;
    }
    // As slurmstepd runs it: the array's variables set, its output appended to its log.
    // (Under ThreadSanitizer the worker is instrumented too; its own threads are not this
    // test's concern.)
    absl::StatusOr<server::CommandResult> run = server::RunCommand(
        {"env", absl::StrCat("SLURM_ARRAY_TASK_ID=", task.index),
         absl::StrCat("SLURM_ARRAY_JOB_ID=", task.array), "TSAN_OPTIONS=report_bugs=0", "/bin/sh",
         "-c", "exec /bin/sh \"$0\" >> \"$1\" 2>&1", task.script, log});
    task.slurm_state = run.ok() && run->exit_code == 0 ? "COMPLETED" : "FAILED";
  }

  std::mutex mutex_;
  std::vector<Task> tasks_;
  std::vector<std::pair<std::string, std::string>> arrays_;  // id, name
  std::map<std::pair<std::string, int>, int> attempts_;      // (name, index) -> attempts
  int next_id_ = 1000;
  int submit_calls_ = 0;
  std::atomic<int> polls_{0};
};

}  // namespace stackproc::testing
