// One job: its spec, a state machine (QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED, and
// INTERRUPTED when the server stops first),
// progress, its cancellation token and, for in-memory outputs, its result stack.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/base/cancel.h"
#include "core/exec/engine.h"
#include "core/pipeline/operation_registry.h"
#include "core/process/process_file.h"
#include "core/stack/stack.h"
#include "core/tiff/tiff_writer.h"

namespace stackproc::server {

enum class JobState { kQueued, kRunning, kSucceeded, kFailed, kCancelled, kInterrupted };
bool IsTerminal(JobState state);
// Its name in the API ("succeeded"; convert::JobStateName).
std::string JobStateName(JobState state);

// Where path jobs run: on the server's own threads, or as z-range shards on a SLURM cluster.
enum class Executor { kLocal, kSlurm };
// "local", "slurm" (the flag's values and the API's names).
std::string ExecutorName(Executor executor);
absl::StatusOr<Executor> ParseExecutor(absl::string_view name);

// What to do, validated (paths are relative to the data root, as the client gave them).
struct JobSpec {
  std::string input_path;
  std::vector<core::OpSpec> ops;           // parameters in name order (convert::FromProto)
  std::optional<std::string> output_path;  // nullopt: keep the result in memory
  core::Compression compression = core::Compression::kDefault;
  int compression_level = 0;                              // 0: the codec's default
  core::Predictor predictor = core::Predictor::kDefault;  // TIFF outputs
  bool overwrite = false;
  std::optional<std::array<int64_t, 3>> chunks;       // OME-Zarr outputs
  int pyramid_levels = 0;                             // OME-Zarr outputs
  int zarr_format = 3;                                // OME-Zarr outputs: 2 or 3
  std::optional<std::array<int64_t, 3>> zarr_shards;  // Zarr v3 outputs
  absl::Duration retention = absl::ZeroDuration();    // in-memory results; 0: server default
  bool streamed = false;          // ProcessStream: no paths, the caller feeds and drains the job
  std::string uploaded_from;      // a streamed job's client, its address as the server saw it
  std::string input_name;         // a streamed job's input as its client names it (the record's)
  std::string owner;              // the caller that submitted it (TokenAuth); "" without tokens
  int shards = 0;                 // z-ranges on a cluster (--executor slurm); 0: the server decides
  std::vector<int64_t> channels;  // only these, in this order; empty: all

  friend bool operator==(const JobSpec&, const JobSpec&) = default;
};

// What a job reads and writes when its caller supplies them (a streamed job: a source its call
// feeds and a sink its call drains); a path job has none, its files are opened when it runs.
struct JobIo {
  std::shared_ptr<core::SliceSource> source;
  std::shared_ptr<core::SliceSink> sink;
};

// Where a job runs and, on a cluster, how far its shards have come.
struct Execution {
  Executor executor = Executor::kLocal;
  int shards = 0;                          // kSlurm: z-ranges, one task each
  std::vector<std::string> slurm_job_ids;  // the array, then each shard submitted again alone
  int shards_done = 0, shards_running = 0, shards_pending = 0;
  int shards_failed = 0;  // attempts that failed (then retried, or the job failed)
  // The slices each shard's range is a multiple of (ShardRange): an OME-Zarr store's whole
  // files; 1 for TIFF pieces.
  int64_t align = 1;

  friend bool operator==(const Execution&, const Execution&) = default;
};

// A consistent copy of a job's state.
struct JobSnapshot {
  std::string id;
  JobSpec spec;
  std::string request_id;
  JobState state = JobState::kQueued;
  std::string stage = "queued";
  core::Progress progress;
  absl::Status error;  // FAILED / CANCELLED / INTERRUPTED (Aborted)
  core::StackShape input_shape, output_shape;
  core::Dimensions input_dims;  // its time points and channels (the output's too)
  core::PixelType input_type = core::PixelType::kUint8, output_type = core::PixelType::kUint8;
  absl::Time create_time, start_time = absl::InfinitePast(), end_time = absl::InfinitePast();
  uint64_t memory_bytes = 0;
  core::ProcessMode mode = core::ProcessMode::kInMemory;
  Execution execution;
  bool result_available = false;
  uint64_t version = 0;  // grows with every change
};

// Thread-safe. Observers are called after every change, outside the job's lock, one at a time.
class Job {
 public:
  explicit Job(JobSnapshot initial, JobIo io = {})
      : id_(initial.id), io_(std::move(io)), snapshot_(std::move(initial)) {}

  JobSnapshot Snapshot() const;
  const std::string& id() const { return id_; }
  // Names the job; before anyone else sees it (the job manager, when it queues the job).
  void AssignId(const std::string& id) {
    id_ = id;
    snapshot_.id = id;
  }
  core::CancelToken& cancel_token() { return cancel_; }
  // The caller-supplied source and sink, until the job ends (Finish drops them, so that their
  // buffers do not live as long as the job is listed).
  JobIo io() const;

  // Observers: `on_change` runs after every change until Unsubscribe returns.
  int Subscribe(std::function<void()> on_change);
  void Unsubscribe(int handle);

  // Fires the cancel token: the run stops at its next slice.
  void RequestCancel() { cancel_.Cancel(); }
  // Whether the cancel token fired for Interrupt (the server stops), not for the caller.
  bool interrupted() const;
  // RequestCancel for the server's own sake (it is stopping): the job then ends INTERRUPTED,
  // with `reason`, rather than CANCELLED.
  void Interrupt(const std::string& reason);

  // State changes (the job manager's). Start is a no-op on an ended job.
  void Start(absl::Time now);
  void SetStage(const std::string& stage);
  void SetProgress(const core::Progress& progress);
  void SetExecution(const Execution& execution);
  // Ends the job: OK -> SUCCEEDED, Cancelled -> CANCELLED, Aborted -> INTERRUPTED (the server
  // stopped first), else FAILED. No-op once ended.
  void Finish(absl::Status status, absl::Time now,
              std::shared_ptr<const core::Stack> result = nullptr);
  // Drops an in-memory result (deleted or expired); returns the bytes freed.
  uint64_t DropResult();

  std::shared_ptr<const core::Stack> result() const;

 private:
  template <typename F>
  void Update(F&& change);

  std::string id_;
  JobIo io_;  // mutex_
  core::CancelToken cancel_;
  mutable std::mutex mutex_;
  JobSnapshot snapshot_;
  std::shared_ptr<const core::Stack> result_;
  std::string interrupt_reason_;  // set by Interrupt

  std::mutex observers_mutex_;  // held while observers run, so Unsubscribe waits for them
  std::map<int, std::function<void()>> observers_;
  int next_handle_ = 0;
};

}  // namespace stackproc::server
